"""``CheckedDatasetMapper``: detectron2's ``DatasetMapper`` reading its files with
:func:`read_image_checked`, so that the default mapper (training without
``INPUT.DATASET_MAPPER_NAME``, and every non-referring evaluation) gives the same pixels as
our training mappers, the demo and the predictors, and names the file of a bad image.

detectron2's ``read_image`` saturates 16-bit grayscale at 255 (a white image) where our
reader scales it to 8 bits, and raises PIL's bare ``UnidentifiedImageError`` (no file name)
for an empty or corrupt file.
"""
import copy

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import DatasetMapper, detection_utils as utils
from detectron2.data import transforms as T

from .config import image_reader_kwargs
from .image_io import read_image_checked

__all__ = ["CheckedDatasetMapper"]


class CheckedDatasetMapper(DatasetMapper):
    """``DatasetMapper`` (same arguments, same output) with the checked image reader.

    Extra argument ``reader_kwargs``: ``max_pixels`` / ``apply_exif`` of
    :func:`read_image_checked` (from ``INPUT.MAX_IMAGE_PIXELS`` /
    ``INPUT.APPLY_EXIF_ORIENTATION``).
    """

    @configurable
    def __init__(self, is_train: bool, *, reader_kwargs=None, **kwargs):
        super().__init__(is_train, **kwargs)
        self.reader_kwargs = dict(reader_kwargs or {})

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["reader_kwargs"] = image_reader_kwargs(cfg)
        return ret

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_checked(dataset_dict["file_name"], self.image_format, **self.reader_kwargs)
        utils.check_image_size(dataset_dict, image)
        sem_seg_gt = None
        if "sem_seg_file_name" in dataset_dict:
            # label values as stored, as our semantic mappers read them (palette indices, 16-bit
            # values); a colour label file is converted to "L" as detectron2 does
            sem_file = dataset_dict.pop("sem_seg_file_name")
            sem_seg_gt = read_image_checked(sem_file, None, **self.reader_kwargs)
            if sem_seg_gt.ndim == 3:
                sem_seg_gt = read_image_checked(sem_file, "L", **self.reader_kwargs).squeeze(2)
        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        transforms = self.augmentations(aug_input)
        image, sem_seg_gt = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg_gt is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg_gt.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk)
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            dataset_dict.pop("sem_seg_file_name", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict
