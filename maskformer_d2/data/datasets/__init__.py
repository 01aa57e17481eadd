"""Registrations of the real datasets under ``$DETECTRON2_DATASETS`` (default ``./datasets``),
with the official MaskFormer / Mask2Former names and metadata. Importing registers them;
nothing is read from disk until a dataset is loaded."""
from . import (  # noqa: F401
    register_ade20k_panoptic,
    register_ade20k_semantic,
    register_cityscapes,
    register_coco_panoptic_annos_semseg,
    register_coco_stuff_10k,
    register_mapillary_vistas,
)
