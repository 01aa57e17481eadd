from .referring_dataset_mapper import ReferringDatasetMapper  # noqa: F401
