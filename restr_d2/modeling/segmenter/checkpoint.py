"""Strict loading of Segmenter weights.

The model's state dict equals the official one (``encoder.*``, ``decoder.*``), so an official
checkpoint needs no renaming. ``tools/convert/convert_segmenter_checkpoint.py`` is the one converter
(official Segmenter or timm/JAX ViT -> a detectron2 ``{"model": ...}`` file);
``SegmenterCheckpointer`` refuses, with an explanation, anything that would load partially.
"""
import logging
import math
from typing import Dict, Iterable, Mapping, Optional, Tuple

import torch
from segmentation_core.safe_checkpoint import SafeDetectionCheckpointer

from segmentation_core.checkpoint_policy import weights_policy

from ..backbone.pos_embed import resize_pos_embed

__all__ = ["check_state_dict", "convert_official_segmenter", "SegmenterCheckpointer"]

logger = logging.getLogger(__name__)

# set by the converter on files that hold only ``encoder.*`` (ImageNet-pretrained backbone)
ENCODER_ONLY_FLAG = "segmenter_encoder_only"


_CLASS_DIM = {  # decoder keys whose size is the class count, and at which dim
    "decoder.cls_emb": 1,
    "decoder.mask_norm.weight": 0,
    "decoder.mask_norm.bias": 0,
    "decoder.head.weight": 0,
    "decoder.head.bias": 0,
}


def _hint(key: str, ckpt_shape) -> str:
    if key in _CLASS_DIM:
        n = ckpt_shape[_CLASS_DIM[key]]
        return (
            f" -> the checkpoint was trained for {n} classes: set "
            f"MODEL.SEM_SEG_HEAD.NUM_CLASSES: {n}, or convert with --encoder-only to fine-tune "
            "on another class set"
        )
    if key.endswith("pos_embed"):
        return (
            " -> the checkpoint's training grid differs from MODEL.VIT.IMAGE_SIZE: set the "
            "checkpoint's size, or convert with --image-size H W to resize the position embedding"
        )
    return ""


def check_state_dict(
    model_state: Mapping[str, torch.Tensor],
    ckpt_state: Mapping[str, torch.Tensor],
    allow_missing_prefixes: Iterable[str] = (),
) -> None:
    """Raise ``ValueError`` listing every missing, unexpected or wrongly shaped key.

    Args:
        model_state: ``model.state_dict()`` (or a key -> tensor/shape map).
        ckpt_state: the state dict to be loaded.
        allow_missing_prefixes: model keys with these prefixes may be absent (e.g.
            ``("decoder.",)`` for an ImageNet-pretrained encoder).
    """
    allow = tuple(allow_missing_prefixes)
    shape = lambda v: tuple(v.shape) if hasattr(v, "shape") else tuple(v)  # noqa: E731
    missing = [k for k in model_state if k not in ckpt_state and not k.startswith(allow)]
    unexpected = [k for k in ckpt_state if k not in model_state]
    wrong = [
        (k, shape(ckpt_state[k]), shape(model_state[k]))
        for k in ckpt_state
        if k in model_state and shape(ckpt_state[k]) != shape(model_state[k])
    ]
    if not (missing or unexpected or wrong):
        return
    lines = []
    if wrong:
        lines.append("shape mismatches (checkpoint vs model):")
        lines += [f"  {k}: {list(a)} vs {list(b)}{_hint(k, a)}" for k, a, b in wrong]
    if missing:
        lines.append(f"missing in the checkpoint ({len(missing)}): {missing[:10]}"
                     f"{' ...' if len(missing) > 10 else ''}")
    if unexpected:
        lines.append(f"not in the model ({len(unexpected)}): {unexpected[:10]}"
                     f"{' ...' if len(unexpected) > 10 else ''}")
    raise ValueError("checkpoint does not match the Segmenter model:\n" + "\n".join(lines))


def convert_official_segmenter(
    checkpoint: Mapping,
    *,
    image_size: Optional[Tuple[int, int]] = None,
    old_image_size: Optional[Tuple[int, int]] = None,
    encoder_only: bool = False,
) -> Dict[str, torch.Tensor]:
    """Official Segmenter checkpoint (``{"model": state_dict, "optimizer", ...}`` or a bare
    state dict with ``encoder.*``/``decoder.*`` keys) -> our state dict (same keys).

    Args:
        image_size: if given, resize ``encoder.pos_embed`` (bilinear, align_corners=False)
            to this training size's grid.
        old_image_size: the checkpoint's training size; default: a square grid, as the
            official ``checkpoint_filter_fn`` assumes.
        encoder_only: keep only ``encoder.*`` (to fine-tune on another class set).
    """
    sd = checkpoint["model"] if "model" in checkpoint else checkpoint
    sd = dict(sd)
    bad = [k for k in sd if not k.startswith(("encoder.", "decoder."))]
    if bad:
        raise ValueError(f"not an official Segmenter state dict: keys {bad[:8]} are neither "
                         "'encoder.*' nor 'decoder.*'")
    if encoder_only:
        sd = {k: v for k, v in sd.items() if k.startswith("encoder.")}
    if image_size is not None:
        P = sd["encoder.patch_embed.proj.weight"].shape[-1]
        extra = 2 if "encoder.dist_token" in sd else 1
        pe = sd["encoder.pos_embed"]
        grid = (image_size[0] // P, image_size[1] // P)
        if pe.shape[1] != extra + grid[0] * grid[1]:
            old = None if old_image_size is None else (old_image_size[0] // P, old_image_size[1] // P)
            if old is None and math.isqrt(pe.shape[1] - extra) ** 2 != pe.shape[1] - extra:
                raise ValueError("the checkpoint's grid is not square: pass old_image_size")
            sd["encoder.pos_embed"] = resize_pos_embed(pe, old, grid, extra)
    return sd


class SegmenterCheckpointer(SafeDetectionCheckpointer):
    """``DetectionCheckpointer`` that refuses partial loads.

    detectron2 skips shape-mismatched keys with a warning (e.g. a 150-class checkpoint into a
    5-class model); this raises instead. A file written by the converter with
    ``--encoder-only`` may lack ``decoder.*`` (and nothing else).
    """

    def _load_model(self, checkpoint):
        sd = checkpoint["model"]
        model = self.model.module if hasattr(self.model, "module") else self.model
        stripped = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
        allow = ("decoder.",) if checkpoint.get(ENCODER_ONLY_FLAG, False) else ()
        check_state_dict(model.state_dict(), stripped, allow)
        if allow:
            logger.info("SegmenterCheckpointer: encoder-only checkpoint, decoder stays at init")
        with weights_policy(model, "off"):  # check_state_dict above is this loader's policy
            return super()._load_model(checkpoint)
