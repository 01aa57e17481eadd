"""MaskFormer-family dataset mappers, registered under the official
``INPUT.DATASET_MAPPER_NAME`` values (see ``segmentation_core.engine.mapper_registry``)."""
from .coco_instance_new_baseline_dataset_mapper import COCOInstanceNewBaselineDatasetMapper
from .coco_panoptic_new_baseline_dataset_mapper import COCOPanopticNewBaselineDatasetMapper
from .detr_panoptic_dataset_mapper import DETRPanopticDatasetMapper
from .mask_former_instance_dataset_mapper import MaskFormerInstanceDatasetMapper
from .mask_former_panoptic_dataset_mapper import MaskFormerPanopticDatasetMapper
from segmentation_core.data.dataset_mappers import MaskFormerSemanticDatasetMapper  # in the core: Segmenter uses it too

__all__ = [
    "COCOInstanceNewBaselineDatasetMapper",
    "COCOPanopticNewBaselineDatasetMapper",
    "DETRPanopticDatasetMapper",
    "MaskFormerInstanceDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
]
