"""Tiny datasets in the real on-disk formats, written by the tests themselves."""
import json
import os

import numpy as np
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from segmentation_core.data.panoptic_ids import id2rgb  # noqa: F401  (the tests write panoptic PNGs with it)


def save_jpg(path, h, w, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=95)


def save_png(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def reregister(names, register_fn, root):
    """Drop ``names`` from the catalogs and register them again under ``root``."""
    for n in names:
        if n in DatasetCatalog.list():
            DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)
    register_fn(root)


def two_class_semantic(h, w, ignore=255):
    """Label map: left half class 1, right half class 2, top row ignored."""
    lab = np.full((h, w), 1, np.uint8)
    lab[:, w // 2:] = 2
    lab[0, :] = ignore
    return lab
