from . import dataset_mappers, datasets  # noqa: F401  (registers datasets)
