"""Pre-norm transformer blocks of the Segmenter/ReSTR plain ViT.

Parameter names (`norm1`, `norm2`, `attn.qkv`, `attn.proj`, `mlp.fc1`, `mlp.fc2`) and their
registration order equal the official Segmenter ``segm/model/blocks.py``, so official
state dicts load with ``strict=True`` and list their keys in the same order.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["DropPath", "PatchEmbed", "Attention", "Mlp", "LayerScale", "Block", "ATTN_IMPLS"]

# "sdpa_math" (default): scaled_dot_product_attention restricted to its math kernel; with the
#     query pre-scaled by head_dim^-0.5 (a power of two for head_dim 64, so exact) it reproduces
#     the official numbers bit for bit on CPU.
# "sdpa": scaled_dot_product_attention, kernel chosen by PyTorch (flash / memory-efficient: use
#     it for GPU training). On CPU float32 it differs from the official explicit softmax by up
#     to ~1.3e-5 on the Segmenter fixture (online softmax rounding).
# "math": the explicit softmax(q k^T * scale) v of the official code (also gives attention maps).
ATTN_IMPLS = ("sdpa", "sdpa_math", "math")


class DropPath(nn.Module):
    """Stochastic depth per sample: zeroes whole residual branches with probability ``p``
    during training and rescales the kept ones by ``1 / (1 - p)``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection.

    (B, C, H, W) -> (B, N, D) with N = (H / P) * (W / P); H, W must be multiples of P.
    ``grid_size`` is the grid of the configured (training) image size: the position embedding
    of the ViT is defined on it.
    """

    def __init__(self, image_size, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        image_size = tuple(int(s) for s in image_size)
        if image_size[0] % patch_size or image_size[1] % patch_size:
            raise ValueError(
                f"image_size {image_size} must be divisible by patch_size {patch_size}; "
                "choose a training size that is a multiple of the patch size"
            )
        self.image_size = image_size
        self.patch_size = int(patch_size)
        self.grid_size = (image_size[0] // patch_size, image_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` Linear. (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, attn_impl: str = "sdpa_math"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_impl = attn_impl
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        B, N, C = x.shape
        # each (B, heads, N, head_dim); unbind before transposing: backward then stacks the
        # gradients straight into the qkv layout (one copy instead of two)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        if self.attn_impl == "math" or return_attention:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            attn = attn.softmax(dim=-1)
            if return_attention:
                return attn
            x = self.attn_drop(attn) @ v
        else:
            # scale q, not the logits: (q * s) k^T == (q k^T) * s exactly when s is a power of 2
            q = q * self.scale
            p = self.attn_drop.p if self.training else 0.0
            if self.attn_impl == "sdpa_math":
                with sdpa_kernel(SDPBackend.MATH):
                    x = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=1.0)
            else:
                x = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=1.0)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, out_dim: Optional[int] = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


# --- DINOv2 family (issue 18): LayerScale ---------------------------------------------------
class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (CaiT / DINOv2): ``x * gamma``, gamma (D,)
    initialised to ``init_value``. Parameter name ``gamma`` as in DINOv2 and timm."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


# ---------------------------------------------------------------------------------------------
class Block(nn.Module):
    """Pre-norm block: ``x + attn(LN1(x))`` then ``x + mlp(LN2(x))``. (B, N, D) -> (B, N, D).

    LayerNorm eps is 1e-5 (``nn.LayerNorm`` default) as in the official code, not timm's 1e-6.
    With ``layer_scale_init > 0`` (DINOv2) each branch is scaled by a ``LayerScale`` (``ls1``,
    ``ls2``) before the residual add; 0 (default) creates no such module, so the state dict is
    the official Segmenter one.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        attn_impl: str = "sdpa_math",
        norm_eps: float = 1e-5,
        layer_scale_init: float = 0.0,
    ):
        super().__init__()
        # registration order norm1, norm2, attn, mlp = official state-dict key order
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, dropout, attn_impl=attn_impl)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        if layer_scale_init < 0:
            raise ValueError(f"layer_scale_init must be >= 0 (0 = no LayerScale), got {layer_scale_init}")
        # DINOv2 LayerScale, registered last so that the keys of a model without it do not move
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init > 0 else nn.Identity()
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, heads, N, N) softmax attention of this block for input ``x``."""
        return self.attn(self.norm1(x), return_attention=True)
