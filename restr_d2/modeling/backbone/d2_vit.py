"""detectron2 wrapper of the plain ViT: a single stride-P feature map.

The wrapper *is* a ``VisionTransformer`` (no extra prefix), so its state-dict keys stay the
official encoder keys.
"""
import logging
from typing import Dict

import torch
from detectron2.config import configurable
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec

from .vit import VisionTransformer, pad_to_patch_multiple

__all__ = ["D2PlainViT"]

logger = logging.getLogger(__name__)


def vit_kwargs_from_config(cfg) -> Dict:
    """``VisionTransformer`` keyword arguments from ``MODEL.VIT.*`` (shared by the detectron2
    backbone and ReSTR's vision encoder)."""
    v = cfg.MODEL.VIT
    if v.FREEZE:
        logger.info("ViT frozen (MODEL.VIT.FREEZE): its parameters are not trained, dropout and drop path are off")
    return dict(
        image_size=tuple(v.IMAGE_SIZE),
        patch_size=v.PATCH_SIZE,
        embed_dim=v.EMBED_DIM,
        depth=v.DEPTH,
        num_heads=v.NUM_HEADS,
        mlp_ratio=v.MLP_RATIO,
        num_classes=v.NUM_CLASSES,
        dropout=v.DROPOUT,
        drop_path_rate=v.DROP_PATH_RATE,
        distilled=v.DISTILLED,
        attn_impl=v.ATTN_IMPL,
        pos_embed_interp=v.POS_EMBED_INTERP,
        # DINOv2 family (issue 18); defaults = today's ViT
        layer_scale_init=v.LAYER_SCALE_INIT,
        norm_eps=v.NORM_EPS,
        num_register_tokens=v.NUM_REGISTER_TOKENS,
        pos_embed_grid=tuple(v.POS_EMBED_GRID) or None,
        freeze=v.FREEZE,
    )


@BACKBONE_REGISTRY.register()
class D2PlainViT(VisionTransformer, Backbone):
    """Plain ViT as a detectron2 backbone.

    (B, 3, H, W) normalized images -> ``{out_feature: (B, D, ceil(H/P), ceil(W/P))}``: the patch
    tokens after the final LayerNorm (CLS/DIST dropped), on the grid of the input zero-padded at
    the bottom/right to a multiple of P (zero in normalized space, as the official Segmenter).
    """

    @configurable
    def __init__(self, *, out_feature: str = "vit", **vit_kwargs):
        """
        Args:
            out_feature: name of the returned feature map.
            vit_kwargs: ``VisionTransformer`` arguments.
        """
        super().__init__(**vit_kwargs)
        self._out_feature = out_feature
        self._out_features = [out_feature]
        self._out_feature_channels = {out_feature: self.embed_dim}
        self._out_feature_strides = {out_feature: self.patch_size}

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        in_chans = input_shape.channels if input_shape is not None else len(cfg.MODEL.PIXEL_MEAN)
        logger.info(f"D2PlainViT: attention implementation {cfg.MODEL.VIT.ATTN_IMPL!r} (MODEL.VIT.ATTN_IMPL)")
        return dict(vit_kwargs_from_config(cfg), in_chans=in_chans, out_feature=cfg.MODEL.VIT.OUT_FEATURE)

    @property
    def size_divisibility(self) -> int:
        return self.patch_size

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = pad_to_patch_multiple(x, self.patch_size)
        gh, gw = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.forward_features(x)[:, self.num_extra_tokens :]
        fmap = tokens.transpose(1, 2).reshape(x.shape[0], self.embed_dim, gh, gw)
        return {self._out_feature: fmap}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            self._out_feature: ShapeSpec(channels=self.embed_dim, stride=self.patch_size)
        }
