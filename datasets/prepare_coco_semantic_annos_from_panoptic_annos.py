#!/usr/bin/env python3
"""COCO panoptic -> semantic PNGs ``coco/panoptic_semseg_{train,val}2017`` with the contiguous
ids 0..132 of detectron2's 133 ``COCO_CATEGORIES`` and 255 for unlabeled pixels (what
``coco_2017_*_panoptic_with_sem_seg`` reads)."""
import json
import os

import numpy as np
from PIL import Image

from _prepare_common import parse_root, require_dir, rgb2id
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES


def panoptic_to_semantic(pan_rgb, segments, id_map):
    pan = rgb2id(pan_rgb)
    out = np.full(pan.shape, 255, dtype=np.uint8)
    for seg in segments:
        out[pan == seg["id"]] = id_map[seg["category_id"]]
    return out


def convert(root):
    base = os.path.join(root, "coco")
    id_map = {c["id"]: i for i, c in enumerate(COCO_CATEGORIES)}
    for split in ("val2017", "train2017"):
        json_file = os.path.join(base, "annotations", f"panoptic_{split}.json")
        pan_dir = os.path.join(base, f"panoptic_{split}")
        require_dir(pan_dir, "COCO panoptic PNGs")
        out_dir = os.path.join(base, f"panoptic_semseg_{split}")
        os.makedirs(out_dir, exist_ok=True)
        with open(json_file) as f:
            anns = json.load(f)["annotations"]
        for ann in anns:
            pan_rgb = np.asarray(Image.open(os.path.join(pan_dir, ann["file_name"])).convert("RGB"))
            sem = panoptic_to_semantic(pan_rgb, ann["segments_info"], id_map)
            Image.fromarray(sem).save(os.path.join(out_dir, ann["file_name"]))
        print(f"{split}: {len(anns)} images -> {out_dir}")


if __name__ == "__main__":
    convert(parse_root(__doc__))
