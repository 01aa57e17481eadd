"""Test-time resize-and-pad of images and its inverse on predictions.

Two layouts (``MODEL.RESTR.TEST.PAD_LAYOUT``):

* ``"bottom_right"`` (CONTRACTS.md, the referring mapper): resize the long side to S, pad at the
  bottom/right. Undo: crop the valid ``resized_size`` region, resize it to the original size.
* ``"center"`` (official ``eval/evaluate.py``, ``utils/torchutils.py``): resize by
  ``min(S/H, S/W)``, paste centred (offset ``(S - h) // 2``). Undo (``resize_and_crop``): resize
  the whole prediction by ``max(H/h', W/w')`` and crop the centre, exactly as the official code
  (which is not the exact inverse: it differs from crop-then-resize by rounding).

All resizing is ``F.interpolate`` bilinear (or nearest) with ``align_corners=False`` and no
antialias: the behaviour of ``torchvision.transforms.functional.resize`` on tensors in
torchvision 0.14.1, the version the official code pins (0.17+ antialiases when downscaling).
"""
import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from detectron2.data import transforms as T

__all__ = [
    "PAD_LAYOUTS",
    "resized_shape",
    "resize_and_pad",
    "resize_and_pad_uint8",
    "official_resize_and_crop",
    "crop_and_resize",
    "undo_resize_and_pad",
]

PAD_LAYOUTS = ("bottom_right", "center")


def _check_layout(layout: str) -> None:
    if layout not in PAD_LAYOUTS:
        raise ValueError(f"pad layout must be one of {PAD_LAYOUTS}, got {layout!r}")


def _resize(x: torch.Tensor, size: Tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=False)


def resized_shape(height: int, width: int, size: int) -> Tuple[int, int]:
    """(h, w) of an image resized by ``min(S/H, S/W)``, rounded as the official code."""
    scale = min(size / height, size / width)
    # at least one pixel: an extreme aspect ratio (e.g. 1 x 1000) must not round to 0
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_and_pad(
    images: torch.Tensor, size: int, layout: str = "bottom_right", pad_value: float = 0.0
) -> Tuple[torch.Tensor, Tuple[int, int, int, int]]:
    """(B, C, H, W) float -> ((B, C, S, S), (top, left, h, w) of the image inside the pad)."""
    _check_layout(layout)
    B, C, H, W = images.shape
    h, w = resized_shape(H, W, size)
    if layout == "center":
        # official: int(math.floor(S - h) / 2)
        top, left = int(math.floor(size - h) / 2), int(math.floor(size - w) / 2)
    else:
        top, left = 0, 0
    out = images.new_full((B, C, size, size), float(pad_value))
    out[..., top : top + h, left : left + w] = _resize(images, (h, w), "bilinear")
    return out, (top, left, h, w)


def resize_and_pad_uint8(
    image: np.ndarray, size: int, mask: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, Tuple[int, int], Optional[np.ndarray]]:
    """The bottom/right layout on uint8 images, as the referring mapper and
    ``ReferringPredictor`` read them: (H, W, C) -> ((S, S, C) with the long side resized to S by
    PIL bilinear and zeros bottom/right, (h, w) of the image inside, the (H, W) ``mask``
    resized by nearest neighbour into an (S, S) uint8 array, or None)."""
    H, W = image.shape[:2]
    h, w = resized_shape(H, W, size)
    resize = T.ResizeTransform(H, W, h, w, Image.BILINEAR)
    padded = np.zeros((size, size, image.shape[2]), dtype=np.uint8)
    padded[:h, :w] = resize.apply_image(np.ascontiguousarray(image))
    padded_mask = None
    if mask is not None:
        padded_mask = np.zeros((size, size), dtype=np.uint8)
        padded_mask[:h, :w] = resize.apply_segmentation(np.ascontiguousarray(mask, dtype=np.uint8))
    return padded, (h, w), padded_mask


def official_resize_and_crop(
    x: torch.Tensor, height: int, width: int, mode: str = "bilinear"
) -> torch.Tensor:
    """Official ``resize_and_crop`` / ``resize_and_crop_nearest``: (B, C, h, w) -> (B, C, H, W)."""
    h, w = x.shape[-2:]
    scale = max(height / h, width / w)
    rh, rw = int(round(h * scale)), int(round(w * scale))
    top, left = int(math.floor(rh - height) / 2), int(math.floor(rw - width) / 2)
    x = _resize(x, (rh, rw), mode)
    return x[..., top : top + height, left : left + width]


def crop_and_resize(
    x: torch.Tensor, valid_hw: Tuple[int, int], height: int, width: int, mode: str = "bilinear"
) -> torch.Tensor:
    """Bottom/right layout: keep the top-left ``valid_hw`` region of (B, C, S, S), resize it to
    (B, C, H, W)."""
    vh, vw = valid_hw
    return _resize(x[..., :vh, :vw], (height, width), mode)


def undo_resize_and_pad(
    logits: torch.Tensor,
    input_hw: Tuple[int, int],
    valid_hw: Tuple[int, int],
    height: int,
    width: int,
    layout: str = "bottom_right",
) -> torch.Tensor:
    """Predictions (B, C, h, w) on a padded (input_hw) input -> (B, C, height, width).

    ``valid_hw`` is the image region inside the padded input (bottom/right layout only). In the
    bottom/right layout, predictions coarser than the input (no-decoder models) are first
    upsampled to ``input_hw`` (bilinear, align_corners=True, as the training loss); the centre
    layout follows the official code, which resizes them directly.
    """
    _check_layout(layout)
    if layout == "center":
        return official_resize_and_crop(logits, height, width)
    if tuple(logits.shape[-2:]) != tuple(input_hw):
        logits = F.interpolate(logits, size=tuple(input_hw), mode="bilinear", align_corners=True)
    return crop_and_resize(logits, valid_hw, height, width)
