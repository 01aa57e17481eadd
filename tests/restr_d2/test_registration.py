"""Dataset names, metadata and records of the shapes and REFER-layout registrations."""
import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

import segmentation_core.data.shapes  # noqa: F401  (registers shapes_*)
import restr_d2.data.datasets  # noqa: F401  (registers refcoco*, referit_*)
from segmentation_core.data.refer import load_refer_json
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from restr_d2.data.datasets import OneSentencePerRefSampler
from restr_d2.data.datasets.refcoco import register_refer_dataset

TEST_PREFIX = "testshapes"  # registered by conftest.shapes_root

SHAPES_NAMES = [f"shapes_{kind}_{split}" for kind in ("sem_seg", "panoptic", "instance", "refcoco_unc")
                for split in ("train", "val")]
REFER_NAMES = (
    [f"refcoco_unc_{s}" for s in ("train", "val", "testA", "testB")]
    + [f"refcoco+_unc_{s}" for s in ("train", "val", "testA", "testB")]
    + [f"refcocog_umd_{s}" for s in ("train", "val", "test")]
    + [f"refcocog_google_{s}" for s in ("train", "val")]
    + [f"referit_{s}" for s in ("train", "val", "test")]
)


def test_names_and_metadata_registered_at_import():
    registered = set(DatasetCatalog.list())
    assert set(SHAPES_NAMES + REFER_NAMES) <= registered
    sem = MetadataCatalog.get("shapes_sem_seg_train")
    assert sem.evaluator_type == "sem_seg" and sem.ignore_label == 255
    assert sem.stuff_classes == ["circle", "square", "triangle", "star", "sky", "grass", "water", "wall"]
    assert len(sem.stuff_colors) == 8
    pan = MetadataCatalog.get("shapes_panoptic_val")
    assert pan.evaluator_type == "coco_panoptic_seg" and pan.label_divisor == 1000
    assert pan.thing_classes == sem.stuff_classes[:4] and pan.stuff_classes == sem.stuff_classes
    assert pan.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2, 4: 3}
    assert pan.stuff_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2, 4: 3, 10: 4, 11: 5, 12: 6, 13: 7}
    for key in ("panoptic_root", "panoptic_json", "json_file", "image_root", "ignore_label"):
        assert getattr(pan, key) is not None
    assert pan.panoptic_json.endswith(os.path.join("shapes", "annotations", "panoptic_val.json"))
    assert MetadataCatalog.get("shapes_instance_train").evaluator_type == "coco"
    assert MetadataCatalog.get("shapes_refcoco_unc_val").evaluator_type == "referring"
    for name in REFER_NAMES:
        assert MetadataCatalog.get(name).evaluator_type == "referring"
    assert MetadataCatalog.get("refcocog_google_val").split_by == "google"
    assert MetadataCatalog.get("referit_test").refer_dir.endswith("referit")


def test_semantic_and_panoptic_records(shapes_root, shapes_dir):
    sem = DatasetCatalog.get(f"{TEST_PREFIX}_sem_seg_train")
    assert len(sem) == 8
    for r in sem:
        assert os.path.isfile(r["file_name"]) and os.path.isfile(r["sem_seg_file_name"])
        assert {"height", "width", "image_id"} <= r.keys()
    pan = DatasetCatalog.get(f"{TEST_PREFIX}_panoptic_val")
    assert len(pan) == 3
    for r in pan:
        rgb = np.asarray(Image.open(r["pan_seg_file_name"])).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        sem = np.asarray(Image.open(r["sem_seg_file_name"]))
        for s in r["segments_info"]:
            # contiguous ids, things first; the semantic PNG carries the same class
            assert s["isthing"] == (s["category_id"] < 4)
            assert (sem[ids == s["id"]] == s["category_id"]).all()
    meta = MetadataCatalog.get(f"{TEST_PREFIX}_panoptic_val")
    assert meta.panoptic_root == str(shapes_dir / "panoptic")


