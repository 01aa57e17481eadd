"""Validation of inputs: images (``read_image_checked``), dataset records
(``RecordChecker``, ``validate_dataset_dicts``, label-file checks) and the bad-record policy
(``SafeMapper``, ``DATALOADER.BAD_RECORD_POLICY``). Config checks live in
``segmentation_core.config_checks``."""
from .config import (  # noqa: F401
    add_validation_config, bad_record_policy, checked_train_data, checked_train_dataset_dicts,
    image_reader_kwargs, record_checker_from_cfg, wrap_mapper,
)
from .errors import (  # noqa: F401
    REASONS, BadRecordError, ImageReadError, ImageTooLargeError, MissingImageError,
)
from .dataset_mapper import CheckedDatasetMapper  # noqa: F401
from .image_io import DEFAULT_MAX_IMAGE_PIXELS, read_image_checked  # noqa: F401
from .records import (  # noqa: F401
    RecordChecker, check_panoptic_ids, check_sem_seg_labels, num_classes_from_metadata,
    validate_dataset_dicts,
)
from .safe_mapper import BadRecordSummaryHook, SafeMapper, log_bad_record_summaries  # noqa: F401
from .stats import BadRecordCounter  # noqa: F401
