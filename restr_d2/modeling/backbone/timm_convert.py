"""timm / Google-JAX ViT weights -> plain-ViT (official Segmenter encoder) state dict.

Two source layouts are accepted:

* a timm PyTorch state dict (``cls_token``, ``pos_embed``, ``patch_embed.proj.*``,
  ``blocks.N.*``, ``norm.*``, ``head.*``, DeiT: ``dist_token``, ``head_dist.*``), possibly
  wrapped as ``{"model": ...}`` (DeiT releases) or ``{"state_dict": ...}``;
* a Google ``.npz`` (ImageNet-21k AugReg layout, ``embedding/kernel``,
  ``Transformer/encoderblock_N/...``) as loaded by timm's ``_load_weights``, which Segmenter
  uses for its ``vit_*`` backbones.

Every source key is either mapped or reported; anything else is an error.
"""
import math
import re
from typing import Dict, Mapping, Tuple

import numpy as np
import torch

from .pos_embed import resize_pos_embed
from .vit import trunc_normal_

__all__ = ["convert_timm_vit", "jax_vit_to_timm", "load_vit_source"]

_TIMM_BLOCK = re.compile(
    r"blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$"
)
_TIMM_TOP = {
    "cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
    "norm.weight", "norm.bias", "head.weight", "head.bias", "head_dist.weight", "head_dist.bias",
}


def _np(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32).copy())


