"""Every annotation format of the shapes datasets, read back with the library that reads it."""
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from segmentation_core.data.shapes.categories import (
    CATEGORIES, DATASET_ID_TO_CONTIGUOUS, IGNORE_LABEL, THING_CATEGORIES,
)

SPLITS = ("train", "val")


def _panoptic_ids(path):
    rgb = np.asarray(Image.open(path)).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


@pytest.mark.parametrize("split", SPLITS)
def test_instances_json_with_pycocotools(shapes_dir, split):
    coco = COCO(str(shapes_dir / "annotations" / f"instances_{split}.json"))
    pan = json.loads((shapes_dir / "annotations" / f"panoptic_{split}.json").read_text())
    pan_by_image = {a["image_id"]: a for a in pan["annotations"]}
    assert sorted(coco.getCatIds()) == [c["id"] for c in THING_CATEGORIES]
    kinds = set()
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann["image_id"])[0]
        kinds.add("polygon" if isinstance(ann["segmentation"], list) else "rle")
        m = coco.annToMask(ann).astype(bool)
        assert m.shape == (img["height"], img["width"])
        assert m.sum() == ann["area"] > 0
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        # the same object in the panoptic PNG has exactly these pixels
        ids = _panoptic_ids(shapes_dir / "panoptic" / pan_by_image[ann["image_id"]]["file_name"])
        seg_id = ann["category_id"] * 1000 + ann["id"] % 100
        np.testing.assert_array_equal(ids == seg_id, m)
    if split == "train":
        assert kinds == {"polygon", "rle"}, "the tiny set should exercise both encodings"


@pytest.mark.parametrize("split", SPLITS)
def test_panoptic_png_matches_segments_info_and_semantic_png(shapes_dir, split):
    pan = json.loads((shapes_dir / "annotations" / f"panoptic_{split}.json").read_text())
    cats = {c["id"]: c for c in pan["categories"]}
    assert {c["id"]: c["isthing"] for c in CATEGORIES} == {i: c["isthing"] for i, c in cats.items()}
    images = {im["id"]: im for im in pan["images"]}
    saw_void = False
    for ann in pan["annotations"]:
        im = images[ann["image_id"]]
        ids = _panoptic_ids(shapes_dir / "panoptic" / ann["file_name"])
        sem = np.asarray(Image.open(shapes_dir / "sem_seg" / ann["file_name"]))
        assert ids.shape == sem.shape == (im["height"], im["width"])
        assert sem.dtype == np.uint8
        present = set(np.unique(ids).tolist()) - {0}
        assert present == {s["id"] for s in ann["segments_info"]}
        stuff_seen = [s["category_id"] for s in ann["segments_info"] if not cats[s["category_id"]]["isthing"]]
        assert len(stuff_seen) == len(set(stuff_seen)), "one segment per stuff class"
        expected_sem = np.full(sem.shape, IGNORE_LABEL, np.uint8)
        for s in ann["segments_info"]:
            m = ids == s["id"]
            assert s["area"] == m.sum() > 0 and s["iscrowd"] == 0
            assert s["category_id"] in cats
            expected_sem[m] = DATASET_ID_TO_CONTIGUOUS[s["category_id"]]
        np.testing.assert_array_equal(sem, expected_sem)
        assert set(np.unique(sem).tolist()) <= set(range(len(CATEGORIES))) | {IGNORE_LABEL}
        saw_void |= bool((ids == 0).any())
    if split == "train":
        assert saw_void, "the tiny train set should contain ignored clutter"


def test_image_files_are_rgb_of_recorded_size(shapes_dir):
    coco = json.loads((shapes_dir / "annotations" / "instances_train.json").read_text())
    sizes = set()
    for im in coco["images"]:
        arr = np.asarray(Image.open(shapes_dir / "images" / im["file_name"]))
        assert arr.shape == (im["height"], im["width"], 3) and arr.dtype == np.uint8
        assert 128 <= im["height"] <= 192 and 128 <= im["width"] <= 192
        sizes.add((im["height"], im["width"]))
    assert any(h != w for h, w in sizes)


def test_unoccluded_polygons_decode_to_the_drawn_object(shapes_dir):
    """Polygons are the rasteriser's input: they decode to exactly the annotated area."""
    coco = json.loads((shapes_dir / "annotations" / "instances_train.json").read_text())
    images = {im["id"]: im for im in coco["images"]}
    n = 0
    for ann in coco["annotations"]:
        if isinstance(ann["segmentation"], list):
            im = images[ann["image_id"]]
            rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], im["height"], im["width"]))
            assert int(mask_util.area(rle)) == ann["area"]
            n += 1
    assert n > 0
