"""Helpers of the ``prepare_*.py`` scripts (not a dataset registration)."""
import argparse
import json
import os
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # the scripts import the class lists of maskformer_d2
    sys.path.insert(0, REPO_ROOT)


def parse_root(description, argv=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--root",
        default=os.getenv("DETECTRON2_DATASETS", "datasets"),
        help="folder holding the datasets (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    return parser.parse_args(argv).root


def require_dir(path, what):
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{what}: folder {path!r} does not exist. Pass --root or set DETECTRON2_DATASETS to "
            "the folder that holds the unpacked dataset."
        )


def id2rgb(segment_ids):
    """(H, W) int segment ids -> (H, W, 3) uint8 COCO panoptic colours (R + 256 G + 256^2 B)."""
    ids = np.asarray(segment_ids, dtype=np.int64)
    rgb = np.zeros(ids.shape + (3,), dtype=np.uint8)
    for c in range(3):
        rgb[..., c] = ids % 256
        ids = ids // 256
    return rgb


def rgb2id(rgb):
    rgb = np.asarray(rgb, dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def mask_bbox(mask):
    """COCO xywh box of a boolean mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def save_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f)