def jax_vit_to_timm(npz: Mapping[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    """Google JAX ViT ``.npz`` arrays -> timm key layout, with the transposes of timm's
    ``_load_weights`` (HWIO -> OIHW conv, (in, out) -> (out, in) dense, per-head q/k/v kernels
    flattened and concatenated into ``qkv``). Raises on any array it cannot place."""
    w = dict(npz)
    for prefix in ("opt/target/", "params/"):
        if f"{prefix}embedding/kernel" in w:
            w = {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}
            break
    if "embedding/kernel" not in w:
        raise ValueError("not a JAX ViT .npz: no 'embedding/kernel' array")
    used = set()

    def take(key):
        if key not in w:
            raise KeyError(f"JAX ViT .npz lacks {key!r}")
        used.add(key)
        return _np(w[key])

    out = {
        "cls_token": take("cls"),
        "pos_embed": take("Transformer/posembed_input/pos_embedding"),
        "patch_embed.proj.weight": take("embedding/kernel").permute(3, 2, 0, 1),
        "patch_embed.proj.bias": take("embedding/bias"),
    }
    depth = 0
    while f"Transformer/encoderblock_{depth}/LayerNorm_0/scale" in w:
        depth += 1
    for i in range(depth):
        b, mha = f"Transformer/encoderblock_{i}/", f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/"
        p = f"blocks.{i}."
        out[p + "norm1.weight"] = take(b + "LayerNorm_0/scale")
        out[p + "norm1.bias"] = take(b + "LayerNorm_0/bias")
        out[p + "norm2.weight"] = take(b + "LayerNorm_2/scale")
        out[p + "norm2.bias"] = take(b + "LayerNorm_2/bias")
        # q/k/v kernels are (D, heads, head_dim): flatten heads, transpose to (out, in)
        out[p + "attn.qkv.weight"] = torch.cat([take(f"{mha}{n}/kernel").flatten(1).T for n in ("query", "key", "value")])
        out[p + "attn.qkv.bias"] = torch.cat([take(f"{mha}{n}/bias").reshape(-1) for n in ("query", "key", "value")])
        # out kernel is (heads, head_dim, D)
        out[p + "attn.proj.weight"] = take(mha + "out/kernel").flatten(0, 1).T
        out[p + "attn.proj.bias"] = take(mha + "out/bias")
        for r in range(2):
            out[p + f"mlp.fc{r + 1}.weight"] = take(f"{b}MlpBlock_3/Dense_{r}/kernel").T
            out[p + f"mlp.fc{r + 1}.bias"] = take(f"{b}MlpBlock_3/Dense_{r}/bias")
    out["norm.weight"] = take("Transformer/encoder_norm/scale")
    out["norm.bias"] = take("Transformer/encoder_norm/bias")
    if "head/kernel" in w:
        out["head.weight"] = take("head/kernel").T
        out["head.bias"] = take("head/bias")
    left = sorted(set(w) - used)
    if left:
        raise ValueError(
            f"JAX ViT .npz has arrays this converter does not map: {left[:8]}"
            f"{' ...' if len(left) > 8 else ''} (e.g. a 'pre_logits' representation layer, which "
            "the Segmenter ViT does not have); remove them from the file if they are not needed"
        )
    return {k: v.contiguous() for k, v in out.items()}


def load_vit_source(path: str) -> Dict[str, torch.Tensor]:
    """Read a timm ``.pth``/``.bin``/``.safetensors`` or Google ``.npz`` ViT file into the
    timm key layout."""
    if path.endswith(".npz"):
        return jax_vit_to_timm(np.load(path, allow_pickle=False))
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    from segmentation_core.safe_pickle import torch_load_weights_only

    sd = torch_load_weights_only(path)  # an UnsafePickleError names the file and the global
    for wrapper in ("model", "state_dict"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    return sd


def convert_timm_vit(
    state_dict: Mapping[str, torch.Tensor],
    *,
    image_size: Tuple[int, int],
    patch_size: int,
    head: str = "error",
    num_classes: int = 1000,
    pos_embed_interp: str = "bilinear",
    prefix: str = "",
    seed: int = 0,
) -> Dict[str, torch.Tensor]:
    """timm-layout ViT weights -> our ``VisionTransformer`` keys (prefixed with ``prefix``).

    Args:
        state_dict: timm key layout (see module docstring).
        image_size: training size (H, W) of the target model; ``pos_embed`` is resized from the
            source's square grid to this grid, as Segmenter's pretrained loading does
            (bilinear, align_corners=False; ``pos_embed_interp="bicubic"`` for timm >= 0.6).
        patch_size: must equal the source's patch size (no patch-kernel resampling).
        head: what to do with an ImageNet head whose class count is not ``num_classes``
            (e.g. the 21843-way in21k head): "error"; "reinit" it as the official code leaves
            it (trunc-normal(.02) weight, zero bias; the head is unused for segmentation);
            "drop" it (the target model must then have ``num_classes=0``).
        num_classes: head size of the target model (official: 1000).
        prefix: key prefix of the result, e.g. "encoder." (Segmenter) or "encoder_v." (ReSTR).
        seed: seed of the "reinit" draw.
    """
    if head not in ("error", "reinit", "drop"):
        raise ValueError(f"head must be 'error', 'reinit' or 'drop', got {head!r}")
    unknown = sorted(k for k in state_dict if k not in _TIMM_TOP and not _TIMM_BLOCK.match(k))
    if unknown:
        raise ValueError(
            f"keys not in the plain-ViT layout: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}; "
            "only timm VisionTransformer/DeiT checkpoints without extra modules (fc_norm, "
            "reg tokens, pre_logits, ...) can be converted"
        )
    sd = {k: v.float() for k, v in state_dict.items()}
    w = sd["patch_embed.proj.weight"]
    if tuple(w.shape[-2:]) != (patch_size, patch_size):
        raise ValueError(f"source patch size {tuple(w.shape[-2:])} differs from patch_size {patch_size}")
    num_extra = 2 if "dist_token" in sd else 1
    grid = (image_size[0] // patch_size, image_size[1] // patch_size)
    if sd["pos_embed"].shape[1] != num_extra + grid[0] * grid[1]:
        n_old = sd["pos_embed"].shape[1] - num_extra
        side = int(math.sqrt(n_old))
        if side * side != n_old:
            raise ValueError(f"source pos_embed grid of {n_old} tokens is not square")
        sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], (side, side), grid, num_extra,
                                           mode=pos_embed_interp)
    if head == "drop" and num_classes > 0:
        raise ValueError("head='drop' is for a model without head: set num_classes=0")
    for name in ["head"] + (["head_dist"] if num_extra == 2 else []):
        have = sd[f"{name}.weight"].shape[0] if f"{name}.weight" in sd else 0
        if have == num_classes:
            continue
        if head == "error":
            raise ValueError(
                f"source {name} has {have} classes, the model {num_classes}; choose head='reinit' "
                "(official behaviour: the head is left at init) or head='drop' (num_classes=0)"
            )
        sd.pop(f"{name}.weight", None)
        sd.pop(f"{name}.bias", None)
        if head == "reinit":
            g = torch.Generator().manual_seed(seed)
            D = sd["cls_token"].shape[-1]
            wt = torch.empty(num_classes, D)
            trunc_normal_(wt, std=0.02, generator=g)
            sd[f"{name}.weight"], sd[f"{name}.bias"] = wt, torch.zeros(num_classes)
    return {prefix + k: v for k, v in sd.items()}
