"""COCO-Stuff-10k v1.0 semantic segmentation: ``coco_2017_{train,test}_stuff_10k_sem_seg``.

``coco/coco_stuff_10k/{images,annotations}_detectron2/{train,test}`` are made by
``datasets/prepare_coco_stuff_10k_v1.0_sem_seg.py``; label PNGs hold contiguous ids 0..170
(171 classes: 80 things + 91 stuff), 255 = unlabeled.
"""
import os

from detectron2.data.datasets import load_sem_seg

from .categories import COCO_STUFF_171_CATEGORIES
from .common import datasets_root, register_lazily


def coco_stuff_10k_metadata():
    return {
        "stuff_classes": [c["name"] for c in COCO_STUFF_171_CATEGORIES],
        "stuff_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(COCO_STUFF_171_CATEGORIES)
        },
    }


def register_coco_stuff_10k(root):
    root = os.path.join(root, "coco", "coco_stuff_10k")
    meta = coco_stuff_10k_metadata()
    for split in ("train", "test"):
        image_dir = os.path.join(root, "images_detectron2", split)
        gt_dir = os.path.join(root, "annotations_detectron2", split)
        register_lazily(
            f"coco_2017_{split}_stuff_10k_sem_seg",
            lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="png", image_ext="jpg"),
            [image_dir, gt_dir],
            hint="run datasets/prepare_coco_stuff_10k_v1.0_sem_seg.py",
            image_root=image_dir,
            sem_seg_root=gt_dir,
            evaluator_type="sem_seg",
            ignore_label=255,
            **meta,
        )


register_coco_stuff_10k(datasets_root())
