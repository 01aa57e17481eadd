"""Mapillary Vistas v1.2 semantic and panoptic segmentation (65 classes).

* ``mapillary_vistas_sem_seg_{train,val}``: ``{training,validation}/{images,labels}``; label
  PNGs hold 0..64, and 65 for "unlabeled", which is the ignore label.
* ``mapillary_vistas_panoptic_{train,val}``: the panoptic PNGs and
  ``panoptic/panoptic_2018.json`` shipped with the dataset (category ids 1..65), plus the
  semantic labels above.
No preparation is needed: this is the layout of the official archive.
"""
import os

from detectron2.data.datasets import load_sem_seg

from .categories import MAPILLARY_VISTAS_CATEGORIES
from .common import datasets_root, load_panoptic_json_with_sem_seg, register_lazily

MAPILLARY_IGNORE_LABEL = 65
_SPLITS = (("train", "training"), ("val", "validation"))


def mapillary_vistas_sem_seg_metadata():
    return {
        "stuff_classes": [c[0] for c in MAPILLARY_VISTAS_CATEGORIES],
        "stuff_colors": [list(c[3]) for c in MAPILLARY_VISTAS_CATEGORIES],
    }


def mapillary_vistas_panoptic_metadata():
    # As the official registration: thing_* and stuff_* both list all 65 classes (the
    # visualizer needs names for both); dataset id = index + 1.
    names = [c[0] for c in MAPILLARY_VISTAS_CATEGORIES]
    colors = [list(c[3]) for c in MAPILLARY_VISTAS_CATEGORIES]
    return {
        "thing_classes": names,
        "thing_colors": colors,
        "stuff_classes": names,
        "stuff_colors": colors,
        "thing_dataset_id_to_contiguous_id": {
            i + 1: i for i, c in enumerate(MAPILLARY_VISTAS_CATEGORIES) if c[2]
        },
        "stuff_dataset_id_to_contiguous_id": {
            i + 1: i for i in range(len(MAPILLARY_VISTAS_CATEGORIES))
        },
    }


def register_mapillary_vistas(root):
    root = os.path.join(root, "mapillary_vistas")
    sem_meta = mapillary_vistas_sem_seg_metadata()
    pan_meta = mapillary_vistas_panoptic_metadata()
    for split, dirname in _SPLITS:
        image_dir = os.path.join(root, dirname, "images")
        gt_dir = os.path.join(root, dirname, "labels")
        register_lazily(
            f"mapillary_vistas_sem_seg_{split}",
            lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="png", image_ext="jpg"),
            [image_dir, gt_dir],
            hint="unpack the Mapillary Vistas v1.2 archive into mapillary_vistas/",
            image_root=image_dir,
            sem_seg_root=gt_dir,
            evaluator_type="sem_seg",
            ignore_label=MAPILLARY_IGNORE_LABEL,
            **sem_meta,
        )

        panoptic_root = os.path.join(root, dirname, "panoptic")
        panoptic_json = os.path.join(panoptic_root, "panoptic_2018.json")
        register_lazily(
            f"mapillary_vistas_panoptic_{split}",
            lambda j=panoptic_json, i=image_dir, p=panoptic_root, s=gt_dir: (
                load_panoptic_json_with_sem_seg(j, i, p, s, pan_meta)
            ),
            [image_dir, panoptic_root, panoptic_json, gt_dir],
            hint="unpack the Mapillary Vistas v1.2 archive into mapillary_vistas/",
            panoptic_root=panoptic_root,
            image_root=image_dir,
            panoptic_json=panoptic_json,
            sem_seg_root=gt_dir,
            json_file=None,
            evaluator_type="mapillary_vistas_panoptic_seg",
            ignore_label=MAPILLARY_IGNORE_LABEL,
            label_divisor=1000,
            **pan_meta,
        )


register_mapillary_vistas(datasets_root())
