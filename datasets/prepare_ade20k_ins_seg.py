#!/usr/bin/env python3
"""ADE20K instance annotations in COCO format from ``annotations_instance/`` PNGs.

Writes ``ADEChallengeData2016/ade20k_instance_{train,val}.json``; category ids are the
150-class ids of the 100 instance classes, masks are RLE (``iscrowd`` 0).
"""
import os

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from _prepare_common import mask_bbox, parse_root, require_dir, save_json
from maskformer_d2.data.datasets.categories import ADE20K_150_THING_IDS, ADE20K_INSTANCE_CATEGORIES


def convert(root):
    base = os.path.join(root, "ADEChallengeData2016")
    for name, split in (("train", "training"), ("val", "validation")):
        image_dir = os.path.join(base, "images", split)
        ins_dir = os.path.join(base, "annotations_instance", split)
        for d in (image_dir, ins_dir):
            require_dir(d, "ADE20K instance preparation")
        images, annotations = [], []
        for fname in sorted(f for f in os.listdir(image_dir) if f.endswith(".jpg")):
            stem = os.path.splitext(fname)[0]
            w, h = Image.open(os.path.join(image_dir, fname)).size
            images.append({"id": stem, "file_name": fname, "width": w, "height": h})
            ins = np.asarray(Image.open(os.path.join(ins_dir, stem + ".png")).convert("RGB"))
            for idx in np.unique(ins[..., 1]):
                if idx == 0:
                    continue
                mask = ins[..., 1] == idx
                classes = np.unique(ins[..., 0][mask])
                if len(classes) != 1 or classes[0] == 0:
                    raise ValueError(f"{stem}: instance {idx} has classes {classes.tolist()}")
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": stem,
                        "category_id": int(ADE20K_150_THING_IDS[classes[0] - 1]),
                        "iscrowd": 0,
                        "bbox": mask_bbox(mask),
                        "area": int(mask.sum()),
                        "segmentation": rle,
                    }
                )
        out_json = os.path.join(base, f"ade20k_instance_{name}.json")
        save_json(
            {"images": images, "annotations": annotations, "categories": ADE20K_INSTANCE_CATEGORIES},
            out_json,
        )
        print(f"{split}: {len(images)} images, {len(annotations)} instances -> {out_json}")


if __name__ == "__main__":
    convert(parse_root(__doc__))
