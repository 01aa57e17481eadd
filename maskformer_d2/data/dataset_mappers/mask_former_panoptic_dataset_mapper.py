import copy

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from segmentation_core.engine.mapper_registry import register_mapper

from segmentation_core.data.dataset_mappers import MaskFormerSemanticDatasetMapper
from .utils import pad_to_size, read_image_checked, read_panoptic_png, rgb2id, segments_to_instances

__all__ = ["MaskFormerPanopticDatasetMapper"]


@register_mapper("mask_former_panoptic")
class MaskFormerPanopticDatasetMapper(MaskFormerSemanticDatasetMapper):
    """Training mapper for panoptic segmentation (same augmentations as the semantic one).

    Reads ``pan_seg_file_name`` (COCO panoptic PNG) and ``segments_info`` and, when present,
    ``sem_seg_file_name``. The panoptic map is padded with 0 (void). Output: ``image``,
    optional ``sem_seg``, ``instances`` with one mask per non-crowd segment (``gt_classes``
    = its contiguous ``category_id``).
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format, ignore_label, size_divisibility):
        super().__init__(
            is_train,
            augmentations=augmentations,
            image_format=image_format,
            ignore_label=ignore_label,
            size_divisibility=size_divisibility,
        )

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_checked(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        sem_seg_gt = (
            self._read_sem_seg(dataset_dict) if "sem_seg_file_name" in dataset_dict else None
        )
        if "pan_seg_file_name" not in dataset_dict:
            raise ValueError(
                f"{type(self).__name__} needs 'pan_seg_file_name' in the record of "
                f"{dataset_dict['file_name']!r}"
            )
        segments_info = dataset_dict["segments_info"]
        pan_seg_gt = read_panoptic_png(dataset_dict.pop("pan_seg_file_name"), segments_info)
        if "annotations" in dataset_dict:
            raise ValueError("A panoptic segmentation record must not have 'annotations'.")

        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        aug_input, transforms = T.apply_transform_gens(self.tfm_gens, aug_input)
        # colours must not be interpolated: apply_segmentation uses nearest neighbour
        pan_seg_gt = rgb2id(transforms.apply_segmentation(pan_seg_gt))

        image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        if sem_seg_gt is not None:
            sem_seg_gt = torch.as_tensor(aug_input.sem_seg.astype("long"))
        pan_seg_gt = torch.as_tensor(pan_seg_gt)
        image, sem_seg_gt = self._pad(image, sem_seg_gt)
        if self.size_divisibility > 0:
            pan_seg_gt = pad_to_size(pan_seg_gt, tuple(image.shape[-2:]), 0)  # 0 = void

        dataset_dict["image"] = image
        if sem_seg_gt is not None:
            dataset_dict["sem_seg"] = sem_seg_gt.long()
        dataset_dict["instances"] = segments_to_instances(
            tuple(image.shape[-2:]), pan_seg_gt.numpy(), segments_info
        )
        return dataset_dict
