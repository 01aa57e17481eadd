"""Registry and builder of the transformer decoders ("predictors") of MaskFormer / Mask2Former."""
from detectron2.utils.registry import Registry
from torch import nn

__all__ = ["TRANSFORMER_DECODER_REGISTRY", "build_transformer_decoder"]

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
TRANSFORMER_DECODER_REGISTRY.__doc__ = """
Transformer decoders that turn pixel-decoder features into per-query class logits and mask
logits. Called as ``cls(cfg, in_channels, mask_classification)``.
"""


def build_transformer_decoder(cfg, in_channels: int, mask_classification: bool = True) -> nn.Module:
    """Build the decoder named by ``cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``."""
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    if name not in TRANSFORMER_DECODER_REGISTRY:
        raise KeyError(
            f"MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME={name!r} is not registered; "
            f"available: {sorted(k for k, _ in TRANSFORMER_DECODER_REGISTRY)}."
        )
    return TRANSFORMER_DECODER_REGISTRY.get(name)(cfg, in_channels, mask_classification)
