"""Swin Transformer backbone for detectron2 (``D2SwinTransformer``), with the state-dict layout of
the official MaskFormer / Mask2Former checkpoints (``patch_embed``, ``layers.{i}.blocks.{j}``,
``layers.{i}.downsample``, ``norm{i}``)."""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as checkpoint
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from timm.layers import DropPath, trunc_normal_
from torch import nn

from segmentation_core.acceleration import capturing_graph
from segmentation_core.modeling.drop_path import drop_path_residual

__all__ = ["SwinTransformer", "D2SwinTransformer"]

logger = logging.getLogger(__name__)

# Largest (windows, heads, N, N) float32 logits chunk of CPU inference window attention: a
# 512 x 512 image's stage 1 is ~10 MB (one chunk); an 8000 x 8000 image's would be ~2.4 GB.
_WINDOW_LOGITS_BYTES = 64 << 20


class GeluLinear(torch.autograd.Function):
    """``F.linear(F.gelu(h), weight, bias)`` that keeps only ``h`` for backward and recomputes
    the GELU there: the (..., 4C) GELU output, which the linear would otherwise keep, is not
    stored (a quarter of a Swin block's saved activations). Same operations as autograd's,
    so the gradients are the same bit for bit; the cost is one more GELU per block in backward
    (backward reuses that GELU's buffer for the input gradient and runs the GELU's backward in
    place on it, which saves about as much)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(h), weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        h, weight = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        buffer = None  # one (..., 4C) buffer for the recomputed GELU, then for the input gradient
        if ctx.needs_input_grad[1]:
            buffer = F.gelu(h)
            grad_w = grad_out.reshape(-1, grad_out.shape[-1]).t().mm(buffer.reshape(-1, buffer.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.reshape(-1, grad_out.shape[-1]).sum(0)
        if ctx.needs_input_grad[0]:
            # grad @ weight into memory already faulted in (the GELU's, no longer needed), and
            # the GELU's backward in place on it: no further (..., 4C) buffer
            grad_h = torch.matmul(grad_out, weight, out=buffer) if buffer is not None else grad_out.matmul(weight)
            torch.ops.aten.gelu_backward.grad_input(grad_h, h, grad_input=grad_h)
        return grad_h, grad_w, grad_b


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout. (..., C) -> (..., C)."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        h = self.fc1(x)
        if (self.training and torch.is_grad_enabled() and self.drop.p == 0.0
                and not torch.is_autocast_enabled(x.device.type)
                and type(self.act) is nn.GELU and self.act.approximate == "none"):
            # training: GELU recomputed in backward instead of stored (GeluLinear); eval
            # (also traced, e.g. FLOP counting), autocast (AMP) and dropout between the two
            # keep the plain composition below
            return GeluLinear.apply(h, self.fc2.weight, self.fc2.bias)
        return self.drop(self.fc2(self.drop(self.act(h))))


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ws -> (B * nW, ws, ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    # contiguous: with one window along H the permuted tensor can be a view that a later
    # .view() cannot reshape
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) index into the (2ws-1)^2 relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)  # (N, N, 2), >= 0
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def window_gather_index(h: int, w: int, ws: int, shift: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices that turn a (B, H*W, C) token map into shifted windows and back, each in one
    ``index_select`` instead of pad + roll + partition (and reverse + roll + crop): ~8 copies
    of the feature map per block become 3.

    Returns ``(to_windows, from_windows)``: ``to_windows`` (nW * ws*ws,) indexes the tokens
    followed by one zero token (index H*W, the zero padding) in window order of the map padded
    to multiples of ``ws`` and rolled by ``-shift``; ``from_windows`` (H*W,) is its inverse
    for the real tokens.
    """
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    rows = (torch.arange(hp, device=device) + shift) % hp  # rolled row -> row of the padded map
    cols = (torch.arange(wp, device=device) + shift) % wp
    src = rows[:, None] * w + cols[None, :]
    src = torch.where((rows[:, None] < h) & (cols[None, :] < w), src, torch.full_like(src, h * w))
    to_windows = src.view(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1)
    from_windows = torch.empty(h * w + 1, dtype=torch.long, device=device)
    from_windows[to_windows] = torch.arange(to_windows.numel(), device=device)
    return to_windows, from_windows[: h * w]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window with a learned relative-position bias.

    x (B * nW, N, C), N = ws*ws; mask (nW, N, N) additive (0 / -100) or None.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent: official checkpoints store it.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._bias_cache: Optional[Tuple[tuple, torch.Tensor]] = None  # see attention_bias

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                mask_key: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        return self.proj_drop(self.proj(self.attend(x, mask, mask_key)))

    def attend(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
               mask_key: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Attention without the output projection: (B*nW, N, C) -> (B*nW, N, C). The
        projection is per token, so a caller may apply ``proj`` after moving tokens (the Swin
        block does, on the real tokens only, not on the window padding)."""
        b_, n, c = x.shape
        # unbind on the (B*nW, N, 3, heads, head_dim) layout, then transpose: the same strided
        # q, k, v as permuting first, but backward stacks their gradients straight into the
        # qkv layout (permuting first costs a second copy of that gradient)
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # each (B*nW, heads, N, head_dim)
        if q.device.type == "cpu" and torch.is_grad_enabled() and self.relative_position_bias_table.requires_grad:
            return self._attend_explicit(q, k, v, mask).transpose(1, 2).reshape(b_, n, c)
        bias = self.attention_bias(mask, mask_key, q.dtype)
        if q.device.type == "cpu" and q.dtype == torch.float32 and not capturing_graph():
            # (an exported / compiled graph keeps the one SDPA node: the chunk loop depends on sizes)
            return self._attend_windows(q, k, v, bias).transpose(1, 2).reshape(b_, n, c)
        if mask is not None and bias.shape[0] != b_:
            # Windows are ordered image by image, so the (nW, heads, N, N) bias repeats every
            # nW windows. q/k/v stay 4-D: a 5-D call sends SDPA to its unfused math path.
            nw = bias.shape[0]
            bias = bias.unsqueeze(0).expand(b_ // nw, -1, -1, -1, -1).reshape(b_, self.num_heads, n, n)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale,
        )
        return out.transpose(1, 2).reshape(b_, n, c)

    def _attend_explicit(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Attention as the official Swin writes it, (B*nW, heads, N, head_dim) -> same: scaled
        logits, + relative-position bias, + shift mask, softmax, @ v. Used when the bias takes a
        gradient on CPU (training): the CPU's fused SDPA kernel cannot differentiate an additive
        mask, so SDPA would run its unfused math path, which also scales q and k separately and
        wraps the softmax in NaN guards for fully masked rows (none here: a window row always
        sees itself); these plain ops are 15-20 % faster forward + backward (stage 1-3 windows
        at 2 x 512 x 512, docs/benchmarks.md)."""
        b_, heads, n, _ = q.shape
        logits = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias()
        if mask is not None:
            nw = mask.shape[0]
            logits = (logits.view(b_ // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(b_, heads, n, n)
        probs = F.dropout(logits.softmax(-1), self.attn_drop, self.training)
        return probs @ v

    def _attend_windows(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Attention without autograd on the bias (float32 CPU inference): (B*nW, heads, N,
        head_dim) -> same; ``bias`` (1 or nW, heads, N, N) from :meth:`attention_bias`. The
        official formula (scaled logits + bias, softmax, @ v) rather than SDPA's fused CPU
        kernel: that kernel runs each (window, head) as its own small task, and with 2 threads
        it took longer than with 1 at the Swin-T window shapes (12.3 -> 17.6 ms at stage 1),
        where these batched products scale like any GEMM (14.9 -> 9.8 ms; docs/benchmarks.md).
        Windows go in chunks whose logits stay under ``_WINDOW_LOGITS_BYTES``, so a large
        image's (windows, heads, N, N) logits are never all in memory (SDPA's never are)."""
        b_, heads, n, d = q.shape
        per_window = bias.shape[0] > 1  # the shift mask differs per window of an image
        groups, windows = (b_ // bias.shape[0], bias.shape[0]) if per_window else (1, b_)
        q, k, v = (t.reshape(groups, windows, heads, n, d) for t in (q, k, v))
        step = max(1, _WINDOW_LOGITS_BYTES // (groups * heads * n * n * q.element_size()))
        out = []
        for s in range(0, windows, step):
            logits = (q[:, s:s + step] * self.scale) @ k[:, s:s + step].transpose(-2, -1)
            logits += bias[s:s + step] if per_window else bias
            probs = F.dropout(logits.softmax(-1), self.attn_drop, self.training)
            out.append(probs @ v[:, s:s + step])
        return (out[0] if len(out) == 1 else torch.cat(out, 1)).reshape(b_, heads, n, d)

    def relative_position_bias(self) -> torch.Tensor:
        """The learned bias gathered from the table: (1, heads, N, N), with autograd."""
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)

    def attention_bias(self, mask: Optional[torch.Tensor], mask_key: Optional[Tuple[int, int]],
                       dtype: torch.dtype) -> torch.Tensor:
        """Relative-position bias (1, heads, N, N), plus the shift mask: (nW, heads, N, N).

        Without autograd (eval / inference) the result is cached: the gather from the table and
        the addition of the shift mask are the same on every call for one padded map size
        ``mask_key`` (hp, wp). The cache key holds the table's version counter and storage, so an
        optimizer step, ``load_state_dict`` or ``.to()`` recomputes it; with autograd enabled
        (training) it is never used, the bias must stay in the graph."""
        table = self.relative_position_bias_table
        use_cache = not torch.is_grad_enabled() and (mask is None or mask_key is not None)
        if use_cache:
            key = (table._version, table.data_ptr(), table.device, dtype,
                   None if mask is None else (tuple(mask_key), mask.shape[0]))
            if self._bias_cache is not None and self._bias_cache[0] == key:
                return self._bias_cache[1]
        bias = self.relative_position_bias()
        if mask is not None:
            bias = bias + mask.unsqueeze(1)  # (nW, heads, N, N)
        bias = bias.to(dtype)
        if use_cache:
            self._bias_cache = (key, bias)
        return bias


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention + MLP, pre-norm with residuals. x (B, H*W, C) -> (B, H*W, C);
    feature maps are zero-padded to multiples of the window size and cropped back.

    ``skip_dropped_paths``: in CPU float32 training, a residual branch that stochastic depth
    drops for an image is not computed for that image (:func:`drop_path_residual`: the same
    random draws and numbers). Only where the branches draw no random numbers of their own
    (``drop`` and ``attn_drop`` 0, as in every official config), since the mask is drawn first."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 skip_dropped_paths: bool = True):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size); got {shift_size} for {window_size}.")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.skip_dropped_paths = skip_dropped_paths and drop_path > 0.0 and drop == 0.0 and attn_drop == 0.0

    def _residual(self, x: torch.Tensor, branch) -> torch.Tensor:
        """x + drop_path(branch(x))."""
        if (self.skip_dropped_paths and self.training and x.device.type == "cpu"
                and not torch.is_autocast_enabled("cpu")):
            return drop_path_residual(x, branch, self.drop_path.drop_prob)
        return x + self.drop_path(branch(x))

    def forward(self, x: torch.Tensor, hw, attn_mask: Optional[torch.Tensor],
                windows_index: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """x (B, H*W, C); ``windows_index`` = :func:`window_gather_index` for this block's
        shift (computed here when not given)."""
        h, w = hw
        length = x.shape[1]
        if length != h * w:
            raise ValueError(f"Swin block got {length} tokens for a {h}x{w} map.")
        if windows_index is None:
            windows_index = window_gather_index(h, w, self.window_size, self.shift_size, x.device)
        if self.shift_size == 0:
            attn_mask = None
        x = self._residual(x, lambda t: self._window_attention(t, hw, attn_mask, windows_index))
        return self._residual(x, lambda t: self.mlp(self.norm2(t)))

    def _window_attention(self, x: torch.Tensor, hw, attn_mask: Optional[torch.Tensor],
                          windows_index: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The attention branch: norm, (shifted) windows, attention, back, projection."""
        h, w = hw
        b, length, c = x.shape
        ws = self.window_size
        to_windows, from_windows = windows_index
        mask_key = (-(-h // ws) * ws, -(-w // ws) * ws)  # the padded map size the mask is for
        x = self.norm1(x)
        if to_windows.numel() != length:
            # Zero-pad (after the norm, as the official block) via one extra zero token that
            # the gather index points at, then pad + roll + window partition in one gather.
            x = torch.cat([x, x.new_zeros(b, 1, c)], dim=1)
        windows = x.index_select(1, to_windows).view(-1, ws * ws, c)
        windows = self.attn.attend(windows, mask=attn_mask, mask_key=mask_key).view(b, -1, c)
        # Window reverse + roll back + crop in one gather, then the output projection on the
        # real tokens only (it is per token; the padding tokens are dropped by the crop).
        return self.attn.proj_drop(self.attn.proj(windows.index_select(1, from_windows)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat + LayerNorm + linear 4C -> 2C. (B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Channel order (y, x): (0,0), (1,0), (0,1), (1,1), as in the official checkpoints.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


def shifted_window_mask(hp: int, wp: int, ws: int, shift: int, device) -> torch.Tensor:
    """Additive mask (nW, ws*ws, ws*ws) that keeps the shifted windows from mixing regions that are
    not adjacent in the image (0 inside a region, -100 across regions)."""
    img = torch.zeros((1, hp, wp, 1), device=device)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = window_partition(img, ws).view(-1, ws * ws)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks alternating regular / shifted windows, then optional
    patch merging. Returns (stage output, H, W, next-stage input, H', W')."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int = 7, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: Sequence[float] = (), downsample: bool = False,
                 use_checkpoint: bool = False, skip_dropped_paths: bool = True):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path[i],
                                 skip_dropped_paths)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int):
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        attn_mask = shifted_window_mask(hp, wp, ws, self.shift_size, x.device)
        index = {s: window_gather_index(h, w, ws, s, x.device) for s in {blk.shift_size for blk in self.blocks}}
        for blk in self.blocks:
            if self.use_checkpoint and self.training:
                x = checkpoint.checkpoint(blk, x, (h, w), attn_mask, index[blk.shift_size], use_reentrant=False)
            else:
                x = blk(x, (h, w), attn_mask, index[blk.shift_size])
        if self.downsample is None:
            return x, h, w, x, h, w
        return x, h, w, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size x patch_size conv (input zero-padded to a multiple), optional
    LayerNorm. (B, 3, H, W) -> (B, C, ceil(H/p), ceil(W/p))."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96, patch_norm: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.proj(x)
        if self.norm is not None:
            hh, ww = x.shape[-2:]
            x = self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(-1, self.embed_dim, hh, ww)
        return x


class SwinTransformer(nn.Module):
    """Swin Transformer (Liu et al. 2021) feature extractor.

    (B, 3, H, W) -> {"res2": (B, C, H/4, W/4), "res3": (B, 2C, H/8, W/8), "res4": (B, 4C, H/16, W/16),
    "res5": (B, 8C, H/32, W/32)} (sizes rounded up), each after its own LayerNorm ``norm{i}``.
    """

    def __init__(self, pretrain_img_size: int = 224, patch_size: int = 4, in_chans: int = 3,
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2, ape: bool = False,
                 patch_norm: bool = True, out_indices: Sequence[int] = (0, 1, 2, 3),
                 use_checkpoint: bool = False, skip_dropped_paths: bool = True):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} differ in length.")
        self.pretrain_img_size = pretrain_img_size
        self.num_layers = len(depths)
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_norm = patch_norm
        self.out_indices = tuple(out_indices)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)

        # Stochastic depth grows linearly over all blocks.
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))]
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            self.layers.append(BasicLayer(
                dim=int(embed_dim * 2 ** i), depth=depths[i], num_heads=num_heads[i],
                window_size=window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                drop=drop_rate, attn_drop=attn_drop_rate,
                drop_path=dpr[sum(depths[:i]): sum(depths[: i + 1])],
                downsample=i < self.num_layers - 1, use_checkpoint=use_checkpoint,
                skip_dropped_paths=skip_dropped_paths,
            ))
        self.num_features = [int(embed_dim * 2 ** i) for i in range(self.num_layers)]
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.patch_embed(x)
        wh, ww = x.shape[2], x.shape[3]
        if self.ape:
            pos = F.interpolate(self.absolute_pos_embed, size=(wh, ww), mode="bicubic")
            x = x + pos
        x = self.pos_drop(x.flatten(2).transpose(1, 2))
        outs = {}
        for i, layer in enumerate(self.layers):
            x_out, h, w, x, wh, ww = layer(x, wh, ww)
            if i in self.out_indices:
                x_out = getattr(self, f"norm{i}")(x_out)
                outs[f"res{i + 2}"] = x_out.view(-1, h, w, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
        return outs


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(SwinTransformer, Backbone):
    """``SwinTransformer`` as a detectron2 ``Backbone`` built from ``cfg.MODEL.SWIN``.

    Outputs ``out_features`` among res2..res5 with strides 4, 8, 16, 32 and channels
    ``EMBED_DIM * (1, 2, 4, 8)``. Any input size works (maps are padded internally);
    ``size_divisibility`` is 32.
    """

    @configurable
    def __init__(self, *, out_features: List[str], **kwargs):
        super().__init__(**kwargs)
        strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
        bad = [f for f in out_features if f not in strides]
        if bad:
            raise ValueError(f"MODEL.SWIN.OUT_FEATURES has unknown names {bad}; use res2..res5.")
        self._out_features = list(out_features)
        self._out_feature_strides = dict(strides)
        self._out_feature_channels = {f"res{i + 2}": c for i, c in enumerate(self.num_features)}
        if any(blk.skip_dropped_paths for layer in self.layers for blk in layer.blocks):
            logger.info("D2SwinTransformer: CPU float32 training computes no residual branch that stochastic "
                        "depth drops for an image (MODEL.SWIN.SKIP_DROPPED_PATHS; False computes every branch)")

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None):
        s = cfg.MODEL.SWIN
        in_chans = input_shape.channels if input_shape is not None and input_shape.channels else 3
        return {
            "pretrain_img_size": s.PRETRAIN_IMG_SIZE,
            "patch_size": s.PATCH_SIZE,
            "in_chans": in_chans,
            "embed_dim": s.EMBED_DIM,
            "depths": list(s.DEPTHS),
            "num_heads": list(s.NUM_HEADS),
            "window_size": s.WINDOW_SIZE,
            "mlp_ratio": s.MLP_RATIO,
            "qkv_bias": s.QKV_BIAS,
            "qk_scale": s.QK_SCALE,
            "drop_rate": s.DROP_RATE,
            "attn_drop_rate": s.ATTN_DROP_RATE,
            "drop_path_rate": s.DROP_PATH_RATE,
            "ape": s.APE,
            "patch_norm": s.PATCH_NORM,
            "use_checkpoint": s.USE_CHECKPOINT,
            "skip_dropped_paths": s.SKIP_DROPPED_PATHS,
            "out_features": list(s.OUT_FEATURES),
        }

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: (N, C, H, W) -> dict of the requested res2..res5 maps."""
        if x.dim() != 4:
            raise ValueError(f"D2SwinTransformer takes (N, C, H, W); got shape {tuple(x.shape)}.")
        y = super().forward(x)
        return {k: v for k, v in y.items() if k in self._out_features}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }

    @property
    def size_divisibility(self) -> int:
        return 32
