"""Dataset mappers every family may use, registered under their official
``INPUT.DATASET_MAPPER_NAME`` (see ``segmentation_core.engine.mapper_registry``)."""
from .mask_former_semantic_dataset_mapper import MaskFormerSemanticDatasetMapper  # noqa: F401
