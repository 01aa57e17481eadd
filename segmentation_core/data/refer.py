"""Loader of referring-segmentation datasets in the REFER layout (RefCOCO, RefCOCO+, RefCOCOg,
ReferIt/refclef, and the synthetic ``refshapes``).

A REFER dataset folder holds ``refs(<splitBy>).p``, a pickled list of refs::

    {"ref_id", "ann_id", "image_id", "category_id", "split", "sent_ids",
     "sentences": [{"sent_id", "sent", "raw", "tokens"}, ...], ...}

and ``instances.json``, COCO ``images`` / ``annotations`` / ``categories``. The referred
object's mask is the annotation ``ann_id`` (polygons or RLE). :func:`load_refer_json` returns
one detectron2 record per sentence (the "Referring" contract in docs/CONTRACTS.md).
"""
import json
import logging
import os
import pickle
from typing import Dict, List, Optional

from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode
from pycocotools import mask as mask_util

from ..safe_pickle import UnsafePickleError, safe_pickle_load
from ..validation.records import BAD_RECORD_KEY

logger = logging.getLogger(__name__)

__all__ = ["load_refer_json", "DatasetFileError", "BAD_RECORD_KEY"]


class DatasetFileError(RuntimeError):
    """A whole dataset file (refs pickle, instances.json) is unreadable: nothing to skip."""

    def __init__(self, path: str, detail: str):
        super().__init__(f"{path} {detail}")
        self.path = path


class _BadRef(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _missing(path: str, what: str) -> FileNotFoundError:
    root = os.getenv("DETECTRON2_DATASETS")
    return FileNotFoundError(
        f"{what} not found: {path}. Datasets are read from $DETECTRON2_DATASETS "
        f"(currently {root!r}; './datasets' when unset); see restr_d2/data/datasets/README.md "
        "for the expected layout."
    )


def _segmentation(segm, height: int, width: int, ann_id: int, file_name: str = ""):
    """Polygons (those with < 3 points dropped) or a compressed RLE dict."""
    if isinstance(segm, dict):
        if isinstance(segm.get("counts"), list):  # uncompressed RLE
            segm = mask_util.frPyObjects(segm, *segm["size"])
        counts = segm["counts"]
        return {"size": list(segm["size"]),
                "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    polys = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
    if not polys:
        raise ValueError(f"Annotation {ann_id} of image {file_name} has no polygon with >= 3 points "
                         f"(got {segm!r:.200}); fix or remove it from instances.json")
    return polys


def load_refer_json(refer_dir: str, split_by: str, split: str, image_root: str,
                    dataset_name: Optional[str] = None) -> List[Dict]:
    """Records of one split of a REFER dataset, one per sentence.

    Args:
        refer_dir: folder with ``refs(<split_by>).p`` and ``instances.json``.
        split_by: e.g. "unc", "umd", "google", "berkeley".
        split: value of the refs' ``split`` field, e.g. "train", "val", "testA".
        image_root: folder the ``file_name`` of ``instances.json`` images is relative to.
        dataset_name: if given, its metadata gets ``thing_classes`` and
            ``thing_dataset_id_to_contiguous_id`` from the categories, like ``load_coco_json``.
    """
    refs_path = os.path.join(refer_dir, f"refs({split_by}).p")
    instances_path = os.path.join(refer_dir, "instances.json")
    for path, what in ((refs_path, "REFER refs file"), (instances_path, "REFER instances file")):
        if not os.path.isfile(path):
            raise _missing(path, what)
    if not os.path.isdir(image_root):
        raise _missing(image_root, "Image folder")
    try:
        # The official pickles were written by Python 2; their str are UTF-8 bytes. Plain data
        # only: a pickle naming any other global is refused (UnsafePickleError), never run.
        refs = safe_pickle_load(refs_path, encoding="utf-8")
    except UnsafePickleError:
        raise  # names the file and the refused global: not "corrupt"
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
        raise DatasetFileError(refs_path, f"cannot be unpickled ({type(e).__name__}: {e}); it is "
                               "truncated or corrupt: extract or download it again") from e
    try:
        with open(instances_path) as f:
            instances = json.load(f)
    except ValueError as e:
        raise DatasetFileError(instances_path, f"is not valid JSON ({e}); it is truncated or corrupt") from e

    cat_ids = sorted(c["id"] for c in instances["categories"])
    id_map = {cid: i for i, cid in enumerate(cat_ids)}
    if dataset_name is not None:
        names = {c["id"]: c["name"] for c in instances["categories"]}
        meta = MetadataCatalog.get(dataset_name)
        meta.thing_classes = [names[c] for c in cat_ids]
        meta.thing_dataset_id_to_contiguous_id = id_map

    available = sorted({r["split"] for r in refs})
    selected = [r for r in refs if r["split"] == split]
    if not selected:
        raise ValueError(f"No refs with split {split!r} in {refs_path}; its splits are {available}")
    images = {im["id"]: im for im in instances["images"]}
    anns = {a["id"]: a for a in instances["annotations"]}

    records, num_bad = [], 0
    for ref in selected:
        img = images.get(ref["image_id"])
        try:
            if img is None:
                raise _BadRef("missing_field", f"its image_id {ref['image_id']} is not in {instances_path}")
            ann = anns.get(ref["ann_id"])
            if ann is None:
                raise _BadRef("missing_field", f"its ann_id {ref['ann_id']} is not in {instances_path}")
            if ann["category_id"] not in id_map or ref["category_id"] not in id_map:
                raise _BadRef("category_out_of_range", f"category {ref['category_id']} / {ann['category_id']} "
                              f"is not among the categories of {instances_path}")
            h, w = img["height"], img["width"]
            try:
                segmentation = _segmentation(ann["segmentation"], h, w, ann["id"], img["file_name"])
            except ValueError as e:
                raise _BadRef("degenerate_polygon", str(e)) from e
        except _BadRef as e:
            # one record per sentence, marked: the record checker (training, under
            # DATALOADER.BAD_RECORD_POLICY) and the referring mapper reject it, naming the ref
            num_bad += 1
            for sent in ref["sentences"]:
                records.append({
                    "file_name": os.path.join(image_root, img["file_name"]) if img else instances_path,
                    "image_id": ref["image_id"], "ref_id": ref["ref_id"], "ann_id": ref["ann_id"],
                    "sent_id": sent["sent_id"], "sentence": sent["sent"],
                    BAD_RECORD_KEY: (e.reason, f"ref {ref['ref_id']} of {refs_path}: {e.detail}"),
                })
            continue
        obj = {
            "segmentation": segmentation,
            "bbox": list(ann["bbox"]),
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": id_map[ann["category_id"]],
            "iscrowd": ann.get("iscrowd", 0),
        }
        for sent in ref["sentences"]:
            records.append({
                "file_name": os.path.join(image_root, img["file_name"]),
                "height": h,
                "width": w,
                "image_id": img["id"],
                "ref_id": ref["ref_id"],
                "ann_id": ref["ann_id"],
                "sent_id": sent["sent_id"],
                "sentence": sent["sent"],
                "category_id": id_map[ref["category_id"]],
                "annotations": [dict(obj)],
            })
    logger.info("Loaded %d sentences of %d refs (split %s) from %s", len(records), len(selected),
                split, refs_path)
    if num_bad:
        logger.warning("%d of %d refs of %s (split %s) cannot be used (their records are rejected or, with "
                       "DATALOADER.BAD_RECORD_POLICY skip, skipped and counted in training)", num_bad,
                       len(selected), refs_path, split)
    return records
