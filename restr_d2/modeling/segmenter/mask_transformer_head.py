"""Segmenter mask-transformer decoder (official ``MaskTransformer``).

Learned class embeddings are appended after the projected patch tokens, both go through
pre-norm transformer blocks, and the class masks are the scalar products of the L2-normalized
patch and class embeddings, normalized over classes by ``mask_norm``.
"""
from typing import Dict, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn

from ..backbone.blocks import Block
from ..backbone.vit import init_segmenter_weights, trunc_normal_

__all__ = ["SegmenterMaskTransformerHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class SegmenterMaskTransformerHead(nn.Module):
    """``{in_feature: (B, D_enc, h, w)}`` -> (B, num_classes, h, w) patch-level mask logits.

    State-dict keys (``cls_emb``, ``proj_patch``, ``proj_classes``, ``blocks.N.*``,
    ``proj_dec.*``, ``decoder_norm.*``, ``mask_norm.*``) and order equal the official
    ``decoder.*`` keys. ``proj_patch``/``proj_classes`` are raw (D, D) matrices applied as
    ``x @ P`` (an ``nn.Linear`` would need ``weight = P.T``).
    """

    @configurable
    def __init__(
        self,
        *,
        in_feature: str,
        in_channels: int,
        num_classes: int,
        embed_dim: int,
        num_layers: int = 2,
        num_heads: Optional[int] = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        attn_impl: str = "sdpa_math",
    ):
        """
        Args:
            in_feature: key of the backbone feature map.
            in_channels: encoder width D_enc.
            num_classes: number of class embeddings (= output channels).
            embed_dim: decoder width (the official factory uses the encoder width).
            num_layers: transformer blocks (official: 2).
            num_heads: None for the official rule ``embed_dim // 64``.
            mlp_ratio: MLP hidden = mlp_ratio * embed_dim (official: 4).
            dropout, drop_path_rate: regularization inside the blocks.
            attn_impl: "sdpa" or "math", see ``backbone.blocks.ATTN_IMPLS``.
        """
        super().__init__()
        if num_heads is not None and num_heads <= 0:
            raise ValueError(f"num_heads={num_heads} (MODEL.SEGMENTER.DECODER.NUM_HEADS): give a positive "
                             "number, or None / null (the default) for the official rule embed_dim // 64")
        if num_heads is None:
            num_heads = embed_dim // 64
            if num_heads == 0:
                raise ValueError(
                    f"embed_dim {embed_dim} < 64 gives 0 heads with the official rule "
                    "embed_dim // 64; set MODEL.SEGMENTER.DECODER.NUM_HEADS explicitly"
                )
        self.in_feature = in_feature
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        # Construction order = official order of random draws (blocks, cls_emb, proj_dec,
        # proj_patch, proj_classes), so torch.manual_seed(s) reproduces the official init.
        # Own parameters come first in the state dict regardless: cls_emb, proj_patch,
        # proj_classes, then blocks.*, proj_dec, decoder_norm, mask_norm, as official.
        dpr = torch.linspace(0, drop_path_rate, num_layers, device="cpu").tolist()
        mlp_dim = int(mlp_ratio * embed_dim)
        self.blocks = nn.ModuleList(
            [
                Block(embed_dim, num_heads, mlp_dim, dropout, dpr[i], attn_impl=attn_impl)
                for i in range(num_layers)
            ]
        )
        self.cls_emb = nn.Parameter(torch.randn(1, num_classes, embed_dim))
        self.proj_dec = nn.Linear(in_channels, embed_dim)
        scale = embed_dim**-0.5
        self.proj_patch = nn.Parameter(scale * torch.randn(embed_dim, embed_dim))
        self.proj_classes = nn.Parameter(scale * torch.randn(embed_dim, embed_dim))
        self.decoder_norm = nn.LayerNorm(embed_dim)
        self.mask_norm = nn.LayerNorm(num_classes)
        self.apply(init_segmenter_weights)
        trunc_normal_(self.cls_emb, std=0.02)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_feature = cfg.MODEL.VIT.OUT_FEATURE
        if in_feature not in input_shape:
            raise ValueError(
                f"SegmenterMaskTransformerHead reads feature {in_feature!r} (MODEL.VIT.OUT_FEATURE) "
                f"but the backbone gives {sorted(input_shape)}; use MODEL.BACKBONE.NAME 'D2PlainViT'"
            )
        d = cfg.MODEL.SEGMENTER.DECODER
        channels = input_shape[in_feature].channels
        return dict(
            in_feature=in_feature,
            in_channels=channels,
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            embed_dim=channels,  # official factory: decoder width = encoder width
            num_layers=d.NUM_LAYERS,
            num_heads=d.NUM_HEADS,
            dropout=d.DROPOUT,
            drop_path_rate=d.DROP_PATH_RATE,
            attn_impl=cfg.MODEL.VIT.ATTN_IMPL,
        )

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"cls_emb"}

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        x = features[self.in_feature]
        B, _, h, w = x.shape
        n = h * w
        x = self.proj_dec(x.flatten(2).transpose(1, 2))  # (B, N, D)
        x = torch.cat([x, self.cls_emb.expand(B, -1, -1)], dim=1)  # classes after patches
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        patches = x[:, :n] @ self.proj_patch
        classes = x[:, n:] @ self.proj_classes
        # official: plain division by the L2 norm, no eps
        patches = patches / patches.norm(dim=-1, keepdim=True)
        classes = classes / classes.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))  # (B, N, C)
        return masks.transpose(1, 2).reshape(B, self.num_classes, h, w)
