"""COCO panoptic PNG colours <-> segment ids: ``id = R + 256 G + 256^2 B``."""
import numpy as np

__all__ = ["id2rgb", "rgb2id"]


def id2rgb(segment_ids) -> np.ndarray:
    """(H, W) non-negative int segment ids (< 256^3) -> (H, W, 3) uint8 colours."""
    ids = np.asarray(segment_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 256 ** 3):
        raise ValueError(f"panoptic segment ids must lie in [0, 256^3), got [{ids.min()}, {ids.max()}]")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], -1).astype(np.uint8)


def rgb2id(color) -> np.ndarray:
    """(H, W, 3) RGB panoptic colours -> (H, W) int64 segment ids."""
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] != 3:
        raise ValueError(f"A panoptic PNG must be (H, W, 3) RGB, got shape {color.shape}")
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]
