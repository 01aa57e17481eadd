"""Registry and builder of pixel decoders (``MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``)."""
from typing import Dict

from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import nn

__all__ = ["PIXEL_DECODER_REGISTRY", "build_pixel_decoder"]

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """
Pixel decoders of MaskFormer / Mask2Former. A pixel decoder is called as ``cls(cfg, input_shape)``
and must implement ``forward_features(features) -> (mask_features, transformer_encoder_features,
multi_scale_features)``.
"""


def build_pixel_decoder(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """Build the pixel decoder named by ``cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``."""
    name = cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    if name not in PIXEL_DECODER_REGISTRY:
        raise KeyError(
            f"MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME={name!r} is not a registered pixel decoder; "
            f"available: {sorted(k for k, _ in PIXEL_DECODER_REGISTRY)}."
        )
    model = PIXEL_DECODER_REGISTRY.get(name)(cfg, input_shape)
    if not callable(getattr(model, "forward_features", None)):
        raise TypeError(f"Pixel decoder {name} must implement forward_features(features).")
    return model
