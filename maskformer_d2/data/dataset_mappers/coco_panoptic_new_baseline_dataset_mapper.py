import copy

import numpy as np
import torch

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Boxes

from segmentation_core.engine.mapper_registry import register_mapper

from .lsj import LSJDatasetMapperBase
from .utils import read_image_checked, read_panoptic_png, rgb2id, segments_to_instances

__all__ = ["COCOPanopticNewBaselineDatasetMapper"]


@register_mapper("coco_panoptic_lsj")
class COCOPanopticNewBaselineDatasetMapper(LSJDatasetMapperBase):
    """COCO panoptic mapper with large-scale jitter (Mask2Former's "new baseline").

    Output: ``image`` uint8 (3, S, S), S = ``INPUT.IMAGE_SIZE``; in training ``instances``
    with one mask per non-crowd segment: ``gt_classes`` (N,), ``gt_masks`` bool (N, S, S),
    ``gt_boxes`` (N, 4) (padding and cropped-away segments give empty masks / zero boxes,
    as in the official mapper).
    """

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_checked(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        image, transforms = T.apply_transform_gens(self.tfm_gens, image)
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "pan_seg_file_name" in dataset_dict:
            pan = read_panoptic_png(dataset_dict.pop("pan_seg_file_name"), dataset_dict["segments_info"])
            pan = rgb2id(transforms.apply_segmentation(pan))
            instances = segments_to_instances(image_shape, pan, dataset_dict["segments_info"])
            if len(instances):
                instances.gt_boxes = BitMasks(instances.gt_masks).get_bounding_boxes()
            else:
                instances.gt_boxes = Boxes(torch.zeros((0, 4)))
            dataset_dict["instances"] = instances
        return dataset_dict
