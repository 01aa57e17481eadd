"""ReSTR multimodal fusion encoders (registry ``FUSION_REGISTRY``, ``MODEL.RESTR.FUSION.NAME``).

All variants share the input/output path of the official ``MM_fusion``:

1. L2-normalise the ViT patch tokens (CLS/DIST dropped) and the language tokens, project both
   to width D (``proj_v``, ``proj_l``), and zero the projected language features at pad tokens;
2. run the variant's transformer encoder(s), giving patch features and the output of the class
   seed token (``seed_emb``), the *adaptive classifier*;
3. patch logits = ``(patches @ proj_patch) . (seed @ proj_cls)`` (no scaling);
4. decoder input = ``[x_v ; patch_logit * (patches @ proj_patch)]`` (2D channels) ->
   ``CoarseToFineDecoder`` -> pixel logits; without decoder the pixel logits are the patch logits.

Variants (the paper's Fig. 4; official class names in parentheses):

* ``ConjugateFusion`` "(c)", the official default (``MM_fusion``): visual-linguistic encoder over
  ``[vision; language]``, then linguistic-seed encoder over ``[vision-attended language; seed]``,
  then ``norm``. Patch features are taken *before* any norm.
* ``IndependentFusion`` "(b)" (``Decoder_independvltlst_locup``): as (c) but the seed encoder
  sees the *projected* language, not the vision-attended one; ``norm`` is applied to both
  encoder outputs (one shared LayerNorm, as the official ``decoder_norm``).
* ``VanillaFusion`` "(a)" (``Decoder_vlst_locup``): one encoder over ``[vision; language; seed]``,
  then ``norm``.

``share_weights`` (official ``--is_shared``) keeps one block per encoder and applies it
``num_layers`` times. Keys follow the official (c) layout (``blocks_vl``, ``blocks_ls``, ``norm``,
``decoder``); (a) uses ``blocks``. The official (a)/(b) classes use other parameter names and
have no released checkpoints.
"""
import logging
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.utils.registry import Registry
from torch import nn

from ..language.blocks import PreNormBlock, init_restr_weights
from ..language.build import LanguageFeatures
from .decoder import CoarseToFineDecoder

__all__ = [
    "FUSION_REGISTRY",
    "MultimodalFusion",
    "ConjugateFusion",
    "IndependentFusion",
    "VanillaFusion",
    "build_fusion_module",
]

logger = logging.getLogger(__name__)

#: ``MODEL.RESTR.FUSION.INPUT_NORM`` values. Why "layernorm" exists: with the official init the
#: projected tokens have norm ~0.3 (unit-norm inputs, trunc-normal .02 weights) and the first
#: block's near-uniform attention adds a norm ~1 average of all tokens to each, so the patches
#: start nearly alike and the fusion sits on a "segment every object" plateau until ``proj_v``
#: grows (~4,000 iterations on shapes from scratch; on frozen DINOv2 features 44.7 vs 29.8 oIoU
#: after 1,500 steps, tools/analysis/referring_fusion_probe.py, docs/results_referring.md).
INPUT_NORMS = ("none", "layernorm")

FUSION_REGISTRY = Registry("RESTR_FUSION")
FUSION_REGISTRY.__doc__ = """ReSTR multimodal fusion encoders, called as ``cls(cfg, d_vision, d_language)``."""


