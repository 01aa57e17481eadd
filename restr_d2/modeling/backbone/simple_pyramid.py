"""A plain ViT as a multi-scale detectron2 backbone (ViTDet's simple feature pyramid), so the
Mask2Former family (MSDeformAttn pixel decoder) can run on a DINOv2 ViT.

Registered as ``D2ViTSimpleFeaturePyramid`` (``MODEL.BACKBONE.NAME``); the ViT is configured by
``MODEL.VIT.*`` as for Segmenter and its keys are ``backbone.vit.*`` (what
``tools/convert/convert_dinov2.py --model mask2former`` writes).
"""
import logging
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ConvTranspose2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from .d2_vit import vit_kwargs_from_config
from .vit import VisionTransformer, pad_to_patch_multiple

__all__ = ["D2ViTSimpleFeaturePyramid", "PYRAMID_LEVELS"]

logger = logging.getLogger(__name__)

#: output name -> stride; the pyramid is built from a stride-16 map (x4, x2, x1, x0.5)
PYRAMID_LEVELS = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
_BASE_STRIDE = 16


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channels of (B, C, H, W) (ViTDet's "LN"; detectron2 v0.6 has none)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


def get_norm(norm: str, channels: int) -> nn.Module:
    if norm == "LN":
        return ChannelsFirstLayerNorm(channels)
    if norm in ("", "none"):
        return nn.Identity()
    raise ValueError(f"norm {norm!r}: D2ViTSimpleFeaturePyramid supports 'LN' (ViTDet) or ''")


@BACKBONE_REGISTRY.register()
class D2ViTSimpleFeaturePyramid(Backbone):
    """(B, 3, H, W) normalised images -> ``{"res2": (B, C, H/4, W/4), ..., "res5": (B, C, H/32, W/32)}``
    (H, W multiples of 32; ``size_divisibility`` is 32).

    The last ViT block's patch tokens (after the final LayerNorm) form a map on the patch grid,
    which is resized (bilinear) to the stride-16 grid when the patch size is not 16 (DINOv2's
    14); then, as ViTDet: stride 4 = two 2x2 transposed convs (LayerNorm + GELU between),
    stride 8 = one, stride 16 = the map, stride 32 = 2x2 max-pool; each level then a 1x1 and a
    3x3 conv to ``out_channels``, each followed by LayerNorm (channels-first).
    """

    @configurable
    def __init__(self, *, vit: VisionTransformer, out_channels: int = 256,
                 out_features: Sequence[str] = ("res2", "res3", "res4", "res5"), norm: str = "LN"):
        super().__init__()
        unknown = [f for f in out_features if f not in PYRAMID_LEVELS]
        if unknown:
            raise ValueError(f"out_features {unknown} are not pyramid levels; choose from {list(PYRAMID_LEVELS)}")
        self.vit = vit
        dim = vit.embed_dim
        self._out_features = list(out_features)
        self._out_feature_strides = {f: PYRAMID_LEVELS[f] for f in out_features}
        self._out_feature_channels = {f: out_channels for f in out_features}
        self.stages = nn.ModuleDict()
        for name in self._out_features:
            stride = PYRAMID_LEVELS[name]
            if stride == 4:
                layers: List[nn.Module] = [ConvTranspose2d(dim, dim // 2, 2, stride=2), get_norm(norm, dim // 2),
                                           nn.GELU(), ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)]
                in_dim = dim // 4
            elif stride == 8:
                layers, in_dim = [ConvTranspose2d(dim, dim // 2, 2, stride=2)], dim // 2
            elif stride == 16:
                layers, in_dim = [], dim
            else:
                layers, in_dim = [nn.MaxPool2d(kernel_size=2, stride=2)], dim
            layers += [
                Conv2d(in_dim, out_channels, kernel_size=1, bias=False, norm=get_norm(norm, out_channels)),
                Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False,
                       norm=get_norm(norm, out_channels)),
            ]
            self.stages[name] = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        in_chans = input_shape.channels if input_shape is not None else len(cfg.MODEL.PIXEL_MEAN)
        vit = VisionTransformer(**vit_kwargs_from_config(cfg), in_chans=in_chans)
        if vit.patch_size != _BASE_STRIDE:
            logger.info(f"D2ViTSimpleFeaturePyramid: the patch-{vit.patch_size} token map is resized (bilinear) to "
                        f"the stride-{_BASE_STRIDE} grid before the pyramid")
        return dict(vit=vit, out_channels=cfg.MODEL.VIT.SFP_OUT_CHANNELS, out_features=cfg.MODEL.VIT.SFP_OUT_FEATURES)

    @property
    def size_divisibility(self) -> int:
        return 32

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        H, W = x.shape[-2:]
        P = self.vit.patch_size
        xp = pad_to_patch_multiple(x, P)
        gh, gw = xp.shape[-2] // P, xp.shape[-1] // P
        tokens = self.vit.forward_features(xp)[:, self.vit.num_extra_tokens:]
        fmap = tokens.transpose(1, 2).reshape(x.shape[0], self.vit.embed_dim, gh, gw)
        target = (-(-H // _BASE_STRIDE), -(-W // _BASE_STRIDE))
        if (gh, gw) != target:
            # patch 14: the ceil(H/14) x ceil(W/14) grid (covering the image plus < P pixels of
            # padding) resampled onto the stride-16 grid
            fmap = F.interpolate(fmap, size=target, mode="bilinear", align_corners=False)
        return {name: stage(fmap) for name, stage in self.stages.items()}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {f: ShapeSpec(channels=self._out_feature_channels[f], stride=self._out_feature_strides[f])
                for f in self._out_features}
