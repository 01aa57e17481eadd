"""Helpers of the MaskFormer-family dataset mappers (the generic ones live in the core)."""
from segmentation_core.data.dataset_mappers.utils import mask_former_train_augmentations, masks_to_instances, pad_to_size
from segmentation_core.data.panoptic_ids import rgb2id
from segmentation_core.validation import check_panoptic_ids, read_image_checked

__all__ = [
    "read_image_checked", "read_panoptic_png", "rgb2id", "pad_to_size", "masks_to_instances",
    "mask_former_train_augmentations",
    "segments_to_instances",
]


def read_panoptic_png(file_name, segments_info):
    """The (H, W, 3) RGB panoptic PNG, after checking that its ids are exactly the ids of
    ``segments_info`` (a mismatch raises ``BadRecordError`` naming the file and the ids)."""
    pan = read_image_checked(file_name, "RGB")
    check_panoptic_ids(rgb2id(pan), segments_info, file_name)
    return pan


def segments_to_instances(image_shape, pan_ids, segments_info):
    """One instance per non-crowd segment of an (H, W) panoptic id map: ``gt_classes`` its
    contiguous ``category_id``, ``gt_masks`` ``pan_ids == id`` (empty if cropped away)."""
    kept = [s for s in segments_info if not s["iscrowd"]]
    return masks_to_instances(
        image_shape, [s["category_id"] for s in kept], [pan_ids == s["id"] for s in kept]
    )
