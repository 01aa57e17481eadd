"""ADE20K semantic segmentation: SceneParsing-150 and ADE20K-full (847 classes).

* ``ade20k_sem_seg_{train,val}``: registered by detectron2 itself; here it gets the official
  ``stuff_colors`` and the missing-folder error.
* ``ade20k_full_sem_seg_{train,val}``: ``ADE20K_2021_17_01/{images,annotations}_detectron2/``
  made by ``datasets/prepare_ade20k_full_sem_seg.py``; labels are 16-bit TIFFs holding the
  trainId (0..846) and 65535 for unlabeled pixels.
"""
import os

from detectron2.data import MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from .categories import ADE20K_150_COLORS, ade20k_full_categories
from .common import datasets_root, register_lazily, wrap_builtin_loader

ADE20K_FULL_IGNORE_LABEL = 65535


def register_ade20k_150_extras():
    for name in ("ade20k_sem_seg_train", "ade20k_sem_seg_val"):
        meta = MetadataCatalog.get(name)
        meta.set(stuff_colors=[list(c) for c in ADE20K_150_COLORS])
        wrap_builtin_loader(
            name,
            [meta.image_root, meta.sem_seg_root],
            hint="run datasets/prepare_ade20k_sem_seg.py to make annotations_detectron2/",
        )


def ade20k_full_metadata():
    cats = ade20k_full_categories()
    return {
        "stuff_classes": [c["name"] for c in cats],
        "stuff_dataset_id_to_contiguous_id": {c["id"]: c["trainId"] for c in cats},
    }


def register_ade20k_full(root):
    root = os.path.join(root, "ADE20K_2021_17_01")
    meta = ade20k_full_metadata()
    for split, dirname in (("train", "training"), ("val", "validation")):
        image_dir = os.path.join(root, "images_detectron2", dirname)
        gt_dir = os.path.join(root, "annotations_detectron2", dirname)
        register_lazily(
            f"ade20k_full_sem_seg_{split}",
            lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="tif", image_ext="jpg"),
            [image_dir, gt_dir],
            hint="run datasets/prepare_ade20k_full_sem_seg.py",
            image_root=image_dir,
            sem_seg_root=gt_dir,
            evaluator_type="sem_seg",
            ignore_label=ADE20K_FULL_IGNORE_LABEL,
            **meta,
        )


register_ade20k_150_extras()
register_ade20k_full(datasets_root())
