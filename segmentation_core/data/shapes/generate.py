"""Write the ``shapes`` datasets to disk in every annotation format the models consume.

Layout of the output folder (``$DETECTRON2_DATASETS/shapes`` by default)::

    images/{split}_{i:06d}.png        RGB images, 128-192 px per side
    sem_seg/{split}_{i:06d}.png       uint8 contiguous class ids (things 0-3, stuff 4-7), 255 void
    panoptic/{split}_{i:06d}.png      COCO panoptic RGB ids (id = R + 256 G + 256^2 B), 0 void
    annotations/instances_{split}.json   COCO instances: polygons (unoccluded things) and
                                         compressed RLE (occluded things), things only
    annotations/panoptic_{split}.json    COCO panoptic JSON, categories with ``isthing``
    annotations/scenes_{split}.json      per-object attributes (shape, colour, size, centre,
                                         radius, stuff fractions) for the uniqueness checker
    refshapes/refs(unc).p             REFER-layout refs (all splits, ``split`` field)
    refshapes/instances.json          REFER-layout instances of all splits
    manifest.json                     parameters + size and sha256 of every file above
    COMPLETE                          written last

Every image has its own random stream ``default_rng([seed, split_index, image_index])``, so
the first k images of a split do not depend on how many images are generated.
"""
import hashlib
import json
import logging
import os
import pickle
import time
from dataclasses import asdict, dataclass
from typing import Dict, List

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util
from tqdm import tqdm

from ..panoptic_ids import id2rgb
from .categories import (
    CATEGORIES, DATASET_ID_TO_CONTIGUOUS, IGNORE_LABEL, LABEL_DIVISOR, NAME_TO_DATASET_ID,
    STUFF_NAMES, THING_CATEGORIES,
)
from .expressions import SceneObject, choose_sentences
from .scene import VOID, Scene, sample_scene

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SPLITS = ("train", "val")
REFER_DATASET = "refshapes"
REFER_SPLIT_BY = "unc"
MANIFEST = "manifest.json"
COMPLETE = "COMPLETE"


@dataclass(frozen=True)
class ShapesConfig:
    """Parameters of a generated dataset; a dataset on disk is valid only for equal ones."""

    num_train: int = 200
    num_val: int = 50
    seed: int = 0
    min_size: int = 128
    max_size: int = 192
    version: int = GENERATOR_VERSION

    def num_images(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val}[split]


def image_id_of(split: str, index: int) -> int:
    return SPLITS.index(split) * 1_000_000 + index + 1


def stem_of(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def _bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def _save_png(array: np.ndarray, path: str) -> None:
    # Fixed encoder settings: the bytes must be reproducible for the manifest and the tests.
    Image.fromarray(array).save(path, format="PNG", compress_level=6, optimize=False)


def _write_json(obj, path: str) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))


