"""Config keys of input validation, and the cfg -> objects glue the Trainer and mappers use."""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import MetadataCatalog, get_detection_dataset_dicts

from .image_io import DEFAULT_MAX_IMAGE_PIXELS
from .records import POLICIES, RecordChecker, validate_dataset_dicts
from .safe_mapper import SafeMapper

__all__ = [
    "add_validation_config",
    "image_reader_kwargs",
    "record_checker_from_cfg",
    "checked_train_dataset_dicts",
    "wrap_mapper",
]

logger = logging.getLogger(__name__)

_DEFAULTS = {
    # "fatal": the first bad record stops the run, naming the file and the reason;
    # "skip": bad training records are left out, counted per reason and summarised in the log
    ("DATALOADER", "BAD_RECORD_POLICY"): "fatal",
    # polygons with < 3 points / non-finite coordinates: "drop" (counted) or "reject" the record
    ("DATALOADER", "DEGENERATE_POLYGONS"): "drop",
    # images above this many pixels are refused before decoding (0: no limit)
    ("INPUT", "MAX_IMAGE_PIXELS"): DEFAULT_MAX_IMAGE_PIXELS,
    # rotate / flip images by their EXIF orientation tag, as detectron2's read_image does
    ("INPUT", "APPLY_EXIF_ORIENTATION"): True,
}


def add_validation_config(cfg) -> None:
    """Add the keys above (idempotent: existing values are kept)."""
    for (node, key), value in _DEFAULTS.items():
        if key not in cfg[node]:
            cfg[node][key] = value


def _get(cfg, node: str, key: str):
    if key in cfg[node]:
        return cfg[node][key]
    value = _DEFAULTS[(node, key)]
    logger.info(f"{node}.{key} is not in the config (add_validation_config not called): using {value!r}")
    return value


def image_reader_kwargs(cfg) -> Dict:
    """Keyword arguments of ``read_image_checked`` from the config."""
    return {
        "max_pixels": int(_get(cfg, "INPUT", "MAX_IMAGE_PIXELS")),
        "apply_exif": bool(_get(cfg, "INPUT", "APPLY_EXIF_ORIENTATION")),
    }


def bad_record_policy(cfg) -> str:
    policy = _get(cfg, "DATALOADER", "BAD_RECORD_POLICY")
    if policy not in POLICIES:
        raise ValueError(f"DATALOADER.BAD_RECORD_POLICY={policy!r}; expected one of {POLICIES}")
    return policy


def record_checker_from_cfg(cfg, dataset_names: Sequence[str]) -> RecordChecker:
    """A ``RecordChecker`` whose class counts come from the first dataset's metadata (detectron2
    requires the training datasets to share their classes)."""
    meta = MetadataCatalog.get(dataset_names[0]) if dataset_names else None
    return RecordChecker.from_metadata(
        meta,
        empty_annotations="keep",  # detectron2's DATALOADER.FILTER_EMPTY_ANNOTATIONS decides
        degenerate_polygons=_get(cfg, "DATALOADER", "DEGENERATE_POLYGONS"),
    )


def checked_train_dataset_dicts(cfg, names: Optional[Sequence[str]] = None) -> List[Dict]:
    """``get_detection_dataset_dicts`` as detectron2's train loader calls it, then
    :func:`validate_dataset_dicts` under ``DATALOADER.BAD_RECORD_POLICY``."""
    names = list(names if names is not None else cfg.DATASETS.TRAIN)
    records = get_detection_dataset_dicts(
        names,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    return validate_dataset_dicts(
        records, record_checker_from_cfg(cfg, names), bad_record_policy(cfg), ",".join(names)
    )


def wrap_mapper(cfg, mapper, is_train: bool) -> SafeMapper:
    """``SafeMapper(mapper, DATALOADER.BAD_RECORD_POLICY)`` (evaluation: always fatal)."""
    return SafeMapper(mapper, bad_record_policy(cfg), is_train=is_train)


def checked_train_data(cfg, mapper) -> Tuple[List[Dict], SafeMapper]:
    """(validated training records, wrapped mapper): what a train loader needs."""
    return checked_train_dataset_dicts(cfg), wrap_mapper(cfg, mapper, True)
