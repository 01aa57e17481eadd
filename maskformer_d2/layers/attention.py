"""Multi-head attention with ``nn.MultiheadAttention``'s state-dict layout, computed with
``F.scaled_dot_product_attention``."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiheadAttention"]


class MultiheadAttention(nn.Module):
    """Batch-first multi-head attention whose parameters are named like ``nn.MultiheadAttention``
    (``in_proj_weight`` (3C, C), ``in_proj_bias`` (3C,), ``out_proj.{weight,bias}``), so official
    MaskFormer / Mask2Former / DETR checkpoints load unchanged.

    Shapes: query (B, Lq, C), key (B, Lk, C), value (B, Lk, C) -> (B, Lq, C).
    Masks follow ``nn.MultiheadAttention``: ``attn_mask`` is bool, broadcastable to
    (B, num_heads, Lq, Lk), True where a query may NOT attend to a key; ``key_padding_mask`` is
    bool (B, Lk), True on padded keys.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self._reset_parameters()

    def _reset_parameters(self):
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: Optional[torch.Tensor] = None,
        key_padding_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._split_heads(F.linear(query, w_q, b_q))
        k = self._split_heads(F.linear(key, w_k, b_k))
        v = self._split_heads(F.linear(value, w_v, b_v))

        # SDPA's boolean mask marks the pairs that MAY attend: the opposite convention.
        allowed = None
        if attn_mask is not None:
            if attn_mask.dtype != torch.bool:
                raise TypeError(f"attn_mask must be bool (True = blocked); got {attn_mask.dtype}.")
            allowed = ~attn_mask
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, None, :]
            allowed = keep if allowed is None else allowed & keep

        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        b, _, lq, _ = out.shape
        out = out.transpose(1, 2).reshape(b, lq, self.embed_dim)
        return self.out_proj(out)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
