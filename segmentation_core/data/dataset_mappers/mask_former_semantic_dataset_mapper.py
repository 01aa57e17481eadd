import copy
import logging

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ...engine.mapper_registry import register_mapper

from ...validation import read_image_checked
from .utils import mask_former_train_augmentations, masks_to_instances, pad_to_size

__all__ = ["MaskFormerSemanticDatasetMapper"]


@register_mapper("mask_former_semantic")
class MaskFormerSemanticDatasetMapper:
    """Training mapper for semantic segmentation with mask classification.

    Reads ``file_name`` and ``sem_seg_file_name``, applies resize-shortest-edge, a random crop
    that keeps any single class below ``INPUT.CROP.SINGLE_CATEGORY_MAX_AREA``, SSD colour
    jitter and a horizontal flip, then pads image (value 128) and label (``ignore_label``) to
    ``INPUT.SIZE_DIVISIBILITY``. Output: ``image`` uint8 (3, H, W), ``sem_seg`` int64 (H, W),
    ``instances`` with one binary mask per class present (``gt_classes`` (N,),
    ``gt_masks`` bool (N, H, W)).
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format, ignore_label, size_divisibility):
        if not is_train:
            raise ValueError(
                f"{type(self).__name__} is a training mapper; inference uses detectron2's "
                "DatasetMapper (build_detection_test_loader's default)"
            )
        self.is_train = is_train
        self.tfm_gens = augmentations
        self.img_format = image_format
        self.ignore_label = ignore_label
        self.size_divisibility = size_divisibility
        logging.getLogger(__name__).info(
            f"[{type(self).__name__}] augmentations: {augmentations}, pad to {size_divisibility}"
        )

    @classmethod
    def from_config(cls, cfg, is_train=True):
        crop = T.RandomCrop_CategoryAreaConstraint(
            cfg.INPUT.CROP.TYPE,
            cfg.INPUT.CROP.SIZE,
            cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
            cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        ) if cfg.INPUT.CROP.ENABLED else None
        augs = mask_former_train_augmentations(cfg, crop)
        # the training set decides the ignore label (Mapillary uses 65, ADE20K-full 65535)
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": meta.ignore_label,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
        }

    def _pad(self, image, sem_seg):
        if self.size_divisibility > 0:
            size = (self.size_divisibility, self.size_divisibility)
            image = pad_to_size(image, size, 128)
            if sem_seg is not None:
                sem_seg = pad_to_size(sem_seg, size, self.ignore_label)
        return image, sem_seg

    def _read_sem_seg(self, dataset_dict):
        if "sem_seg_file_name" not in dataset_dict:
            raise ValueError(
                f"{type(self).__name__} needs 'sem_seg_file_name' in the record of "
                f"{dataset_dict['file_name']!r}"
            )
        # float64 so that 16-bit labels (ADE20K-full) survive the geometric transforms
        return read_image_checked(dataset_dict.pop("sem_seg_file_name")).astype("double")

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_checked(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        sem_seg_gt = self._read_sem_seg(dataset_dict)
        if "annotations" in dataset_dict:
            raise ValueError("A semantic segmentation record must not have 'annotations'.")

        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        aug_input, _ = T.apply_transform_gens(self.tfm_gens, aug_input)
        image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        sem_seg_gt = torch.as_tensor(aug_input.sem_seg.astype("long"))
        image, sem_seg_gt = self._pad(image, sem_seg_gt)

        dataset_dict["image"] = image
        dataset_dict["sem_seg"] = sem_seg_gt.long()
        sem = sem_seg_gt.numpy()
        classes = np.unique(sem)
        classes = classes[classes != self.ignore_label]
        dataset_dict["instances"] = masks_to_instances(
            tuple(image.shape[-2:]), classes, [sem == c for c in classes]
        )
        return dataset_dict
