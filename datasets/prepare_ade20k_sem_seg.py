#!/usr/bin/env python3
"""ADE20K SceneParsing: ``annotations/`` (0 = unlabeled, 1..150) -> ``annotations_detectron2/``
(0..149, 255 = unlabeled), the labels ``ade20k_sem_seg_*`` reads."""
import os

import numpy as np
from PIL import Image

from _prepare_common import parse_root, require_dir


def convert(root):
    base = os.path.join(root, "ADEChallengeData2016")
    for split in ("training", "validation"):
        src = os.path.join(base, "annotations", split)
        require_dir(src, "ADE20K SceneParsing annotations")
        dst = os.path.join(base, "annotations_detectron2", split)
        os.makedirs(dst, exist_ok=True)
        names = sorted(n for n in os.listdir(src) if n.endswith(".png"))
        for name in names:
            label = np.asarray(Image.open(os.path.join(src, name)))
            if label.dtype != np.uint8:
                raise ValueError(f"{name}: expected an 8-bit label PNG, got {label.dtype}")
            # uint8 arithmetic: 0 (unlabeled) wraps around to 255, the ignore label
            Image.fromarray(label - np.uint8(1)).save(os.path.join(dst, name))
        print(f"{split}: {len(names)} labels -> {dst}")


if __name__ == "__main__":
    convert(parse_root(__doc__))
