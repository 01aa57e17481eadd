#!/usr/bin/env python3
"""ADE20K-full (847 classes) from the ``ADE20K_2021_17_01`` release.

Reads ``index_ade20k.pkl`` (``folder``, ``filename``) and each image's ``*_seg.png`` (class =
R / 10 * 256 + G), resizes images whose shorter side exceeds 512 to 512 (labels with nearest
neighbour), maps classes to trainIds 0..846 and writes ``images_detectron2/{training,validation}``
and 16-bit ``annotations_detectron2/{training,validation}/*.tif`` (65535 = unlabeled).
"""
import os

import cv2
import numpy as np
from PIL import Image

from _prepare_common import parse_root
from segmentation_core.safe_pickle import safe_pickle_load
from maskformer_d2.data.datasets.categories import ade20k_full_categories

IGNORE = 65535
MAX_SHORT_SIDE = 512


def class_mask(seg_rgb):
    r = seg_rgb[..., 0].astype(np.int32)
    g = seg_rgb[..., 1].astype(np.int32)
    return (r // 10) * 256 + g


def convert_one(img, seg_rgb, lut):
    lab = class_mask(seg_rgb)
    h, w = img.shape[:2]
    if min(h, w) > MAX_SHORT_SIDE:
        scale = MAX_SHORT_SIDE / float(min(h, w))
        new_w, new_h = (MAX_SHORT_SIDE, round(h * scale)) if w <= h else (round(w * scale), MAX_SHORT_SIDE)
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    out = np.full(lab.shape, IGNORE, dtype=np.uint16)
    known = lab < len(lut)
    out[known] = lut[lab[known]]
    return img, out


def convert(root):
    base = os.path.join(root, "ADE20K_2021_17_01")
    index_file = os.path.join(base, "index_ade20k.pkl")
    if not os.path.isfile(index_file):
        raise FileNotFoundError(
            f"{index_file!r} does not exist. Unpack ADE20K_2021_17_01 under --root / "
            "DETECTRON2_DATASETS first."
        )
    # lists and NumPy arrays only: any other global is refused (UnsafePickleError), never run
    index = safe_pickle_load(index_file)
    cats = ade20k_full_categories()
    lut = np.full(max(c["id"] for c in cats) + 1, IGNORE, dtype=np.uint16)
    for c in cats:
        lut[c["id"]] = c["trainId"]
    for split in ("training", "validation"):
        os.makedirs(os.path.join(base, "images_detectron2", split), exist_ok=True)
        os.makedirs(os.path.join(base, "annotations_detectron2", split), exist_ok=True)
    n = 0
    for folder, file_name in zip(index["folder"], index["filename"]):
        split = "validation" if file_name.split("_")[1] == "val" else "training"
        # index folders are relative to the folder that holds ADE20K_2021_17_01
        img_path = os.path.join(root, folder, file_name)
        img = np.asarray(Image.open(img_path).convert("RGB"))
        seg = np.asarray(Image.open(img_path.replace(".jpg", "_seg.png")).convert("RGB"))
        img, lab = convert_one(img, seg, lut)
        Image.fromarray(img).save(os.path.join(base, "images_detectron2", split, file_name))
        Image.fromarray(lab).save(
            os.path.join(base, "annotations_detectron2", split, file_name.replace(".jpg", ".tif"))
        )
        n += 1
    print(f"{n} images -> {base}/{{images,annotations}}_detectron2")


if __name__ == "__main__":
    convert(parse_root(__doc__))