class _SplitWriter:
    """Accumulates the JSON annotations of one split while its images are written."""

    def __init__(self, out_dir: str, split: str):
        self.out_dir, self.split = out_dir, split
        self.images: List[dict] = []
        self.instances: List[dict] = []
        self.panoptic: List[dict] = []
        self.scenes: List[dict] = []
        self.refs: List[dict] = []

    def add(self, index: int, scene: Scene, rng: np.random.Generator) -> None:
        h, w = scene.height, scene.width
        image_id, stem = image_id_of(self.split, index), stem_of(self.split, index)
        image_name = f"{stem}.png"
        _save_png(scene.image, os.path.join(self.out_dir, "images", image_name))
        self.images.append({"id": image_id, "file_name": image_name, "height": h, "width": w})

        sem = np.full((h, w), IGNORE_LABEL, np.uint8)
        pan = np.zeros((h, w), np.int64)
        for i, name in enumerate(STUFF_NAMES):
            region = scene.stuff_map == i
            sem[region] = DATASET_ID_TO_CONTIGUOUS[NAME_TO_DATASET_ID[name]]
            pan[region] = NAME_TO_DATASET_ID[name] * LABEL_DIVISOR
        objects = []
        for k, t in enumerate(scene.things):
            cat_id = NAME_TO_DATASET_ID[t.shape]
            ann_id = image_id * 100 + k + 1
            sem[t.visible_mask] = DATASET_ID_TO_CONTIGUOUS[cat_id]
            pan[t.visible_mask] = cat_id * LABEL_DIVISOR + k + 1
            if t.occluded:
                rle = mask_util.encode(np.asfortranarray(t.visible_mask.astype(np.uint8)))
                segmentation = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            else:
                segmentation = [t.polygon]
            self.instances.append({
                "id": ann_id, "image_id": image_id, "category_id": cat_id,
                "segmentation": segmentation, "area": int(t.visible_mask.sum()),
                "bbox": _bbox(t.visible_mask), "iscrowd": 0,
            })
            objects.append({
                "ann_id": ann_id, "shape": t.shape, "color": t.color, "size": t.size,
                "cx": round(t.center[0], 3), "cy": round(t.center[1], 3),
                "radius": round(t.radius, 3),
                "stuff_fractions": {k_: round(v, 4) for k_, v in t.stuff_fractions.items()},
                "occluded": t.occluded,
            })
        segments = []
        for seg_id in np.unique(pan).tolist():
            if seg_id == 0:
                continue
            m = pan == seg_id
            segments.append({"id": int(seg_id), "category_id": int(seg_id // LABEL_DIVISOR),
                             "iscrowd": 0, "area": int(m.sum()), "bbox": _bbox(m)})
        _save_png(sem, os.path.join(self.out_dir, "sem_seg", image_name))
        _save_png(id2rgb(pan), os.path.join(self.out_dir, "panoptic", image_name))
        self.panoptic.append({"image_id": image_id, "file_name": image_name,
                              "segments_info": segments})
        self.scenes.append({"image_id": image_id, "file_name": image_name, "height": h,
                            "width": w, "objects": objects})

        scene_objects = [SceneObject.from_dict(o) for o in objects]
        for o in scene_objects:
            sentences = choose_sentences(o, scene_objects, rng)
            if not sentences:
                continue
            sent_ids = [o.obj_id * 10 + j for j in range(len(sentences))]
            self.refs.append({
                "ref_id": o.obj_id, "ann_id": o.obj_id, "image_id": image_id,
                "category_id": NAME_TO_DATASET_ID[o.shape], "split": self.split,
                "file_name": f"{stem}_{o.obj_id}.png", "sent_ids": sent_ids,
                "sentences": [{"sent_id": sid, "sent": s, "raw": s, "tokens": s.split()}
                              for sid, s in zip(sent_ids, sentences)],
            })

    def finish(self) -> None:
        ann = os.path.join(self.out_dir, "annotations")
        cats = [{"id": c["id"], "name": c["name"], "supercategory": "shape"} for c in THING_CATEGORIES]
        _write_json({"images": self.images, "annotations": self.instances, "categories": cats},
                    os.path.join(ann, f"instances_{self.split}.json"))
        pan_cats = [{"id": c["id"], "name": c["name"], "isthing": c["isthing"],
                     "color": c["color"], "supercategory": "shape" if c["isthing"] else "stuff"}
                    for c in CATEGORIES]
        _write_json({"images": self.images, "annotations": self.panoptic, "categories": pan_cats},
                    os.path.join(ann, f"panoptic_{self.split}.json"))
        _write_json({"images": self.scenes}, os.path.join(ann, f"scenes_{self.split}.json"))


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_files(root: str) -> List[str]:
    """Relative paths of all files under ``root`` except the manifest and the marker."""
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), root)
            if rel not in (MANIFEST, COMPLETE):
                out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def generate_shapes(out_dir: str, config: ShapesConfig = ShapesConfig(), progress: bool = True) -> Dict:
    """Generate the whole dataset into ``out_dir`` (created; must not hold a dataset yet).
    Returns the manifest."""
    start = time.perf_counter()
    for sub in ("images", "sem_seg", "panoptic", "annotations", REFER_DATASET):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    total = config.num_train + config.num_val
    logger.info("Generating shapes datasets (%d train / %d val images, seed %d) into %s",
                config.num_train, config.num_val, config.seed, out_dir)
    writers = {}
    with tqdm(total=total, desc="shapes", unit="img", disable=not progress) as bar:
        for s, split in enumerate(SPLITS):
            writer = writers[split] = _SplitWriter(out_dir, split)
            for i in range(config.num_images(split)):
                rng = np.random.default_rng([config.seed, s, i])
                writer.add(i, sample_scene(rng, config.min_size, config.max_size), rng)
                bar.update(1)
            writer.finish()
    # REFER layout: one refs pickle and one instances.json covering every split.
    refs = [r for w in writers.values() for r in w.refs]
    with open(os.path.join(out_dir, REFER_DATASET, f"refs({REFER_SPLIT_BY}).p"), "wb") as f:
        pickle.dump(refs, f, protocol=4)
    cats = [{"id": c["id"], "name": c["name"], "supercategory": "shape"} for c in THING_CATEGORIES]
    _write_json({"images": [im for w in writers.values() for im in w.images],
                 "annotations": [a for w in writers.values() for a in w.instances],
                 "categories": cats},
                os.path.join(out_dir, REFER_DATASET, "instances.json"))

    files = {rel: {"size": os.path.getsize(os.path.join(out_dir, rel)),
                   "sha256": file_digest(os.path.join(out_dir, rel))}
             for rel in list_files(out_dir)}
    manifest = {"config": asdict(config), "files": files}
    _write_json(manifest, os.path.join(out_dir, MANIFEST))
    with open(os.path.join(out_dir, COMPLETE), "w") as f:
        f.write(file_digest(os.path.join(out_dir, MANIFEST)) + "\n")
    logger.info("Generated %d images, %d refs, %d files in %.1f s", total, len(refs), len(files),
                time.perf_counter() - start)
    return manifest
