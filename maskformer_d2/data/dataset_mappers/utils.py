"""Small helpers shared by the MaskFormer-family dataset mappers."""
import numpy as np
import torch
from torch.nn import functional as F

from detectron2.structures import Instances

from d2_common.validation import check_panoptic_ids, read_image_checked

__all__ = [
    "read_image_checked", "read_panoptic_png", "rgb2id", "pad_to_size", "masks_to_instances",
    "segments_to_instances",
]


def read_panoptic_png(file_name, segments_info):
    """The (H, W, 3) RGB panoptic PNG, after checking that its ids are exactly the ids of
    ``segments_info`` (a mismatch raises ``BadRecordError`` naming the file and the ids)."""
    pan = read_image_checked(file_name, "RGB")
    check_panoptic_ids(rgb2id(pan), segments_info, file_name)
    return pan


def rgb2id(color):
    """COCO panoptic PNG colour (H, W, 3) -> segment id (H, W) int64: R + 256 G + 256^2 B."""
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] != 3:
        raise ValueError(f"A panoptic PNG must be (H, W, 3) RGB, got shape {color.shape}")
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def pad_to_size(tensor, size, value):
    """Pad the last two dims of ``tensor`` at the bottom/right to ``size`` (h, w).

    The official mappers pad every training crop to ``INPUT.SIZE_DIVISIBILITY`` (the crop
    size), so that a batch needs no further padding.
    """
    h, w = tensor.shape[-2:]
    if h > size[0] or w > size[1]:
        raise ValueError(
            f"Image of size {(h, w)} is larger than INPUT.SIZE_DIVISIBILITY={size}; the "
            f"MaskFormer mappers pad each crop to that size, so set it to at least "
            f"INPUT.CROP.SIZE (or enable INPUT.CROP)"
        )
    return F.pad(tensor, [0, size[1] - w, 0, size[0] - h], value=value).contiguous()


def masks_to_instances(image_shape, classes, masks):
    """``Instances`` with ``gt_classes`` (N,) int64 and ``gt_masks`` (N, H, W) bool."""
    instances = Instances(image_shape)
    instances.gt_classes = torch.as_tensor(np.asarray(classes, dtype=np.int64).reshape(-1))
    if len(masks) == 0:
        # an image whose every pixel is ignored still yields a (0, H, W) mask tensor
        instances.gt_masks = torch.zeros((0, image_shape[0], image_shape[1]), dtype=torch.bool)
    else:
        instances.gt_masks = torch.stack(
            [torch.as_tensor(np.ascontiguousarray(m), dtype=torch.bool) for m in masks]
        )
    return instances


def segments_to_instances(image_shape, pan_ids, segments_info):
    """One instance per non-crowd segment of an (H, W) panoptic id map: ``gt_classes`` its
    contiguous ``category_id``, ``gt_masks`` ``pan_ids == id`` (empty if cropped away)."""
    kept = [s for s in segments_info if not s["iscrowd"]]
    return masks_to_instances(
        image_shape, [s["category_id"] for s in kept], [pan_ids == s["id"] for s in kept]
    )
