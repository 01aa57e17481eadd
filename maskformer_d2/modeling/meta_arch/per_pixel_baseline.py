"""Per-pixel classification baselines of the MaskFormer paper (``SemanticSegmentor`` heads)."""
from typing import Dict, List, Optional, Tuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn

from ..pixel_decoder import build_pixel_decoder
from ..transformer_decoder import StandardTransformerDecoder
from .mask_former_head import upgrade_legacy_head_keys

__all__ = ["PerPixelBaselineHead", "PerPixelBaselinePlusHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class PerPixelBaselineHead(nn.Module):
    """Pixel decoder + 1x1 classifier on ``mask_features``.

    Inference returns ((B, K, H, W) logits upsampled x4 from the pixel decoder's stride-4
    output, {}); training returns (None, {"loss_sem_seg": CE * loss_weight}) against targets
    (B, H, W) with ``ignore_value``.
    """

    _version = 2

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, num_classes: int, pixel_decoder: nn.Module,
                 loss_weight: float = 1.0, ignore_value: int = -1):
        super().__init__()
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in shapes]
        self.ignore_value = ignore_value
        self.common_stride = 4
        self.loss_weight = loss_weight
        self.pixel_decoder = pixel_decoder
        self.predictor = Conv2d(self.pixel_decoder.mask_dim, num_classes, kernel_size=1, stride=1, padding=0)
        weight_init.c2_msra_fill(self.predictor)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES},
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
        }

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        upgrade_legacy_head_keys(self, state_dict, prefix, local_metadata)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, features: Dict[str, torch.Tensor], targets: Optional[torch.Tensor] = None):
        x = self.layers(features)
        if self.training:
            return None, self.losses(x, targets)
        return F.interpolate(x, scale_factor=self.common_stride, mode="bilinear", align_corners=False), {}

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        mask_features, _, _ = self.pixel_decoder.forward_features(features)
        return self.predictor(mask_features)

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        if targets is None:
            raise ValueError(f"{type(self).__name__} needs semantic targets (B, H, W) in training.")
        # Upsample in float32: bilinear interpolation in half precision is inaccurate.
        predictions = F.interpolate(predictions.float(), scale_factor=self.common_stride, mode="bilinear",
                                    align_corners=False)
        loss = F.cross_entropy(predictions, targets, reduction="mean", ignore_index=self.ignore_value)
        return {"loss_sem_seg": loss * self.loss_weight}


@SEM_SEG_HEADS_REGISTRY.register()
class PerPixelBaselinePlusHead(PerPixelBaselineHead):
    """Per-pixel baseline whose per-class embeddings come from a DETR decoder: a
    ``StandardTransformerDecoder`` without classification, with one query per class
    (``NUM_OBJECT_QUERIES`` must equal ``NUM_CLASSES``); logits (B, K, H/4, W/4) =
    query embeddings . mask_features. With deep supervision each decoder layer is supervised.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, transformer_predictor: nn.Module,
                 transformer_in_feature: str, deep_supervision: bool, num_classes: int,
                 pixel_decoder: nn.Module, loss_weight: float = 1.0, ignore_value: int = -1):
        super().__init__(input_shape, num_classes=num_classes, pixel_decoder=pixel_decoder,
                         loss_weight=loss_weight, ignore_value=ignore_value)
        del self.predictor
        self.predictor = transformer_predictor
        self.transformer_in_feature = transformer_in_feature
        self.deep_supervision = deep_supervision

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        if in_feature == "transformer_encoder":
            in_channels = cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM
        elif in_feature in input_shape:
            in_channels = input_shape[in_feature].channels
        else:
            raise ValueError(f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE={in_feature!r} must be "
                             f"'transformer_encoder' or a backbone feature {sorted(input_shape)}.")
        if cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES != cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES:
            raise ValueError("PerPixelBaselinePlusHead uses one query per class: set "
                             "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = MODEL.SEM_SEG_HEAD.NUM_CLASSES "
                             f"(got {cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES} and "
                             f"{cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES}).")
        ret["transformer_in_feature"] = in_feature
        ret["transformer_predictor"] = StandardTransformerDecoder(cfg, in_channels, mask_classification=False)
        ret["deep_supervision"] = cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION
        return ret

    def forward(self, features: Dict[str, torch.Tensor], targets: Optional[torch.Tensor] = None):
        x, aux_outputs = self.layers(features)
        if self.training:
            losses = self.losses(x, targets)
            if self.deep_supervision:
                for i, aux in enumerate(aux_outputs):
                    losses[f"loss_sem_seg_{i}"] = self.losses(aux["pred_masks"], targets)["loss_sem_seg"]
            return None, losses
        return F.interpolate(x, scale_factor=self.common_stride, mode="bilinear", align_corners=False), {}

    def layers(self, features: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Optional[List[dict]]]:
        mask_features, encoder_features, _ = self.pixel_decoder.forward_features(features)
        if self.transformer_in_feature == "transformer_encoder":
            if encoder_features is None:
                raise ValueError("TRANSFORMER_IN_FEATURE='transformer_encoder' needs a pixel decoder with a "
                                 "transformer encoder (e.g. TransformerEncoderPixelDecoder).")
            predictions = self.predictor(encoder_features, mask_features)
        else:
            predictions = self.predictor(features[self.transformer_in_feature], mask_features)
        aux = predictions["aux_outputs"] if self.deep_supervision else None
        return predictions["pred_masks"], aux
