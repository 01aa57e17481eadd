"""Validation of detectron2 dataset dicts, before mapping (:class:`RecordChecker`,
:func:`validate_dataset_dicts`) and of the label files a mapper reads
(:func:`check_sem_seg_labels`, :func:`check_panoptic_ids`).

Rules (each violation names the file and the offending values):

* ``annotations == []``: kept (``empty_annotations="keep"``) or rejected (``"reject"``);
  detectron2 already drops empty instance records at dataset level when
  ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` is True.
* polygons: a polygon with < 3 points, an odd number of coordinates or non-finite values is
  dropped and counted (``degenerate_polygons="drop"``) or rejects the record (``"reject"``);
  coordinates outside the image are clipped to it; a polygon with no area left is dropped. An
  annotation whose polygons are all dropped is dropped.
* RLE / binary masks must have the record's (height, width).
* boxes (``XYXY_ABS`` / ``XYWH_ABS``) are clipped to the image; a box entirely outside it drops
  its annotation; non-finite boxes reject the record.
* category ids (annotations, ``segments_info``, the record's own ``category_id``) must lie in
  ``[0, num_classes)``; panoptic segment ids must be unique positive integers.

Records are never modified in place: a repaired record is a copy.
"""
import logging
import math
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from detectron2.structures import BoxMode

from .errors import BadRecordError
from .stats import BadRecordCounter

__all__ = [
    "RecordChecker",
    "validate_dataset_dicts",
    "check_sem_seg_labels",
    "check_panoptic_ids",
    "num_classes_from_metadata",
    "BAD_RECORD_KEY",
    "raise_if_marked_bad",
]

logger = logging.getLogger(__name__)

POLICIES = ("fatal", "skip")
# a loader that finds a record unusable (e.g. a referring expression whose annotation is absent)
# still returns it, with (reason, detail) under this key: the checker and mappers reject it, so
# DATALOADER.BAD_RECORD_POLICY decides and the skips are counted like every other bad record
BAD_RECORD_KEY = "bad_record"


def raise_if_marked_bad(record: Dict) -> None:
    """The :class:`BadRecordError` a loader marked ``record`` with (``BAD_RECORD_KEY``)."""
    if BAD_RECORD_KEY in record:
        reason, detail = record[BAD_RECORD_KEY]
        raise BadRecordError(record.get("file_name"), reason, detail)
_ABS_MODES = (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)


def _polygon_area(xs: Sequence[float], ys: Sequence[float]) -> float:
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _in_range(cid, n: int) -> bool:
    return isinstance(cid, (int, np.integer)) and not isinstance(cid, bool) and 0 <= cid < n


def num_classes_from_metadata(metadata, kind: str) -> Optional[int]:
    """Number of contiguous category ids of ``kind`` ("thing": ``annotations`` /
    referring records, ``len(thing_classes)``; "segment": panoptic ``segments_info``,
    ``len(stuff_classes)``, all classes in the Mask2Former convention); None if unknown."""
    key = {"thing": "thing_classes", "segment": "stuff_classes"}[kind]
    classes = metadata.get(key, None) if metadata is not None else None
    return len(classes) if classes is not None else None


