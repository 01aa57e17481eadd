"""ADE20K panoptic (150 classes, 100 things) and instance (100 classes) segmentation.

* ``ade20k_panoptic_{train,val}``: COCO-format panoptic PNGs + json made by
  ``datasets/prepare_ade20k_pan_seg.py``, plus the 150-class semantic PNGs of
  ``annotations_detectron2``. Contiguous id = 150-class id; ``stuff_classes`` lists all 150
  classes (the official convention that lets the semantic evaluator run on it too).
* ``ade20k_instance_{train,val}``: COCO instance json made by
  ``datasets/prepare_ade20k_ins_seg.py``; its category ids are 150-class ids.
"""
import os

from detectron2.data.datasets import load_coco_json

from .categories import (
    ADE20K_150_COLORS,
    ADE20K_150_NAMES,
    ADE20K_150_THING_IDS,
    ADE20K_INSTANCE_CATEGORIES,
)
from .common import datasets_root, load_panoptic_json_with_sem_seg, register_lazily

_ADE = "ADEChallengeData2016"
_PANOPTIC_SPLITS = {
    # name: (images, panoptic PNGs, panoptic json, semantic PNGs, instance json)
    "ade20k_panoptic_train": (
        f"{_ADE}/images/training",
        f"{_ADE}/ade20k_panoptic_train",
        f"{_ADE}/ade20k_panoptic_train.json",
        f"{_ADE}/annotations_detectron2/training",
        f"{_ADE}/ade20k_instance_train.json",
    ),
    "ade20k_panoptic_val": (
        f"{_ADE}/images/validation",
        f"{_ADE}/ade20k_panoptic_val",
        f"{_ADE}/ade20k_panoptic_val.json",
        f"{_ADE}/annotations_detectron2/validation",
        f"{_ADE}/ade20k_instance_val.json",
    ),
}
_INSTANCE_SPLITS = {
    "ade20k_instance_train": (f"{_ADE}/images/training", f"{_ADE}/ade20k_instance_train.json"),
    "ade20k_instance_val": (f"{_ADE}/images/validation", f"{_ADE}/ade20k_instance_val.json"),
}


def ade20k_panoptic_metadata():
    things = set(ADE20K_150_THING_IDS)
    colors = [list(c) for c in ADE20K_150_COLORS]
    return {
        "thing_classes": [n for i, n in enumerate(ADE20K_150_NAMES) if i in things],
        "thing_colors": [c for i, c in enumerate(colors) if i in things],
        "stuff_classes": list(ADE20K_150_NAMES),
        "stuff_colors": colors,
        "thing_dataset_id_to_contiguous_id": {i: i for i in ADE20K_150_THING_IDS},
        # every class, things included, so that the semantic evaluator covers all 150
        "stuff_dataset_id_to_contiguous_id": {i: i for i in range(len(ADE20K_150_NAMES))},
    }


def ade20k_instance_metadata():
    return {
        "thing_classes": [c["name"] for c in ADE20K_INSTANCE_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(ADE20K_INSTANCE_CATEGORIES)
        },
    }


def register_ade20k_panoptic(root):
    meta = ade20k_panoptic_metadata()
    for name, rel in _PANOPTIC_SPLITS.items():
        image_root, panoptic_root, panoptic_json, semantic_root, instance_json = (
            os.path.join(root, p) for p in rel
        )
        register_lazily(
            name,
            lambda j=panoptic_json, i=image_root, p=panoptic_root, s=semantic_root: (
                load_panoptic_json_with_sem_seg(j, i, p, s, meta)
            ),
            [image_root, panoptic_root, panoptic_json, semantic_root],
            hint="run datasets/prepare_ade20k_sem_seg.py and datasets/prepare_ade20k_pan_seg.py",
            panoptic_root=panoptic_root,
            image_root=image_root,
            panoptic_json=panoptic_json,
            sem_seg_root=semantic_root,
            json_file=instance_json,
            evaluator_type="ade20k_panoptic_seg",
            ignore_label=255,
            label_divisor=1000,
            **meta,
        )


def register_ade20k_instance(root):
    meta = ade20k_instance_metadata()
    for name, (image_rel, json_rel) in _INSTANCE_SPLITS.items():
        image_root, json_file = os.path.join(root, image_rel), os.path.join(root, json_rel)
        register_lazily(
            name,
            lambda j=json_file, i=image_root, n=name: load_coco_json(j, i, n),
            [image_root, json_file],
            hint="run datasets/prepare_ade20k_ins_seg.py",
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            **meta,
        )


register_ade20k_panoptic(datasets_root())
register_ade20k_instance(datasets_root())
