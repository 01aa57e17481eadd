import copy

import numpy as np
import torch

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances, PolygonMasks

from segmentation_core.engine.mapper_registry import register_mapper

from .lsj import LSJDatasetMapperBase
from .mask_former_instance_dataset_mapper import segmentation_to_mask
from .utils import read_image_checked

__all__ = ["COCOInstanceNewBaselineDatasetMapper"]


@register_mapper("coco_instance_lsj")
class COCOInstanceNewBaselineDatasetMapper(LSJDatasetMapperBase):
    """COCO instance mapper with large-scale jitter (Mask2Former's "new baseline").

    Output: ``image`` uint8 (3, S, S) with S = ``INPUT.IMAGE_SIZE`` (FixedSizeCrop pads with 0);
    ``padding_mask`` bool (S, S), True where the pixel is padding; in training ``instances``
    with ``gt_classes`` (N,), ``gt_boxes`` (tight boxes of the transformed masks) and
    ``gt_masks`` bool (N, S, S), empty instances removed.
    """

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_checked(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        valid = np.ones(image.shape[:2], dtype=np.uint8)
        image, transforms = T.apply_transform_gens(self.tfm_gens, image)
        padding_mask = ~transforms.apply_segmentation(valid).astype(bool)
        image_shape = image.shape[:2]

        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        dataset_dict["padding_mask"] = torch.as_tensor(np.ascontiguousarray(padding_mask))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            annos = []
            for obj in dataset_dict.pop("annotations"):
                if obj.get("iscrowd", 0) != 0:
                    continue
                obj.pop("keypoints", None)
                annos.append(utils.transform_instance_annotations(obj, transforms, image_shape))
            if not annos:
                h, w = image_shape
                instances = Instances(image_shape)
                instances.gt_classes = torch.zeros((0,), dtype=torch.int64)
                instances.gt_boxes = Boxes(torch.zeros((0, 4)))
                instances.gt_masks = torch.zeros((0, h, w), dtype=torch.bool)
                dataset_dict["instances"] = instances
                return dataset_dict
            # polygons stay polygons (exact rasterisation after the crop); RLE/arrays are
            # already rasterised by transform_instance_annotations
            polygons = all(isinstance(a.get("segmentation"), list) for a in annos)
            instances = utils.annotations_to_instances(
                annos, image_shape, mask_format="polygon" if polygons else "bitmask"
            )
            # a cropped object's box must be recomputed from its cropped mask
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
            instances = utils.filter_empty_instances(instances)
            h, w = image_shape
            if isinstance(instances.gt_masks, PolygonMasks):
                masks = [
                    torch.from_numpy(np.ascontiguousarray(segmentation_to_mask(p, h, w), dtype=bool))
                    for p in instances.gt_masks.polygons
                ]
                instances.gt_masks = (
                    torch.stack(masks) if masks else torch.zeros((0, h, w), dtype=torch.bool)
                )
            else:
                instances.gt_masks = instances.gt_masks.tensor.bool()
            dataset_dict["instances"] = instances
        return dataset_dict
