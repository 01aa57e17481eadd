"""Plain Vision Transformer of Segmenter (and of ReSTR's vision encoder).

State-dict keys equal the official Segmenter encoder keys (``cls_token``, ``dist_token``,
``pos_embed``, ``patch_embed.proj.*``, ``head_dist.*``, ``blocks.N.*``, ``norm.*``, ``head.*``),
in the official order, so ``encoder.*`` of a Segmenter checkpoint and ``encoder_v.*`` of a
ReSTR checkpoint load with ``strict=True`` after stripping the prefix. See docs/CONTRACTS.md
("Plain ViT").
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, PatchEmbed
from .pos_embed import resize_pos_embed

__all__ = [
    "VisionTransformer",
    "VIT_PRESETS",
    "pad_to_patch_multiple",
    "vit_kwargs_from_official",
    "init_segmenter_weights",
    "trunc_normal_",
]

# Official Segmenter ``segm/config.yml`` backbones: (embed_dim, depth, num_heads).
VIT_PRESETS: Dict[str, Dict[str, int]] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
}


def pad_to_patch_multiple(x: torch.Tensor, patch_size: int, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, H, W) at the bottom/right up to multiples of ``patch_size``.

    The official Segmenter pads with 0 in the *normalized* space, i.e. ``value=0``.
    """
    H, W = x.shape[-2:]
    pad_h, pad_w = (-H) % patch_size, (-W) % patch_size
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=value)
    return x


