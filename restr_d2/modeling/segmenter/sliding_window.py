"""Official Segmenter sliding-window inference (``segm.model.utils.inference``)."""
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["resize_short_side", "window_anchors", "sliding_window_inference"]


def resize_short_side(im: torch.Tensor, min_size: int) -> torch.Tensor:
    """Upsample (B, C, H, W) so that the short side equals ``min_size``, only when it is smaller.

    As the official ``resize()``: the long side is ``int(ratio * min_size)`` (truncated), and
    the interpolation is bilinear with align_corners=False. Larger images are returned as is.
    """
    h, w = im.shape[-2:]
    if min(h, w) >= min_size:
        return im
    if h < w:
        size = (min_size, int(w / h * min_size))
    else:
        size = (int(h / w * min_size), min_size)
    return F.interpolate(im, size=size, mode="bilinear", align_corners=False)


def resize_logits(logits: torch.Tensor, out_size: Tuple[int, int]) -> torch.Tensor:
    """(C, H, W) -> (C, H_out, W_out) bilinear (``align_corners=False``); no copy when the size
    already matches (the resize would be the identity)."""
    if tuple(logits.shape[-2:]) == tuple(out_size):
        return logits
    return F.interpolate(logits[None], size=tuple(out_size), mode="bilinear", align_corners=False)[0]


def window_anchors(length: int, window: int, stride: int) -> List[int]:
    """Window starts along one axis: every ``stride`` below ``length - window``, then the last
    window flush with the end (the official rule)."""
    return [a for a in range(0, length, stride) if a < length - window] + [length - window]


def sliding_window_inference(
    segment: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    num_classes: int,
    out_size: Tuple[int, int],
    window_size: int,
    window_stride: int,
    batch_size: int,
    flips: Sequence[bool] = (False,),
) -> torch.Tensor:
    """Average per-window logits, resize, softmax; average the probabilities over ``flips``.

    Args:
        segment: (n, 3, ws, ws) normalized windows -> (n, C, ws, ws) logits.
        image: (3, H, W) normalized image.
        out_size: (H_out, W_out) of the result (the original image size).
        flips: one pass per entry; True runs the horizontally flipped image and flips the
            result back.

    Returns:
        (C, H_out, W_out) class probabilities.
    """
    if window_stride <= 0 or window_size <= 0 or batch_size <= 0:
        raise ValueError("window size, stride and batch size must be positive")
    probs = None
    for flip in flips:
        im = image.flip(-1) if flip else image
        im = resize_short_side(im[None], window_size)[0]
        H, W = im.shape[-2:]
        ws = window_size
        anchors = [(ha, wa) for ha in window_anchors(H, ws, window_stride)
                   for wa in window_anchors(W, ws, window_stride)]
        crops = torch.stack([im[:, ha:ha + ws, wa:wa + ws] for ha, wa in anchors])
        logits = torch.cat([segment(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)])
        if logits.shape[1] != num_classes:
            raise ValueError(f"segment() gave {logits.shape[1]} classes, expected {num_classes}")
        if len(anchors) == 1 and tuple(logits.shape[-2:]) == (H, W):
            # one window covers the image: the average over windows is that window
            acc = logits[0]
        else:
            acc = image.new_zeros((num_classes, H, W))
            count = image.new_zeros((1, H, W))
            for window, (ha, wa) in zip(logits, anchors):
                acc[:, ha:ha + ws, wa:wa + ws] += window
                count[:, ha:ha + ws, wa:wa + ws] += 1
            acc = acc / count
        acc = resize_logits(acc, out_size)
        if flip:
            acc = acc.flip(-1)
        probs = acc.softmax(0) if probs is None else probs + acc.softmax(0)
    if len(flips) == 1:
        return probs
    return probs / len(flips)