def _ones(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.ones(x.shape[0], n, dtype=torch.bool, device=x.device)


class MultimodalFusion(nn.Module):
    """Shared parts of the fusion variants; subclasses implement ``encode``.

    forward(x_v (B, N, Dv) patch tokens, grid (h, w) with h * w = N, language features) ->
    dict with ``pixel_logits`` (B, 1, h * 2^n, w * 2^n) (or (B, 1, h, w) without decoder),
    ``patch_logits`` (B, 1, h, w), ``norm_out`` (output of the last LayerNorm) and, with the
    decoder, ``decoder_in`` (B, 2D, h, w).
    """

    @configurable
    def __init__(
        self,
        *,
        d_vision: int,
        d_language: int,
        dim: int,
        num_layers: int = 2,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path_rate: float = 0.1,
        share_weights: bool = False,
        use_decoder: bool = True,
        num_upsample: int = 4,
        mask_pad_tokens: bool = False,
        input_norm: str = "none",
    ):
        """
        Args:
            d_vision, d_language: widths of the ViT and language-encoder tokens.
            dim: fusion width D (official: the ViT width).
            num_layers: blocks per encoder (official 2).
            num_heads: attention heads (official: the ViT head count).
            mlp_ratio: MLP hidden = mlp_ratio * D (official 4).
            dropout, drop_path_rate: block regularisation (official 0, 0.1; linearly increasing
                stochastic depth over the blocks of one encoder).
            share_weights: one block per encoder, applied ``num_layers`` times (official
                ``--is_shared``; its drop-path schedule is then ``linspace(0, rate, 1) = [0]``).
            use_decoder: coarse-to-fine decoder (official ``not --no_decoder``).
            num_upsample: decoder upsampling blocks (official n_up = 4 = log2(16)).
            mask_pad_tokens: exclude language pad tokens from attention (official: False).
            input_norm: "none" (official) or "layernorm": a parameter-free LayerNorm on the
                projected vision and language tokens (before pad tokens are zeroed), so they enter
                the blocks at norm sqrt(D) rather than ~0.3, above the ~1 that each residual
                branch adds at init (see ``INPUT_NORMS``).
        """
        super().__init__()
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.share_weights = bool(share_weights)
        self.use_decoder = bool(use_decoder)
        self.mask_pad_tokens = bool(mask_pad_tokens)
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"MODEL.RESTR.FUSION.INPUT_NORM={input_norm!r}: expected one of {INPUT_NORMS}")
        self.input_norm = input_norm
        scale = dim**-0.5
        # own parameters first: official state-dict order seed_emb, proj_patch, proj_cls, ...
        self.seed_emb = nn.Parameter(torch.zeros(1, 1, dim))
        self.proj_patch = nn.Parameter(scale * torch.randn(dim, dim))
        self.proj_cls = nn.Parameter(scale * torch.randn(dim, dim))
        self.proj_v = nn.Linear(d_vision, dim)
        self.proj_l = nn.Linear(d_language, dim)

        self._num_blocks = 1 if self.share_weights else self.num_layers
        self._repeats = self.num_layers if self.share_weights else 1
        dpr = torch.linspace(0, drop_path_rate, self._num_blocks, device="cpu").tolist()
        mlp_dim = int(mlp_ratio * dim)
        self._block_args = (dim, num_heads, mlp_dim, dropout, dpr)
        self.build_encoders()
        self.norm = nn.LayerNorm(dim)
        self.decoder = CoarseToFineDecoder(dim, num_upsample) if self.use_decoder else nn.ModuleList()

        self.proj_v.apply(init_restr_weights)
        self.proj_l.apply(init_restr_weights)
        self.norm.apply(init_restr_weights)
        nn.init.trunc_normal_(self.seed_emb, std=0.02)

    def _make_blocks(self) -> nn.ModuleList:
        dim, heads, mlp_dim, dropout, dpr = self._block_args
        blocks = nn.ModuleList(
            [PreNormBlock(dim, heads, mlp_dim, dropout, dpr[i]) for i in range(self._num_blocks)]
        )
        blocks.apply(init_restr_weights)
        return blocks

    def _run(self, blocks: nn.ModuleList, x: torch.Tensor, key_valid: Optional[torch.Tensor]):
        for _ in range(self._repeats):
            for blk in blocks:
                x = blk(x, key_valid)
        return x

    @classmethod
    def from_config(cls, cfg, d_vision: int, d_language: int):
        f = cfg.MODEL.RESTR.FUSION
        return dict(
            d_vision=d_vision,
            d_language=d_language,
            dim=fusion_dim(cfg, d_vision),
            num_layers=f.NUM_LAYERS,
            num_heads=f.NUM_HEADS,
            mlp_ratio=f.MLP_RATIO,
            dropout=f.DROPOUT,
            drop_path_rate=f.DROP_PATH_RATE,
            share_weights=f.SHARE_WEIGHTS,
            use_decoder=cfg.MODEL.RESTR.DECODER.ENABLED,
            # without the decoder nothing is upsampled, so any patch size is fine
            num_upsample=decoder_num_upsample(cfg) if cfg.MODEL.RESTR.DECODER.ENABLED else 0,
            mask_pad_tokens=cfg.MODEL.RESTR.MASK_PAD_TOKENS,
            input_norm=f.INPUT_NORM,
        )

    def build_encoders(self) -> None:
        raise NotImplementedError

    def encode(
        self, x_v: torch.Tensor, x_l: torch.Tensor, l_valid: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected (B, N, D) vision and (B, T, D) language tokens, optional (B, T) bool
        attention mask -> patch features (B, N, D), seed output (B, 1, D), last norm output."""
        raise NotImplementedError

    def forward(
        self, x_v: torch.Tensor, grid: Tuple[int, int], lang: LanguageFeatures
    ) -> Dict[str, torch.Tensor]:
        B, N, _ = x_v.shape
        h, w = grid
        if h * w != N:
            raise ValueError(f"grid {grid} does not hold the {N} vision tokens")
        x_v = self.proj_v(F.normalize(x_v, dim=2))
        x_l = self.proj_l(F.normalize(lang.features, dim=2))
        if self.input_norm == "layernorm":
            x_v = F.layer_norm(x_v, (self.dim,))
            x_l = F.layer_norm(x_l, (self.dim,))
        # official: projected features of pad tokens are zeroed (they still attend)
        x_l = x_l.masked_fill(~lang.valid[..., None], 0.0)
        l_valid = lang.valid if self.mask_pad_tokens else None
        patches, seed, norm_out = self.encode(x_v, x_l, l_valid)

        patches = patches @ self.proj_patch
        seed = seed @ self.proj_cls
        patch_pred = patches @ seed.transpose(1, 2)  # (B, N, 1): the adaptive classifier
        out = {
            "patch_logits": patch_pred.transpose(1, 2).reshape(B, 1, h, w),
            "norm_out": norm_out,
        }
        if self.use_decoder:
            dec_in = torch.cat((x_v, patch_pred * patches), dim=2)
            dec_in = dec_in.transpose(1, 2).reshape(B, 2 * self.dim, h, w)
            out["decoder_in"] = dec_in
            out["pixel_logits"] = self.decoder(dec_in)
        else:
            out["pixel_logits"] = out["patch_logits"]
        return out


@FUSION_REGISTRY.register()
class ConjugateFusion(MultimodalFusion):
    """Variant (c), the official ReSTR fusion. ``norm_out``: (B, T + 1, D)."""

    def build_encoders(self) -> None:
        self.blocks_vl = self._make_blocks()
        self.blocks_ls = self._make_blocks()

    def encode(self, x_v, x_l, l_valid):
        N = x_v.shape[1]
        vl_valid = None if l_valid is None else torch.cat((_ones(x_v, N), l_valid), 1)
        x = self._run(self.blocks_vl, torch.cat((x_v, x_l), 1), vl_valid)
        patches, x_l = x[:, :N], x[:, N:]
        seed = self.seed_emb.expand(x.shape[0], -1, -1)
        ls_valid = None if l_valid is None else torch.cat((l_valid, _ones(x_v, 1)), 1)
        x = self.norm(self._run(self.blocks_ls, torch.cat((x_l, seed), 1), ls_valid))
        return patches, x[:, -1:], x


@FUSION_REGISTRY.register()
class IndependentFusion(MultimodalFusion):
    """Variant (b): the seed encoder reads the projected language, independently of vision.
    ``norm_out``: (B, T + 1, D)."""

    def build_encoders(self) -> None:
        self.blocks_vl = self._make_blocks()
        self.blocks_ls = self._make_blocks()

    def encode(self, x_v, x_l, l_valid):
        N = x_v.shape[1]
        vl_valid = None if l_valid is None else torch.cat((_ones(x_v, N), l_valid), 1)
        patches = self.norm(self._run(self.blocks_vl, torch.cat((x_v, x_l), 1), vl_valid))[:, :N]
        seed = self.seed_emb.expand(x_v.shape[0], -1, -1)
        ls_valid = None if l_valid is None else torch.cat((l_valid, _ones(x_v, 1)), 1)
        x = self.norm(self._run(self.blocks_ls, torch.cat((x_l, seed), 1), ls_valid))
        return patches, x[:, -1:], x


@FUSION_REGISTRY.register()
class VanillaFusion(MultimodalFusion):
    """Variant (a): one encoder over ``[vision; language; seed]``. ``norm_out``: (B, N + T + 1, D)."""

    def build_encoders(self) -> None:
        self.blocks = self._make_blocks()

    def encode(self, x_v, x_l, l_valid):
        N = x_v.shape[1]
        seed = self.seed_emb.expand(x_v.shape[0], -1, -1)
        valid = None
        if l_valid is not None:
            valid = torch.cat((_ones(x_v, N), l_valid, _ones(x_v, 1)), 1)
        x = self.norm(self._run(self.blocks, torch.cat((x_v, x_l, seed), 1), valid))
        return x[:, :N], x[:, -1:], x


def fusion_dim(cfg, d_vision: int) -> int:
    """``MODEL.RESTR.FUSION.DIM``: null (the default) is the ViT width ``d_vision`` (official)."""
    dim = cfg.MODEL.RESTR.FUSION.DIM
    if dim is None:
        return d_vision
    if int(dim) <= 0:
        raise ValueError(f"MODEL.RESTR.FUSION.DIM={dim}: give a positive width, or null (the default) "
                         f"for the ViT width ({d_vision})")
    return int(dim)


def decoder_num_upsample(cfg) -> int:
    """``MODEL.RESTR.DECODER.NUM_UPSAMPLE``, null (the default) meaning log2(``MODEL.VIT.PATCH_SIZE``):
    the number of 2x blocks that bring the patch grid back to the input resolution. Any other
    count would give pixel logits at the wrong resolution, so it is an error."""
    patch = int(cfg.MODEL.VIT.PATCH_SIZE)
    exact = patch.bit_length() - 1
    if 2 ** exact != patch:
        if not cfg.MODEL.RESTR.DECODER.RESIZE_TO_INPUT:
            raise ValueError(
                f"ReSTR's coarse-to-fine decoder upsamples by 2 per block, so MODEL.VIT.PATCH_SIZE "
                f"must be a power of two; got {patch}. For a patch such as DINOv2's 14, set "
                "MODEL.RESTR.DECODER.RESIZE_TO_INPUT True (upsample past the input size, then resize)"
            )
        # DINOv2 patch 14 (issue 18): 2^ceil(log2 P) x, then ReSTR.predict resizes to the input
        exact += 1
        n = cfg.MODEL.RESTR.DECODER.NUM_UPSAMPLE
        if n is not None and int(n) != exact:
            raise ValueError(f"MODEL.RESTR.DECODER.NUM_UPSAMPLE={n}: with PATCH_SIZE {patch} and RESIZE_TO_INPUT "
                             f"it must be null or {exact} (the first 2^n above the patch size)")
        logger.info(f"ReSTR decoder: {exact} upsampling blocks ({2 ** exact}x) for patch {patch}, pixel logits "
                    "resized to the input size (MODEL.RESTR.DECODER.RESIZE_TO_INPUT)")
        return exact
    n = cfg.MODEL.RESTR.DECODER.NUM_UPSAMPLE
    if n is None:
        return exact
    if int(n) != exact:
        raise ValueError(
            f"MODEL.RESTR.DECODER.NUM_UPSAMPLE={n} upsamples the patch grid {2 ** int(n)}x, but "
            f"MODEL.VIT.PATCH_SIZE={patch} needs {patch}x: set NUM_UPSAMPLE to {exact}, or leave it "
            f"null (the default: log2 of the patch size)"
        )
    return int(n)


def build_fusion_module(cfg, d_vision: int, d_language: int) -> MultimodalFusion:
    f = cfg.MODEL.RESTR.FUSION
    logger.info(
        f"ReSTR fusion: {f.NAME} (MODEL.RESTR.FUSION.NAME), share_weights={f.SHARE_WEIGHTS}, "
        f"decoder={cfg.MODEL.RESTR.DECODER.ENABLED}, mask_pad_tokens={cfg.MODEL.RESTR.MASK_PAD_TOKENS}, "
        f"input_norm={f.INPUT_NORM!r} (MODEL.RESTR.FUSION.INPUT_NORM{'' if f.INPUT_NORM == 'none' else '; official: none'})"
    )
    return FUSION_REGISTRY.get(f.NAME)(cfg, d_vision, d_language)
