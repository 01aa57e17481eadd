"""COCO panoptic with semantic labels: ``coco_2017_{train,val}_panoptic_with_sem_seg``.

Records carry the panoptic PNG and a semantic PNG (``coco/panoptic_semseg_{train,val}2017``,
made by ``datasets/prepare_coco_semantic_annos_from_panoptic_annos.py``) whose values are the
contiguous ids 0..132 of all 133 classes (things first in COCO id order, as detectron2's
``COCO_CATEGORIES``), 255 = unlabeled.
"""
import os

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .common import datasets_root, load_panoptic_json_with_sem_seg, register_lazily

_SPLITS = {
    # prefix: (images, panoptic PNGs, panoptic json, semantic PNGs, instance json)
    "coco_2017_train_panoptic": (
        "coco/train2017",
        "coco/panoptic_train2017",
        "coco/annotations/panoptic_train2017.json",
        "coco/panoptic_semseg_train2017",
        "coco/annotations/instances_train2017.json",
    ),
    "coco_2017_val_panoptic": (
        "coco/val2017",
        "coco/panoptic_val2017",
        "coco/annotations/panoptic_val2017.json",
        "coco/panoptic_semseg_val2017",
        "coco/annotations/instances_val2017.json",
    ),
}


def coco_panoptic_metadata():
    return {
        "thing_classes": [c["name"] for c in COCO_CATEGORIES if c["isthing"] == 1],
        "thing_colors": [c["color"] for c in COCO_CATEGORIES if c["isthing"] == 1],
        "stuff_classes": [c["name"] for c in COCO_CATEGORIES],
        "stuff_colors": [c["color"] for c in COCO_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(COCO_CATEGORIES) if c["isthing"] == 1
        },
        # all 133 classes, so that the semantic evaluator runs on this dataset as well
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(COCO_CATEGORIES)},
    }


def register_coco_panoptic_annos_sem_seg(root):
    meta = coco_panoptic_metadata()
    for prefix, rel in _SPLITS.items():
        image_root, panoptic_root, panoptic_json, sem_seg_root, instances_json = (
            os.path.join(root, p) for p in rel
        )
        register_lazily(
            prefix + "_with_sem_seg",
            lambda j=panoptic_json, i=image_root, p=panoptic_root, s=sem_seg_root: (
                load_panoptic_json_with_sem_seg(j, i, p, s, meta)
            ),
            [image_root, panoptic_root, panoptic_json, sem_seg_root],
            hint="run datasets/prepare_coco_semantic_annos_from_panoptic_annos.py for the "
            "semantic PNGs",
            sem_seg_root=sem_seg_root,
            panoptic_root=panoptic_root,
            image_root=image_root,
            panoptic_json=panoptic_json,
            json_file=instances_json,
            evaluator_type="coco_panoptic_seg",
            ignore_label=255,
            label_divisor=1000,
            **meta,
        )


register_coco_panoptic_annos_sem_seg(datasets_root())
