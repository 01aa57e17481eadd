"""Helpers of the dataset mappers of every family: the MaskFormer training augmentations, pad a
crop, binary masks -> ``Instances``."""
from typing import List, Optional

import numpy as np
import torch
from torch.nn import functional as F

from detectron2.data import transforms as T
from detectron2.projects.point_rend import ColorAugSSDTransform
from detectron2.structures import Instances

__all__ = ["mask_former_train_augmentations", "pad_to_size", "masks_to_instances"]


def mask_former_train_augmentations(cfg, crop: Optional[T.Augmentation]) -> List[T.Augmentation]:
    """The official MaskFormer training augmentations, in their order: resize-shortest-edge
    (``INPUT.MIN_SIZE_TRAIN`` / ``MAX_SIZE_TRAIN`` / ``MIN_SIZE_TRAIN_SAMPLING``), ``crop`` (the
    mapper's own: semantic keeps any one class below an area, instance crops plainly; None when
    ``INPUT.CROP.ENABLED`` is off), SSD colour jitter (``INPUT.COLOR_AUG_SSD``), horizontal flip."""
    augs = [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                 cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
    if crop is not None:
        augs.append(crop)
    if cfg.INPUT.COLOR_AUG_SSD:
        augs.append(ColorAugSSDTransform(img_format=cfg.INPUT.FORMAT))
    augs.append(T.RandomFlip())
    return augs


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