def test_instance_records_through_load_coco_json(shapes_root):
    recs = DatasetCatalog.get(f"{TEST_PREFIX}_instance_train")
    assert len(recs) == 8
    n = 0
    for r in recs:
        for a in r["annotations"]:
            assert a["bbox_mode"] == BoxMode.XYWH_ABS and 0 <= a["category_id"] < 4
            assert isinstance(a["segmentation"], (list, dict))
            n += 1
    assert n > 8
    assert MetadataCatalog.get(f"{TEST_PREFIX}_instance_train").thing_classes == [
        "circle", "square", "triangle", "star"]


def test_shapes_referring_records_follow_the_contract(shapes_root, shapes_dir):
    recs = DatasetCatalog.get(f"{TEST_PREFIX}_refcoco_unc_train")
    refs = pickle.load(open(shapes_dir / "refshapes" / "refs(unc).p", "rb"))
    train_refs = [r for r in refs if r["split"] == "train"]
    assert len(recs) == sum(len(r["sentences"]) for r in train_refs)
    keys = {"file_name", "height", "width", "image_id", "ref_id", "sent_id", "sentence",
            "category_id", "annotations"}
    pan = json.loads((shapes_dir / "annotations" / "panoptic_train.json").read_text())
    pan_files = {a["image_id"]: a["file_name"] for a in pan["annotations"]}
    for r in recs:
        assert keys <= r.keys() and isinstance(r["sentence"], str)
        (ann,) = r["annotations"]
        assert ann["category_id"] == r["category_id"] and ann["bbox_mode"] == BoxMode.XYWH_ABS
        segm = ann["segmentation"]
        if isinstance(segm, list):
            m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(segm, r["height"], r["width"])))
        else:
            m = mask_util.decode(segm)
        rgb = np.asarray(Image.open(shapes_dir / "panoptic" / pan_files[r["image_id"]])).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        seg_id = (r["category_id"] + 1) * 1000 + r["ref_id"] % 100
        np.testing.assert_array_equal(m.astype(bool), ids == seg_id)


