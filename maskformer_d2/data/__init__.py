import segmentation_core.data.shapes  # noqa: F401  (registers the synthetic shapes_* datasets)

from . import dataset_mappers, datasets  # noqa: F401  (registers the real datasets)
