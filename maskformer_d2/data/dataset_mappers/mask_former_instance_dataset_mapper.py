import copy
import logging

import numpy as np
import pycocotools.mask as mask_util
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import polygons_to_bitmask

from segmentation_core.engine.mapper_registry import register_mapper

from .utils import mask_former_train_augmentations, masks_to_instances, pad_to_size, read_image_checked

__all__ = ["MaskFormerInstanceDatasetMapper", "segmentation_to_mask"]


def segmentation_to_mask(segm, height, width):
    """Polygons / COCO RLE / (H, W) array -> (H, W) C-contiguous uint8 mask.

    ``transform_instance_annotations`` turns RLE into an array and a flip makes that array a
    negative-stride view, which ``torch.from_numpy`` rejects: the result is always a copy in
    C order.
    """
    if isinstance(segm, list):
        return np.ascontiguousarray(polygons_to_bitmask(segm, height, width), dtype=np.uint8)
    if isinstance(segm, dict):
        return np.ascontiguousarray(mask_util.decode(segm), dtype=np.uint8)
    if isinstance(segm, np.ndarray):
        if segm.ndim != 2:
            raise ValueError(f"A mask 'segmentation' must be 2-D (H, W), got shape {segm.shape}")
        return np.ascontiguousarray(segm, dtype=np.uint8)
    raise ValueError(
        f"Cannot convert a 'segmentation' of type {type(segm).__name__} to a mask; use polygons "
        "(list of lists), COCO RLE (dict) or an (H, W) numpy array"
    )


@register_mapper("mask_former_instance")
class MaskFormerInstanceDatasetMapper:
    """Training mapper for instance segmentation with mask classification.

    Resize-shortest-edge, plain random crop, SSD colour jitter, flip; image padded with 128 and
    masks with 0 to ``INPUT.SIZE_DIVISIBILITY``. Output: ``image`` uint8 (3, H, W) and
    ``instances`` with ``gt_classes`` (N,) and ``gt_masks`` bool (N, H, W) of the non-crowd
    annotations.
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format, size_divisibility):
        if not is_train:
            raise ValueError(f"{type(self).__name__} is a training mapper")
        self.is_train = is_train
        self.tfm_gens = augmentations
        self.img_format = image_format
        self.size_divisibility = size_divisibility
        logging.getLogger(__name__).info(f"[{type(self).__name__}] augmentations: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        crop = T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE) if cfg.INPUT.CROP.ENABLED else None
        augs = mask_former_train_augmentations(cfg, crop)
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
        }

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_checked(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        if "annotations" not in dataset_dict:
            raise ValueError(f"The record of {dataset_dict['file_name']!r} has no 'annotations'")

        aug_input = T.AugInput(image)
        aug_input, transforms = T.apply_transform_gens(self.tfm_gens, aug_input)
        image = aug_input.image
        h, w = image.shape[:2]
        annos = []
        for obj in dataset_dict.pop("annotations"):
            if obj.get("iscrowd", 0) != 0:
                continue
            obj.pop("keypoints", None)
            if "segmentation" not in obj:
                raise ValueError(f"An annotation of {dataset_dict['file_name']!r} has no 'segmentation'")
            annos.append(utils.transform_instance_annotations(obj, transforms, (h, w)))
        masks = [
            torch.from_numpy(np.ascontiguousarray(segmentation_to_mask(a["segmentation"], h, w)))
            for a in annos
        ]

        image = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if self.size_divisibility > 0:
            size = (self.size_divisibility, self.size_divisibility)
            image = pad_to_size(image, size, 128)
            masks = [pad_to_size(m, size, 0) for m in masks]

        dataset_dict["image"] = image
        dataset_dict["instances"] = masks_to_instances(
            tuple(image.shape[-2:]), [int(a["category_id"]) for a in annos], [m.numpy() for m in masks]
        )
        return dataset_dict