class RecordChecker:
    """Checks (and repairs) one record; ``checker(record)`` returns the record or a repaired
    copy, or raises :class:`BadRecordError`. ``checker.repairs`` counts the repairs."""

    def __init__(
        self,
        *,
        num_classes: Optional[int] = None,
        num_segment_classes: Optional[int] = None,
        empty_annotations: str = "keep",
        degenerate_polygons: str = "drop",
    ):
        """
        Args:
            num_classes: category ids of ``annotations`` (and a record's ``category_id``)
                must be < this; None skips the check.
            num_segment_classes: same for panoptic ``segments_info``.
            empty_annotations: "keep" or "reject" records whose ``annotations`` is empty.
            degenerate_polygons: "drop" (counted) or "reject" the record.
        """
        if empty_annotations not in ("keep", "reject"):
            raise ValueError(f"empty_annotations={empty_annotations!r}; expected 'keep' or 'reject'")
        if degenerate_polygons not in ("drop", "reject"):
            raise ValueError(f"degenerate_polygons={degenerate_polygons!r}; expected 'drop' or 'reject'")
        self.num_classes = num_classes
        self.num_segment_classes = num_segment_classes
        self.empty_annotations = empty_annotations
        self.degenerate_polygons = degenerate_polygons
        self.repairs: Counter = Counter()

    @classmethod
    def from_metadata(cls, metadata, **kwargs) -> "RecordChecker":
        kwargs.setdefault("num_classes", num_classes_from_metadata(metadata, "thing"))
        kwargs.setdefault("num_segment_classes", num_classes_from_metadata(metadata, "segment"))
        return cls(**kwargs)

    # -- record ------------------------------------------------------------------------------
    def __call__(self, record: Dict) -> Dict:
        raise_if_marked_bad(record)
        file_name = record.get("file_name")
        if not file_name:
            raise BadRecordError(None, "missing_field", f"record without 'file_name': {_short(record)}")
        if self.num_classes is not None and "category_id" in record:
            self._check_category(record["category_id"], self.num_classes, file_name, "the record's category_id")
        if "segments_info" in record:
            self._check_segments(record["segments_info"], file_name)
        if "annotations" not in record:
            return record
        annotations = record["annotations"]
        if not annotations:
            if self.empty_annotations == "reject":
                raise BadRecordError(file_name, "empty_annotations", "record has no annotation")
            return record
        height, width = record.get("height"), record.get("width")
        new_anns, changed = [], False
        for i, ann in enumerate(annotations):
            fixed = self._check_annotation(ann, i, file_name, height, width)
            changed |= fixed is not ann
            if fixed is not None:
                new_anns.append(fixed)
        if not changed:
            return record
        if not new_anns and self.empty_annotations == "reject":
            raise BadRecordError(
                file_name, "empty_annotations",
                f"no annotation left after dropping {len(annotations)} unusable one(s) "
                "(degenerate polygons / boxes outside the image)",
            )
        out = dict(record)
        out["annotations"] = new_anns
        return out

    # -- parts -------------------------------------------------------------------------------
    @staticmethod
    def _check_category(cid, n: int, file_name: str, what: str) -> None:
        if not _in_range(cid, n):
            raise BadRecordError(
                file_name, "category_out_of_range",
                f"{what} {cid!r} is not a contiguous id in [0, {n}); register the dataset with "
                "contiguous ids (thing_dataset_id_to_contiguous_id) and make the model's "
                "NUM_CLASSES match the metadata",
            )

    def _check_segments(self, segments: List[Dict], file_name: str) -> None:
        ids = [s.get("id") for s in segments]
        bad = [i for i in ids if not isinstance(i, (int, np.integer)) or i <= 0]
        if bad:
            raise BadRecordError(file_name, "panoptic_id_mismatch", f"segments_info ids {bad} are not positive integers")
        dup = sorted(i for i, c in Counter(ids).items() if c > 1)
        if dup:
            raise BadRecordError(file_name, "panoptic_id_mismatch", f"segments_info repeats ids {dup}")
        if self.num_segment_classes is not None:
            for s in segments:
                self._check_category(s.get("category_id"), self.num_segment_classes, file_name,
                                     f"segment {s['id']}: category_id")

    def _check_annotation(self, ann: Dict, i: int, file_name: str, height, width) -> Optional[Dict]:
        """The annotation, a repaired copy, or None to drop it."""
        if self.num_classes is not None and "category_id" in ann:
            self._check_category(ann["category_id"], self.num_classes, file_name, f"annotation {i}: category_id")
        out = ann
        if "segmentation" in ann:
            segm = self._check_segmentation(ann["segmentation"], i, file_name, height, width)
            if segm is None:
                self.repairs["annotation_dropped"] += 1
                return None
            if segm is not ann["segmentation"]:
                out = dict(ann, segmentation=segm)
        if "bbox" in ann:
            box = self._check_box(ann, i, file_name, height, width)
            if box is None:
                self.repairs["annotation_dropped"] += 1
                return None
            if box is not ann["bbox"]:
                out = dict(out, bbox=box)
        return out

    def _check_segmentation(self, segm, i, file_name, height, width):
        if isinstance(segm, dict):  # RLE
            size = segm.get("size")
            if height is not None and (size is None or [int(v) for v in size] != [height, width]):
                raise BadRecordError(
                    file_name, "bad_segmentation",
                    f"annotation {i}: RLE size {size} differs from the image size [{height}, {width}]",
                )
            return segm
        if isinstance(segm, np.ndarray):
            if height is not None and segm.shape[:2] != (height, width):
                raise BadRecordError(
                    file_name, "bad_segmentation",
                    f"annotation {i}: mask of shape {segm.shape} differs from the image size ({height}, {width})",
                )
            return segm
        if not isinstance(segm, (list, tuple)):
            raise BadRecordError(file_name, "bad_segmentation",
                                 f"annotation {i}: unsupported segmentation type {type(segm).__name__}")
        kept, changed = [], False
        for j, poly in enumerate(segm):
            fixed = self._check_polygon(poly, i, j, file_name, height, width)
            changed |= fixed is not poly
            if fixed is not None:
                kept.append(fixed)
        if not segm:
            return segm  # an empty polygon list: nothing to rasterise, left to the mapper
        if not kept:
            return None
        return kept if changed else segm

    def _check_polygon(self, poly, i, j, file_name, height, width):
        try:
            coords = [float(v) for v in poly]
        except (TypeError, ValueError):
            coords = None
        problem = None
        if coords is None:
            problem = "is not a flat list of numbers"
        elif len(coords) % 2 or len(coords) < 6:
            problem = f"has {len(coords)} coordinates (a polygon needs >= 3 (x, y) points)"
        elif not all(math.isfinite(v) for v in coords):
            problem = "has non-finite coordinates"
        if problem is not None:
            if self.degenerate_polygons == "reject":
                raise BadRecordError(file_name, "degenerate_polygon", f"annotation {i}, polygon {j} {problem}")
            self.repairs["polygon_dropped"] += 1
            logger.debug("%s: annotation %d, polygon %d %s: dropped", file_name, i, j, problem)
            return None
        if height is None or width is None:
            return poly
        xs, ys = coords[0::2], coords[1::2]
        if min(xs) >= 0 and min(ys) >= 0 and max(xs) <= width and max(ys) <= height:
            return poly
        cx = [min(max(x, 0.0), float(width)) for x in xs]
        cy = [min(max(y, 0.0), float(height)) for y in ys]
        if _polygon_area(cx, cy) == 0:
            self.repairs["polygon_outside_image_dropped"] += 1
            return None
        self.repairs["polygon_clipped"] += 1
        return [v for xy in zip(cx, cy) for v in xy]

    def _check_box(self, ann, i, file_name, height, width):
        box = ann["bbox"]
        try:
            values = [float(v) for v in box]
        except (TypeError, ValueError):
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise BadRecordError(file_name, "bad_box", f"annotation {i}: bbox {box!r} is not 4 finite numbers")
        mode = ann.get("bbox_mode", BoxMode.XYXY_ABS)
        if mode not in _ABS_MODES or height is None or width is None:
            return box
        x0, y0, x1, y1 = BoxMode.convert(values, mode, BoxMode.XYXY_ABS)
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            if "segmentation" in ann:
                # the mask is the ground truth; a wrong box alone does not drop the object
                self.repairs["box_outside_image_kept_mask"] += 1
                return box
            self.repairs["box_outside_image_dropped"] += 1
            return None
        c = [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
        if c == [x0, y0, x1, y1]:
            return box
        self.repairs["box_clipped"] += 1
        return BoxMode.convert(c, BoxMode.XYXY_ABS, mode)


def validate_dataset_dicts(
    records: List[Dict],
    checker: RecordChecker,
    policy: str = "fatal",
    dataset_name: str = "dataset",
    counter: Optional[BadRecordCounter] = None,
) -> List[Dict]:
    """Run ``checker`` over all records. ``policy="fatal"`` raises on the first bad record;
    ``"skip"`` leaves bad records out. Logs one summary line (skips per reason, repairs)."""
    if policy not in POLICIES:
        raise ValueError(f"DATALOADER.BAD_RECORD_POLICY={policy!r}; expected one of {POLICIES}")
    counter = counter if counter is not None else BadRecordCounter(shared=False)
    out = []
    for rec in records:
        try:
            out.append(checker(rec))
        except BadRecordError as e:
            if policy == "fatal":
                raise BadRecordError(
                    e.file_name, e.reason,
                    f"{e.detail} (dataset {dataset_name}; set DATALOADER.BAD_RECORD_POLICY 'skip' "
                    "to leave such records out)",
                ) from e
            counter.add(e.reason)
            logger.warning("Skipping a bad record of %s: %s", dataset_name, e)
    counter.repairs.update(checker.repairs)
    checker.repairs.clear()
    summary = counter.summary(f"Dataset {dataset_name}", len(records))
    (logger.warning if counter.total() or counter.repairs else logger.info)(summary)
    return out


def check_sem_seg_labels(sem_seg: np.ndarray, num_classes: int, ignore_label: int, file_name: str) -> None:
    """Every label must be a class id in [0, num_classes) or ``ignore_label``."""
    values = np.unique(np.asarray(sem_seg))
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_label)]
    if bad.size:
        shown = bad[:10].tolist()
        raise BadRecordError(
            file_name, "label_out_of_range",
            f"semantic labels {shown}{' ...' if bad.size > 10 else ''} are neither class ids in "
            f"[0, {num_classes}) nor the ignore label {ignore_label}; check the label maps or "
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES / the dataset's ignore_label",
        )


def check_panoptic_ids(pan_ids: np.ndarray, segments_info: Iterable[Dict], file_name: str) -> None:
    """The ids in a panoptic PNG (0 = void) must be exactly the ``segments_info`` ids.

    ``pan_ids`` is the (H, W) id map (``rgb2id`` of the PNG), read before any crop.
    """
    in_png = set(np.unique(np.asarray(pan_ids)).tolist()) - {0}
    in_info = {int(s["id"]) for s in segments_info}
    extra, missing = sorted(in_png - in_info), sorted(in_info - in_png)
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"ids {extra[:10]} are in the PNG but not in segments_info")
        if missing:
            parts.append(f"ids {missing[:10]} of segments_info are absent from the PNG")
        raise BadRecordError(
            file_name, "panoptic_id_mismatch",
            "; ".join(parts) + " (is pan_seg_file_name the PNG of this record, read as RGB, "
            "ids = R + 256 G + 256^2 B?)",
        )


def _short(record: Dict) -> str:
    return repr({k: record[k] for k in list(record)[:4]})[:200]
