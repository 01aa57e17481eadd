"""Transformer blocks of ReSTR's language encoder and multimodal fusion encoder.

Parameter names (``norm1``, ``norm2``, ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``) and
their registration order equal the official ReSTR ``model/transformers/blocks.py``, so official
state dicts load with ``strict=True``. Unlike the plain-ViT blocks these take an optional
key-padding mask, which the Hugging Face language encoders need (pad tokens must not be
attended to) and which the official GloVe model does not use.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone.blocks import DropPath, Mlp

__all__ = [
    "MaskedSelfAttention",
    "PreNormBlock",
    "PostNormBlock",
    "key_padding_to_attn_mask",
    "init_restr_weights",
]


def key_padding_to_attn_mask(key_valid: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(B, N) bool, True = may be attended to -> (B, 1, 1, N) bool mask for SDPA, or None."""
    if key_valid is None:
        return None
    if key_valid.dtype != torch.bool or key_valid.ndim != 2:
        raise ValueError(
            f"key_valid must be a (B, N) bool tensor, got {key_valid.dtype} {tuple(key_valid.shape)}"
        )
    return key_valid[:, None, None, :]


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` Linear. (B, N, D) -> (B, N, D).

    Uses ``scaled_dot_product_attention`` (memory linear in tokens on fused kernels); the scale is
    head_dim^-0.5 as in the official explicit softmax.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"dim {dim} is not divisible by num_heads {num_heads}; the official model uses "
                "the ViT head count for language (d_lang=300) and fusion, so it must divide both"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, N, D); key_valid: optional (B, N) bool, False for tokens nobody attends to."""
        B, N, C = x.shape
        # (B, heads, N, head_dim); unbind before transposing: backward then stacks the
        # gradients straight into the qkv layout (one copy instead of two)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=key_padding_to_attn_mask(key_valid),
            dropout_p=self.attn_drop.p if self.training else 0.0,
            scale=self.scale,
        )
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class PreNormBlock(nn.Module):
    """Fusion block: ``x + attn(LN1(x))`` then ``x + mlp(LN2(x))``. (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        # registration order norm1, norm2, attn, mlp = official key order
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = MaskedSelfAttention(dim, num_heads, dropout)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor, key_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), key_valid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PostNormBlock(PreNormBlock):
    """Language block (official ``LangBlock``): ``LN1(x + attn(x))`` then ``LN2(x + mlp(x))``.
    (B, N, D) -> (B, N, D). The same modules (and keys) as :class:`PreNormBlock`; only where the
    norms sit differs."""

    def forward(self, x: torch.Tensor, key_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.norm1(x + self.drop_path(self.attn(x, key_valid)))
        return self.norm2(x + self.drop_path(self.mlp(x)))


def init_restr_weights(module: nn.Module) -> None:
    """Official ReSTR ``init_weights``: trunc-normal(.02) Linear weights (``nn.init``), LayerNorm
    (1, 0), xavier-uniform Conv2d weights, all biases 0. Use with ``module.apply``. Segmenter's
    differs: ``restr_d2.modeling.backbone.vit.init_segmenter_weights``."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
