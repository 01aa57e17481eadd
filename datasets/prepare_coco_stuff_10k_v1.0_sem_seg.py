#!/usr/bin/env python3
"""COCO-Stuff-10k v1.0 (``coco/coco_stuff_10k/{images,annotations,imageLists}``) ->
``images_detectron2/{train,test}`` and ``annotations_detectron2/{train,test}`` PNGs with
contiguous ids 0..170 and 255 for unlabeled. The v1.0 ``.mat`` field ``S`` holds 1-based
indices into its 172-entry label list whose first entry is "unlabeled", so the contiguous id
is ``S - 2`` and ``S == 1`` is unlabeled."""
import os
import shutil

import numpy as np
from PIL import Image

from _prepare_common import parse_root, require_dir
from maskformer_d2.data.datasets.categories import COCO_STUFF_171_CATEGORIES


def load_label(mat_path):
    """The ``S`` array of a COCO-Stuff-10k .mat file, (H, W)."""
    try:
        from scipy.io import loadmat

        return np.asarray(loadmat(mat_path)["S"])
    except NotImplementedError:  # MATLAB v7.3 (HDF5) files need h5py
        try:
            import h5py
        except ImportError as e:
            raise ImportError(f"{mat_path} is a MATLAB v7.3 file; `pip install h5py` to read it") from e
        with h5py.File(mat_path, "r") as f:
            return np.asarray(f["S"]).T


def to_contiguous(label):
    label = np.asarray(label, dtype=np.int64)
    out = label - 2
    out[label <= 1] = 255
    if (out[out != 255] >= len(COCO_STUFF_171_CATEGORIES)).any():
        raise ValueError(f"label values above {len(COCO_STUFF_171_CATEGORIES) + 1}: not a v1.0 file?")
    return out.astype(np.uint8)


def convert(root):
    base = os.path.join(root, "coco", "coco_stuff_10k")
    for d in ("images", "annotations", "imageLists"):
        require_dir(os.path.join(base, d), "COCO-Stuff-10k v1.0")
    for split in ("test", "train"):
        with open(os.path.join(base, "imageLists", f"{split}.txt")) as f:
            names = [line.strip() for line in f if line.strip()]
        image_dir = os.path.join(base, "images_detectron2", split)
        label_dir = os.path.join(base, "annotations_detectron2", split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        for name in names:
            shutil.copyfile(os.path.join(base, "images", name + ".jpg"), os.path.join(image_dir, name + ".jpg"))
            label = load_label(os.path.join(base, "annotations", name + ".mat"))
            w, h = Image.open(os.path.join(image_dir, name + ".jpg")).size
            if label.shape != (h, w):
                raise ValueError(f"{name}: label shape {label.shape} != image size {(h, w)}")
            Image.fromarray(to_contiguous(label)).save(os.path.join(label_dir, name + ".png"))
        print(f"{split}: {len(names)} images -> {image_dir}")


if __name__ == "__main__":
    convert(parse_root(__doc__))
