"""Registration of the RefCOCO family and ReferIt (REFER layout), one record per sentence.

Expected layout under ``$DETECTRON2_DATASETS`` (default ``./datasets``)::

    refcoco/refs(unc).p        refcoco/instances.json
    refcoco+/refs(unc).p       refcoco+/instances.json
    refcocog/refs(umd).p       refcocog/refs(google).p     refcocog/instances.json
    referit/refs(berkeley).p   referit/instances.json      referit/images/*.jpg
    coco/train2014/COCO_train2014_*.jpg

Registered names::

    refcoco_unc_{train,val,testA,testB}     refcoco+_unc_{train,val,testA,testB}
    refcocog_umd_{train,val,test}           refcocog_google_{train,val}
    referit_{train,val,test}

The synthetic ``shapes_refcoco_unc_{train,val}`` (``segmentation_core.data.shapes``) go through the
same :func:`load_refer_json`.
"""
import os
from typing import List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog

from segmentation_core.data.refer import load_refer_json

# name -> (REFER folder, splitBy, splits, image folder), paths relative to the datasets root
_REFER_DATASETS = {
    "refcoco_unc": ("refcoco", "unc", ("train", "val", "testA", "testB"), "coco/train2014"),
    "refcoco+_unc": ("refcoco+", "unc", ("train", "val", "testA", "testB"), "coco/train2014"),
    "refcocog_umd": ("refcocog", "umd", ("train", "val", "test"), "coco/train2014"),
    "refcocog_google": ("refcocog", "google", ("train", "val"), "coco/train2014"),
    "referit": ("referit", "berkeley", ("train", "val", "test"), "referit/images"),
}


def register_refer_dataset(name: str, refer_dir: str, split_by: str, split: str,
                           image_root: str) -> None:
    """Register one split of a REFER-layout dataset; files are read on first use."""
    DatasetCatalog.register(
        name, lambda: load_refer_json(refer_dir, split_by, split, image_root, name)
    )
    MetadataCatalog.get(name).set(
        refer_dir=refer_dir, split_by=split_by, split=split, image_root=image_root,
        evaluator_type="referring",
    )


def register_all_refcoco(root: Optional[str] = None) -> List[str]:
    root = root if root is not None else os.getenv("DETECTRON2_DATASETS", "datasets")
    names = []
    for prefix, (folder, split_by, splits, images) in _REFER_DATASETS.items():
        for split in splits:
            name = f"{prefix}_{split}"
            register_refer_dataset(name, os.path.join(root, folder), split_by, split,
                                   os.path.join(root, images))
            names.append(name)
    return names


_REGISTERED = register_all_refcoco()