@torch.no_grad()
def trunc_normal_(tensor: torch.Tensor, std: float = 0.02, a: float = -2.0, b: float = 2.0,
                  generator=None) -> torch.Tensor:
    """Normal(0, std) truncated to the absolute range [a, b], drawn by the inverse-CDF method
    (one uniform draw per element, then erfinv). This is the sampler of timm, which the
    official code uses; ``torch.nn.init.trunc_normal_`` (torch >= 2.10) samples differently, so
    only this one reproduces the official initial weights from a seed."""
    cdf = lambda x: (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0  # noqa: E731
    lo, hi = cdf(a / std), cdf(b / std)
    tensor.uniform_(2 * lo - 1, 2 * hi - 1, generator=generator)
    tensor.erfinv_().mul_(std * math.sqrt(2.0))
    return tensor.clamp_(min=a, max=b)


def init_segmenter_weights(module: nn.Module) -> None:
    """Official Segmenter init (ViT and heads): trunc-normal(.02) Linear weights drawn by
    :func:`trunc_normal_`, zero biases, LayerNorm (1, 0); convolutions (the patch embedding)
    keep PyTorch's default. ReSTR's differs: ``restr_d2.modeling.language.blocks.init_restr_weights``."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """Segmenter-style ViT.

    ``forward_features``: (B, 3, H, W), H and W multiples of ``patch_size`` ->
    (B, T + N, D) after the final LayerNorm, T = ``num_extra_tokens`` (CLS at index 0, DIST at
    index 1 when distilled), N = (H / P) * (W / P) patch tokens in raster order.

    The position embedding is defined on the grid of ``image_size``. It is resized (bilinear,
    align_corners=False) **only when the token count differs** from that grid, as the official
    code does: a transposed grid with the same token count reuses the embedding unchanged.
    """

    def __init__(
        self,
        image_size: Union[int, Sequence[int]] = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        distilled: bool = False,
        in_chans: int = 3,
        attn_impl: str = "sdpa_math",
        pos_embed_interp: str = "bilinear",
        # --- DINOv2 family (issue 18); the defaults build today's Segmenter ViT ---
        layer_scale_init: float = 0.0,
        norm_eps: float = 1e-5,
        num_register_tokens: int = 0,
        pos_embed_grid: Optional[Sequence[int]] = None,
        freeze: bool = False,
    ):
        """
        Args:
            image_size: training size (H, W) or int; defines the position-embedding grid.
            patch_size: 8, 16 or 32 in the official zoo (any positive int works).
            embed_dim, depth, num_heads: see ``VIT_PRESETS``.
            mlp_ratio: MLP hidden size = mlp_ratio * embed_dim (official: 4).
            num_classes: size of the (unused for segmentation) ImageNet head; official
                checkpoints carry a 1000-way ``head``. 0 removes ``head``/``head_dist``.
            dropout: dropout after the position embedding and inside blocks.
            drop_path_rate: stochastic depth, linearly increasing over blocks from 0.
            distilled: DeiT distillation token (``dist_token``, ``head_dist``).
            attn_impl: "sdpa" (scaled_dot_product_attention) or "math" (explicit softmax).
            pos_embed_interp: interpolation used for grids other than the training grid.
            layer_scale_init: > 0 adds DINOv2 LayerScale modules (``blocks.N.ls1.gamma``,
                ``ls2.gamma``) initialised to this value; 0 (default) adds none.
            norm_eps: eps of every LayerNorm (1e-5, the official Segmenter; DINOv2: 1e-6).
            num_register_tokens: DINOv2 register tokens (``register_tokens``, (1, R, D)),
                inserted after CLS *after* the position embedding is added (they have none).
            pos_embed_grid: (gh, gw) grid ``pos_embed`` is stored on, e.g. (37, 37) for a
                DINOv2 checkpoint (518 / 14) kept as released. None (default): the grid of
                ``image_size``, resized only when the token count differs (official Segmenter);
                given: resized whenever the input grid differs from it (DINOv2 rule).
            freeze: a fixed feature extractor (pretrained ViT, linear-probe style): every
                parameter gets ``requires_grad=False`` (optimizers built from trainable
                parameters skip them) and the module stays in eval mode (no dropout, no drop
                path) when the model is put in training mode.
        """
        super().__init__()
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.patch_size = int(patch_size)
        self.embed_dim = self.d_model = int(embed_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.distilled = bool(distilled)
        self.num_extra_tokens = 2 if self.distilled else 1
        if pos_embed_interp not in ("bilinear", "bicubic", "bicubic_antialias"):
            raise ValueError(f"pos_embed_interp must be 'bilinear', 'bicubic' or 'bicubic_antialias' "
                             f"(MODEL.VIT.POS_EMBED_INTERP), got {pos_embed_interp!r}")
        self.pos_embed_interp = pos_embed_interp
        self.attn_impl = attn_impl
        # False (default): the official rule, no resize when the token count equals the
        # training grid's. True: always resize to the input grid (the identity on the training
        # grid itself); a traced/exported graph cannot keep the Python branch of the official
        # rule for a dynamic input size. Set explicitly by the ONNX export (restr_d2/export.py).
        self.always_resize_pos_embed = False
        # --- DINOv2 family (issue 18) ---
        self.num_register_tokens = int(num_register_tokens)
        if self.num_register_tokens < 0:
            raise ValueError(f"num_register_tokens must be >= 0, got {num_register_tokens}")
        # tokens that carry a position embedding (CLS, DIST); registers come after them
        self.num_pos_prefix_tokens = self.num_extra_tokens
        # tokens before the patch tokens in the output of forward_features
        self.num_extra_tokens += self.num_register_tokens
        self.pos_embed_grid_explicit = pos_embed_grid is not None and len(pos_embed_grid) > 0
        if self.pos_embed_grid_explicit:
            if len(pos_embed_grid) != 2 or min(int(g) for g in pos_embed_grid) <= 0:
                raise ValueError(f"pos_embed_grid must be two positive ints (gh, gw), got {pos_embed_grid}")
            pos_grid = (int(pos_embed_grid[0]), int(pos_embed_grid[1]))
        else:
            pos_grid = (image_size[0] // self.patch_size, image_size[1] // self.patch_size)
        self._pos_embed_grid = pos_grid

        # Registration order reproduces the official state-dict order: own parameters
        # (cls_token, dist_token, pos_embed) first, then patch_embed, head_dist, blocks, norm, head.
        self.patch_embed = PatchEmbed(image_size, self.patch_size, embed_dim, in_chans)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if self.distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # randn before the trunc-normal re-init, as the official code: keeps the RNG stream, so
        # torch.manual_seed(s) gives the official initial weights bit for bit
        self.pos_embed = nn.Parameter(
            torch.randn(1, pos_grid[0] * pos_grid[1] + self.num_pos_prefix_tokens, embed_dim)
        )
        if self.num_register_tokens:  # DINOv2 registers (issue 18)
            self.register_tokens = nn.Parameter(torch.zeros(1, self.num_register_tokens, embed_dim))
        if self.distilled:
            self.head_dist = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # cpu: meta-safe
        mlp_dim = int(mlp_ratio * embed_dim)
        self.blocks = nn.ModuleList(
            [
                Block(embed_dim, num_heads, mlp_dim, dropout, dpr[i], attn_impl=attn_impl,
                      norm_eps=norm_eps, layer_scale_init=layer_scale_init)
                for i in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.reset_parameters()
        self.frozen = bool(freeze)
        if self.frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True):
        # a frozen ViT is a fixed function of its input: dropout and drop path stay off
        return super().train(mode and not self.frozen)

    def reset_parameters(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        if self.distilled:
            trunc_normal_(self.dist_token, std=0.02)
        if self.num_register_tokens:
            trunc_normal_(self.register_tokens, std=0.02)
        self.apply(init_segmenter_weights)

    @property
    def image_size(self) -> Tuple[int, int]:
        return self.patch_embed.image_size

    @property
    def grid_size(self) -> Tuple[int, int]:
        """Patch grid on which ``pos_embed`` is defined: the training size's, or
        ``pos_embed_grid`` when given (DINOv2 checkpoints: 37 x 37)."""
        return self._pos_embed_grid

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed", "cls_token", "dist_token", "register_tokens"}

    def pos_embed_for_grid(self, grid: Tuple[int, int]) -> torch.Tensor:
        """(1, T + gh * gw, D) position embedding for a (gh, gw) patch grid."""
        if self.always_resize_pos_embed:
            pass  # export: resize to every grid (the identity on the stored grid), no Python branch
        elif self.pos_embed_grid_explicit:
            # DINOv2 rule (issue 18): resize whenever the grid differs from the stored one
            if tuple(grid) == tuple(self.grid_size):
                return self.pos_embed
        else:
            num_tokens = self.num_pos_prefix_tokens + grid[0] * grid[1]
            if num_tokens == self.pos_embed.shape[1]:
                # Official quirk: same token count -> no resize, even for another grid shape.
                return self.pos_embed
        return resize_pos_embed(
            self.pos_embed, self.grid_size, grid, self.num_pos_prefix_tokens, mode=self.pos_embed_interp
        )

    def _check_input(self, x: torch.Tensor) -> Tuple[int, int]:
        if x.ndim != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        P = self.patch_size
        if H < P or W < P or H % P or W % P:
            raise ValueError(
                f"input size {H}x{W} must be a positive multiple of the patch size {P}; "
                "pad it first with pad_to_patch_multiple() (images smaller than one patch "
                "must be resized or padded to at least one patch)"
            )
        return H // P, W // P

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, T + N, D) tokens with position embedding, before the blocks
        (T = CLS [+ DIST] [+ registers])."""
        grid = self._check_input(x)
        B = x.shape[0]
        x = self.patch_embed(x)
        extra = [self.cls_token.expand(B, -1, -1)]
        if self.distilled:
            extra.append(self.dist_token.expand(B, -1, -1))
        x = torch.cat(extra + [x], dim=1)
        x = x + self.pos_embed_for_grid(grid)
        if self.num_register_tokens:
            # DINOv2: registers go after CLS (and DIST), after the position embedding
            p = self.num_pos_prefix_tokens
            x = torch.cat([x[:, :p], self.register_tokens.expand(B, -1, -1), x[:, p:]], dim=1)
        return self.dropout(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, T + N, D), after the final LayerNorm."""
        x = self.embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet classification logits (B, num_classes), as the official encoder."""
        x = self.forward_features(x)
        if self.distilled:
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(x[:, 0])

    @torch.no_grad()
    def attention_map(self, x: torch.Tensor, layer_id: int) -> torch.Tensor:
        """(B, heads, T + N, T + N) attention of block ``layer_id``."""
        if not 0 <= layer_id < self.depth:
            raise ValueError(f"layer_id must be in [0, {self.depth}), got {layer_id}")
        x = self.embed(x)
        for blk in self.blocks[:layer_id]:
            x = blk(x)
        return self.blocks[layer_id].attention_map(x)


def vit_kwargs_from_official(net_kwargs: dict) -> dict:
    """Map an official Segmenter/ReSTR ViT config dict (``image_size``, ``patch_size``,
    ``d_model``, ``n_heads``, ``n_layers``, ``dropout``, ``drop_path_rate``, ``distilled``; other
    keys ignored) to ``VisionTransformer`` keyword arguments. The official ``d_ff`` is always
    4 * d_model and the ImageNet head always has 1000 classes."""
    return dict(
        image_size=tuple(net_kwargs["image_size"]),
        patch_size=net_kwargs["patch_size"],
        embed_dim=net_kwargs["d_model"],
        depth=net_kwargs["n_layers"],
        num_heads=net_kwargs["n_heads"],
        mlp_ratio=4.0,
        num_classes=1000,
        dropout=net_kwargs.get("dropout", 0.0),
        drop_path_rate=net_kwargs.get("drop_path_rate", 0.0),
        distilled=bool(net_kwargs.get("distilled", False)),
    )
