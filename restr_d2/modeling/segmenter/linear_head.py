"""Segmenter linear decoder (official ``DecoderLinear``): one Linear per patch token."""
from typing import Dict

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn

from ..backbone.vit import init_segmenter_weights

__all__ = ["SegmenterLinearHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class SegmenterLinearHead(nn.Module):
    """``{in_feature: (B, D, h, w)}`` patch features -> (B, num_classes, h, w) patch logits.

    State-dict keys ``head.{weight,bias}`` equal the official ``decoder.*`` keys.
    """

    @configurable
    def __init__(self, *, in_feature: str, in_channels: int, num_classes: int):
        super().__init__()
        self.in_feature = in_feature
        self.num_classes = num_classes
        self.head = nn.Linear(in_channels, num_classes)
        self.apply(init_segmenter_weights)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_feature = cfg.MODEL.VIT.OUT_FEATURE
        if in_feature not in input_shape:
            raise ValueError(
                f"SegmenterLinearHead reads feature {in_feature!r} (MODEL.VIT.OUT_FEATURE) but the "
                f"backbone gives {sorted(input_shape)}; use MODEL.BACKBONE.NAME 'D2PlainViT'"
            )
        return dict(
            in_feature=in_feature,
            in_channels=input_shape[in_feature].channels,
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        )

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        x = features[self.in_feature]
        B, D, h, w = x.shape
        x = self.head(x.flatten(2).transpose(1, 2))  # (B, h*w, C)
        return x.transpose(1, 2).reshape(B, self.num_classes, h, w)