def _write_fake_refcoco(folder, image_dir):
    """A two-image REFER folder with a polygon, an uncompressed-RLE and a compressed-RLE object."""
    os.makedirs(folder)
    os.makedirs(image_dir)
    images = [{"id": 7, "file_name": "COCO_train2014_000000000007.jpg", "height": 20, "width": 30},
              {"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 10, "width": 10}]
    m = np.zeros((20, 30), np.uint8)
    m[2:5, 3:9] = 1
    counts, prev, run = [], 0, 0
    for v in m.flatten(order="F"):  # uncompressed RLE: alternating runs starting with zeros
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    comp = mask_util.encode(np.asfortranarray(np.eye(10, dtype=np.uint8)))
    anns = [
        {"id": 100, "image_id": 7, "category_id": 5, "bbox": [10, 10, 5, 5], "area": 25, "iscrowd": 0,
         "segmentation": [[10, 10, 15, 10, 15, 15, 10, 15], [1, 1]]},
        {"id": 101, "image_id": 7, "category_id": 3, "bbox": [3, 2, 6, 3], "area": 18, "iscrowd": 0,
         "segmentation": {"size": [20, 30], "counts": counts}},
        {"id": 102, "image_id": 9, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 10, "iscrowd": 0,
         "segmentation": {"size": [10, 10], "counts": comp["counts"].decode()}},
    ]
    cats = [{"id": 3, "name": "car", "supercategory": "x"}, {"id": 5, "name": "dog", "supercategory": "x"}]
    json.dump({"images": images, "annotations": anns, "categories": cats},
              open(os.path.join(folder, "instances.json"), "w"))

    def sent(i, s):
        return {"sent_id": i, "sent": s, "raw": s, "tokens": s.split()}

    refs = [
        {"ref_id": 0, "ann_id": 100, "image_id": 7, "category_id": 5, "split": "testA",
         "sent_ids": [0, 1], "sentences": [sent(0, "dog on the left"), sent(1, "brown dog")]},
        {"ref_id": 1, "ann_id": 101, "image_id": 7, "category_id": 3, "split": "train",
         "sent_ids": [2], "sentences": [sent(2, "car")]},
        {"ref_id": 2, "ann_id": 102, "image_id": 9, "category_id": 3, "split": "train",
         "sent_ids": [3, 4, 5], "sentences": [sent(3, "diagonal"), sent(4, "thin car"), sent(5, "café")]},
    ]
    with open(os.path.join(folder, "refs(unc).p"), "wb") as f:
        pickle.dump(refs, f, protocol=2)
    return m


def test_refcoco_layout_loading_and_errors(tmp_path):
    folder, images = str(tmp_path / "refcoco"), str(tmp_path / "coco" / "train2014")
    m = _write_fake_refcoco(folder, images)
    register_refer_dataset("test_fake_refcoco_train", folder, "unc", "train", images)
    recs = DatasetCatalog.get("test_fake_refcoco_train")
    assert [r["sentence"] for r in recs] == ["car", "diagonal", "thin car", "café"]
    assert [r["sent_id"] for r in recs] == [2, 3, 4, 5] and recs[0]["ref_id"] == 1
    assert recs[0]["file_name"] == os.path.join(images, "COCO_train2014_000000000007.jpg")
    assert recs[0]["category_id"] == 0  # dataset id 3 -> contiguous 0
    np.testing.assert_array_equal(mask_util.decode(recs[0]["annotations"][0]["segmentation"]), m)
    np.testing.assert_array_equal(mask_util.decode(recs[1]["annotations"][0]["segmentation"]),
                                  np.eye(10, dtype=np.uint8))
    meta = MetadataCatalog.get("test_fake_refcoco_train")
    assert meta.thing_classes == ["car", "dog"] and meta.evaluator_type == "referring"

    test_a = load_refer_json(folder, "unc", "testA", images)
    assert len(test_a) == 2 and test_a[0]["category_id"] == 1
    assert test_a[0]["annotations"][0]["segmentation"] == [[10, 10, 15, 10, 15, 15, 10, 15]]
    with pytest.raises(ValueError, match=r"\['testA', 'train'\]"):
        load_refer_json(folder, "unc", "val", images)
    with pytest.raises(FileNotFoundError) as err:
        load_refer_json(folder, "google", "train", images)
    assert "refs(google).p" in str(err.value) and "DETECTRON2_DATASETS" in str(err.value)


def test_missing_real_dataset_error_names_path_and_env(tmp_path):
    register_refer_dataset("test_missing_refcoco_val", str(tmp_path / "refcoco"), "unc", "val",
                           str(tmp_path / "coco" / "train2014"))
    with pytest.raises(FileNotFoundError) as err:
        DatasetCatalog.get("test_missing_refcoco_val")
    msg = str(err.value)
    assert os.path.join(str(tmp_path), "refcoco", "refs(unc).p") in msg and "DETECTRON2_DATASETS" in msg


def test_one_sentence_per_ref_sampler():
    dicts = [{"image_id": 1, "ref_id": 0}, {"image_id": 1, "ref_id": 0}, {"image_id": 1, "ref_id": 1},
             {"image_id": 2, "ref_id": 2}, {"image_id": 2, "ref_id": 2}, {"image_id": 2, "ref_id": 2}]
    groups = OneSentencePerRefSampler.group_records(dicts)
    assert groups == [[0, 1], [2], [3, 4, 5]]
    sampler = OneSentencePerRefSampler(groups, seed=5)
    it = iter(sampler)
    seen = set()
    for _ in range(20):
        epoch = [next(it) for _ in range(len(sampler))]
        refs = sorted(dicts[i]["ref_id"] for i in epoch)
        assert refs == [0, 1, 2]  # every ref exactly once per epoch
        seen.update(epoch)
    assert seen == set(range(6))  # every sentence eventually
    again = iter(OneSentencePerRefSampler(groups, seed=5))
    first = iter(OneSentencePerRefSampler(groups, seed=5))
    assert [next(again) for _ in range(30)] == [next(first) for _ in range(30)]
    ordered = iter(OneSentencePerRefSampler(groups, shuffle=False, seed=0))
    assert [next(ordered) for _ in range(6)] == [0, 2, 3, 1, 2, 4]
    with pytest.raises(KeyError, match="ref_id"):
        OneSentencePerRefSampler.from_dataset_dicts([{"file_name": "a.jpg"}])
