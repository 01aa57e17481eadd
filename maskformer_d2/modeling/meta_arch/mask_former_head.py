"""``MaskFormerHead``: pixel decoder + transformer decoder, the ``sem_seg_head`` of MaskFormer and
Mask2Former."""
import inspect
import logging
from typing import Dict, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn

from ..pixel_decoder import build_pixel_decoder
from ..transformer_decoder import build_transformer_decoder

__all__ = ["MaskFormerHead", "upgrade_legacy_head_keys"]

logger = logging.getLogger(__name__)

# What the transformer decoder reads (MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE), besides the name
# of a backbone feature.
_PIXEL_DECODER_OUTPUTS = ("transformer_encoder", "pixel_embedding", "multi_scale_pixel_decoder")


def upgrade_legacy_head_keys(head: nn.Module, state_dict, prefix: str, local_metadata) -> None:
    """Version-1 heads kept the pixel decoder's weights directly under the head; move them under
    ``pixel_decoder.`` (in place) when a checkpoint without version metadata has that layout."""
    version = local_metadata.get("version", None)
    if version is not None and version >= 2:
        return
    moved = 0
    for k in list(state_dict.keys()):
        if not k.startswith(prefix):
            continue
        rest = k[len(prefix):]
        if rest.startswith(("predictor.", "pixel_decoder.")):
            continue
        if hasattr(head.pixel_decoder, rest.split(".", 1)[0]):
            state_dict[prefix + "pixel_decoder." + rest] = state_dict.pop(k)
            moved += 1
    if moved:
        logger.warning(f"{type(head).__name__}: moved {moved} legacy (version 1) weights under "
                       f"'{prefix}pixel_decoder.'.")


@SEM_SEG_HEADS_REGISTRY.register()
class MaskFormerHead(nn.Module):
    """Mask-classification head.

    ``pixel_decoder.forward_features`` turns backbone features into per-pixel embeddings
    (``mask_features``, (B, mask_dim, H/4, W/4)) plus the features the ``predictor`` reads,
    chosen by ``transformer_in_feature``:

    * ``"multi_scale_pixel_decoder"``: the 3 multi-scale maps (Mask2Former);
    * ``"transformer_encoder"``: the pixel decoder's transformer encoder output;
    * ``"pixel_embedding"``: ``mask_features`` itself;
    * a backbone feature name (e.g. ``"res5"``).

    Returns the predictor's dict: ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, H/4, W/4),
    ``aux_outputs`` (list of dicts with the same keys, earliest first).
    """

    _version = 2

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        pixel_decoder: nn.Module,
        loss_weight: float = 1.0,
        ignore_value: int = -1,
        transformer_predictor: nn.Module,
        transformer_in_feature: str,
    ):
        super().__init__()
        if transformer_in_feature not in _PIXEL_DECODER_OUTPUTS and transformer_in_feature not in input_shape:
            raise ValueError(
                f"transformer_in_feature={transformer_in_feature!r} is neither one of "
                f"{_PIXEL_DECODER_OUTPUTS} nor an input feature {sorted(input_shape)}."
            )
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in shapes]
        self.ignore_value = ignore_value
        self.common_stride = 4
        self.loss_weight = loss_weight
        self.pixel_decoder = pixel_decoder
        self.predictor = transformer_predictor
        # looked up once: forward may run under torch.compile
        self._predictor_takes_aux_masks = "aux_masks" in inspect.signature(transformer_predictor.forward).parameters
        self.transformer_in_feature = transformer_in_feature
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        if in_feature in ("transformer_encoder", "multi_scale_pixel_decoder"):
            predictor_in_channels = cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM
        elif in_feature == "pixel_embedding":
            predictor_in_channels = cfg.MODEL.SEM_SEG_HEAD.MASK_DIM
        elif in_feature in input_shape:
            predictor_in_channels = input_shape[in_feature].channels
        else:
            raise ValueError(
                f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE={in_feature!r} is neither one of "
                f"{_PIXEL_DECODER_OUTPUTS} nor a backbone feature {sorted(input_shape)}."
            )
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES},
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
            "transformer_in_feature": in_feature,
            "transformer_predictor": build_transformer_decoder(cfg, predictor_in_channels, mask_classification=True),
        }

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        upgrade_legacy_head_keys(self, state_dict, prefix, local_metadata)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, features: Dict[str, torch.Tensor], mask: Optional[torch.Tensor] = None,
                aux_masks: bool = True):
        """``aux_masks=False``: the earlier layers' ``aux_outputs`` without masks (inference
        reads only the last layer's), where the predictor takes that argument (both decoders
        here do; another registered predictor computes what it always does)."""
        return self.layers(features, mask, aux_masks)

    def layers(self, features: Dict[str, torch.Tensor], mask: Optional[torch.Tensor] = None,
               aux_masks: bool = True):
        mask_features, encoder_features, multi_scale_features = self.pixel_decoder.forward_features(features)
        if self.transformer_in_feature == "multi_scale_pixel_decoder":
            x = multi_scale_features
        elif self.transformer_in_feature == "transformer_encoder":
            if encoder_features is None:
                raise ValueError("TRANSFORMER_IN_FEATURE='transformer_encoder' needs a pixel decoder with a "
                                 "transformer encoder (e.g. TransformerEncoderPixelDecoder).")
            x = encoder_features
        elif self.transformer_in_feature == "pixel_embedding":
            x = mask_features
        else:
            x = features[self.transformer_in_feature]
        if aux_masks or not self._predictor_takes_aux_masks:
            return self.predictor(x, mask_features, mask)
        return self.predictor(x, mask_features, mask, aux_masks=False)
