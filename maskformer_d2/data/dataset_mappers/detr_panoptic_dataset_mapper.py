import copy
import logging

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from segmentation_core.engine.mapper_registry import register_mapper

from .utils import read_image_checked, read_panoptic_png, rgb2id, segments_to_instances

__all__ = ["DETRPanopticDatasetMapper"]


@register_mapper("detr_panoptic")
class DETRPanopticDatasetMapper:
    """MaskFormer's COCO panoptic mapper with DETR's augmentation.

    Flip, then resize-shortest-edge; with ``INPUT.CROP.ENABLED`` half of the images first go
    through resize to {400, 500, 600} + ``RandomCrop`` (DETR's crop branch). No padding (the
    model pads the batch). Output: ``image`` uint8 (3, H, W); in training ``instances``
    (``gt_classes`` (N,), ``gt_masks`` bool (N, H, W)) of the non-crowd segments.
    """

    @configurable
    def __init__(self, is_train=True, *, crop_gen, tfm_gens, image_format):
        self.crop_gen = crop_gen
        self.tfm_gens = tfm_gens
        self.img_format = image_format
        self.is_train = is_train
        logging.getLogger(__name__).info(
            f"[{type(self).__name__}] augmentations: {tfm_gens}, crop: {crop_gen}"
        )

    @classmethod
    def from_config(cls, cfg, is_train=True):
        if is_train:
            min_size, max_size = cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN
            sample_style = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        else:
            min_size, max_size, sample_style = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice"
        tfm_gens = [T.RandomFlip()] if is_train else []
        tfm_gens.append(T.ResizeShortestEdge(min_size, max_size, sample_style))
        crop_gen = None
        if cfg.INPUT.CROP.ENABLED and is_train:
            crop_gen = [
                T.ResizeShortestEdge([400, 500, 600], sample_style="choice"),
                T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE),
            ]
        return {"is_train": is_train, "crop_gen": crop_gen, "tfm_gens": tfm_gens, "image_format": cfg.INPUT.FORMAT}

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_checked(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        gens = self.tfm_gens
        if self.crop_gen is not None and np.random.rand() <= 0.5:
            # crop branch: flip, resize+crop, then the final resize
            gens = self.tfm_gens[:-1] + self.crop_gen + self.tfm_gens[-1:]
        image, transforms = T.apply_transform_gens(gens, image)
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "pan_seg_file_name" in dataset_dict:
            pan = read_panoptic_png(dataset_dict.pop("pan_seg_file_name"), dataset_dict["segments_info"])
            pan = rgb2id(transforms.apply_segmentation(pan))
            dataset_dict["instances"] = segments_to_instances(image_shape, pan, dataset_dict["segments_info"])
        return dataset_dict
