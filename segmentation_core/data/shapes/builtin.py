"""Registration of the ``shapes`` datasets in DatasetCatalog / MetadataCatalog.

Names (``prefix`` = "shapes" for the built-in registration)::

    {prefix}_sem_seg_{train,val}        semantic: file_name, sem_seg_file_name
    {prefix}_panoptic_{train,val}       Mask2Former panoptic: + pan_seg_file_name, segments_info
    {prefix}_instance_{train,val}       COCO instances through detectron2's load_coco_json
    {prefix}_refcoco_unc_{train,val}    referring, through segmentation_core.data.refer.load_refer_json

Nothing is generated at registration: each loader first calls :func:`ensure_shapes`, which
generates (or verifies) ``<root>/shapes`` on first use.
"""
import json
import os
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..refer import load_refer_json
from .cache import SHAPES_DIRNAME, config_from_env, datasets_root, ensure_shapes
from .categories import (
    DATASET_ID_TO_CONTIGUOUS, IGNORE_LABEL, LABEL_DIVISOR, THING_CATEGORIES,
    shapes_panoptic_metadata,
)
from .generate import REFER_DATASET, REFER_SPLIT_BY, SPLITS, ShapesConfig


def _image_list(dataset_dir: str, split: str) -> List[dict]:
    with open(os.path.join(dataset_dir, "annotations", f"panoptic_{split}.json")) as f:
        return json.load(f)


def load_shapes_sem_seg(dataset_dir: str, split: str) -> List[Dict]:
    records = []
    for im in _image_list(dataset_dir, split)["images"]:
        records.append({
            "file_name": os.path.join(dataset_dir, "images", im["file_name"]),
            "sem_seg_file_name": os.path.join(dataset_dir, "sem_seg", im["file_name"]),
            "height": im["height"], "width": im["width"], "image_id": im["id"],
        })
    return records


def load_shapes_panoptic(dataset_dir: str, split: str) -> List[Dict]:
    """Mask2Former-style panoptic records; ``segments_info`` category ids are contiguous."""
    meta = shapes_panoptic_metadata()
    things, stuff = meta["thing_dataset_id_to_contiguous_id"], meta["stuff_dataset_id_to_contiguous_id"]
    data = _image_list(dataset_dir, split)
    images = {im["id"]: im for im in data["images"]}
    records = []
    for ann in data["annotations"]:
        im = images[ann["image_id"]]
        segments = []
        for s in ann["segments_info"]:
            isthing = s["category_id"] in things
            segments.append({**s, "isthing": isthing,
                             "category_id": (things if isthing else stuff)[s["category_id"]]})
        records.append({
            "file_name": os.path.join(dataset_dir, "images", im["file_name"]),
            "image_id": im["id"], "height": im["height"], "width": im["width"],
            "pan_seg_file_name": os.path.join(dataset_dir, "panoptic", ann["file_name"]),
            "sem_seg_file_name": os.path.join(dataset_dir, "sem_seg", ann["file_name"]),
            "segments_info": segments,
        })
    return records


def register_shapes(root: Optional[str] = None, config: Optional[ShapesConfig] = None,
                    prefix: str = "shapes") -> List[str]:
    """Register the 8 ``shapes`` datasets for data under ``<root>/shapes``; returns the names.

    ``root`` defaults to ``$DETECTRON2_DATASETS`` (else ``./datasets``), ``config`` to
    :func:`config_from_env` (``SHAPES_NUM_TRAIN``, ``SHAPES_NUM_VAL``, ``SHAPES_SEED``).
    """
    root = datasets_root(root)
    config = config if config is not None else config_from_env()
    d = os.path.join(root, SHAPES_DIRNAME)

    def ensure() -> str:
        return ensure_shapes(root, config)

    pan_meta = shapes_panoptic_metadata()
    thing_meta = {
        "thing_classes": pan_meta["thing_classes"],
        "thing_colors": pan_meta["thing_colors"],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(THING_CATEGORIES)},
    }
    names = []
    for split in SPLITS:
        name = f"{prefix}_sem_seg_{split}"
        DatasetCatalog.register(name, lambda s=split: load_shapes_sem_seg(ensure(), s))
        MetadataCatalog.get(name).set(
            stuff_classes=pan_meta["stuff_classes"], stuff_colors=pan_meta["stuff_colors"],
            stuff_dataset_id_to_contiguous_id=dict(DATASET_ID_TO_CONTIGUOUS),
            ignore_label=IGNORE_LABEL, evaluator_type="sem_seg",
            image_root=os.path.join(d, "images"), sem_seg_root=os.path.join(d, "sem_seg"),
        )
        names.append(name)

        name = f"{prefix}_panoptic_{split}"
        DatasetCatalog.register(name, lambda s=split: load_shapes_panoptic(ensure(), s))
        MetadataCatalog.get(name).set(
            **pan_meta,
            panoptic_root=os.path.join(d, "panoptic"),
            panoptic_json=os.path.join(d, "annotations", f"panoptic_{split}.json"),
            json_file=os.path.join(d, "annotations", f"instances_{split}.json"),
            image_root=os.path.join(d, "images"), sem_seg_root=os.path.join(d, "sem_seg"),
            ignore_label=IGNORE_LABEL, label_divisor=LABEL_DIVISOR,
            evaluator_type="coco_panoptic_seg",
        )
        names.append(name)

        name = f"{prefix}_instance_{split}"
        json_file = os.path.join(d, "annotations", f"instances_{split}.json")
        DatasetCatalog.register(
            name,
            lambda n=name, j=json_file: (ensure(), load_coco_json(j, os.path.join(d, "images"), n))[1],
        )
        MetadataCatalog.get(name).set(
            **thing_meta, json_file=json_file, image_root=os.path.join(d, "images"),
            evaluator_type="coco",
        )
        names.append(name)

        name = f"{prefix}_refcoco_{REFER_SPLIT_BY}_{split}"
        refer_dir = os.path.join(d, REFER_DATASET)
        DatasetCatalog.register(
            name,
            lambda n=name, s=split, r=refer_dir: (ensure(), load_refer_json(
                r, REFER_SPLIT_BY, s, os.path.join(d, "images"), n))[1],
        )
        MetadataCatalog.get(name).set(
            **thing_meta, refer_dir=refer_dir, split_by=REFER_SPLIT_BY, split=split,
            image_root=os.path.join(d, "images"), evaluator_type="referring",
        )
        names.append(name)
    return names
