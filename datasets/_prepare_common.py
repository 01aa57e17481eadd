"""Helpers of the ``prepare_*.py`` scripts (not a dataset registration)."""
import argparse
import json
import os

import numpy as np

from segmentation_core.data.panoptic_ids import id2rgb, rgb2id  # noqa: F401  (used by the prepare_* scripts)


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


def mask_bbox(mask):
    """COCO xywh box of a boolean mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def save_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f)
