#!/usr/bin/env python3
"""ADE20K panoptic annotations from the SceneParsing semantic labels and the
``annotations_instance/`` PNGs (R = instance class 1..100, G = instance index, 0 = none).

Writes ``ADEChallengeData2016/ade20k_panoptic_{train,val}/*.png`` and
``ade20k_panoptic_{train,val}.json`` with category ids = 150-class ids (0-based). Stuff
segments are pasted first and instances on top (the two annotations overlap a little).
Segment id = (class + 1) * 1000 + k, unique within an image.
"""
import os

import numpy as np
from PIL import Image

from _prepare_common import id2rgb, mask_bbox, parse_root, require_dir, save_json
from maskformer_d2.data.datasets.categories import (
    ADE20K_150_COLORS,
    ADE20K_150_NAMES,
    ADE20K_150_THING_IDS,
)


def categories():
    things = set(ADE20K_150_THING_IDS)
    return [
        {"id": i, "name": n, "isthing": int(i in things), "color": list(ADE20K_150_COLORS[i])}
        for i, n in enumerate(ADE20K_150_NAMES)
    ]


def panoptic_of_image(sem, ins):
    """sem: (H, W) uint8 0..150; ins: (H, W, 3) uint8 -> (segment-id map, segments_info)."""
    things = set(ADE20K_150_THING_IDS)
    sem_cat = sem.astype(np.int64) - 1  # -1 = unlabeled
    ins_cls = ins[..., 0].astype(np.int64)
    ins_idx = ins[..., 1].astype(np.int64)
    pan = np.zeros(sem.shape, dtype=np.int64)
    segments = []
    next_k = {}

    def add(mask, cat):
        k = next_k.get(cat, 0)
        next_k[cat] = k + 1
        seg_id = (cat + 1) * 1000 + k
        pan[mask] = seg_id
        segments.append({"id": seg_id, "category_id": int(cat), "iscrowd": 0})

    for cat in np.unique(sem_cat):
        if cat < 0 or cat in things:
            continue
        add(sem_cat == cat, int(cat))
    for idx in np.unique(ins_idx):
        if idx == 0:
            continue
        mask = ins_idx == idx
        classes = np.unique(ins_cls[mask])
        if len(classes) != 1 or classes[0] == 0:
            raise ValueError(f"instance {idx} has instance classes {classes.tolist()}, expected one in 1..100")
        add(mask, ADE20K_150_THING_IDS[classes[0] - 1])
    # areas/boxes after pasting, so that they describe the final map
    kept = []
    for s in segments:
        mask = pan == s["id"]
        if mask.any():
            s["area"] = int(mask.sum())
            s["bbox"] = mask_bbox(mask)
            kept.append(s)
    return pan, kept


def convert(root):
    base = os.path.join(root, "ADEChallengeData2016")
    for name, split in (("train", "training"), ("val", "validation")):
        image_dir = os.path.join(base, "images", split)
        sem_dir = os.path.join(base, "annotations", split)
        ins_dir = os.path.join(base, "annotations_instance", split)
        for d in (image_dir, sem_dir, ins_dir):
            require_dir(d, "ADE20K panoptic preparation")
        out_dir = os.path.join(base, f"ade20k_panoptic_{name}")
        os.makedirs(out_dir, exist_ok=True)
        images, annotations = [], []
        for fname in sorted(f for f in os.listdir(image_dir) if f.endswith(".jpg")):
            stem = os.path.splitext(fname)[0]
            w, h = Image.open(os.path.join(image_dir, fname)).size
            sem = np.asarray(Image.open(os.path.join(sem_dir, stem + ".png")))
            ins = np.asarray(Image.open(os.path.join(ins_dir, stem + ".png")).convert("RGB"))
            pan, segments = panoptic_of_image(sem, ins)
            Image.fromarray(id2rgb(pan)).save(os.path.join(out_dir, stem + ".png"))
            images.append({"id": stem, "file_name": fname, "width": w, "height": h})
            annotations.append({"image_id": stem, "file_name": stem + ".png", "segments_info": segments})
        out_json = os.path.join(base, f"ade20k_panoptic_{name}.json")
        save_json({"images": images, "annotations": annotations, "categories": categories()}, out_json)
        print(f"{split}: {len(images)} images -> {out_json}")


if __name__ == "__main__":
    convert(parse_root(__doc__))
