"""Registrations of the real datasets, on tiny fixtures in their on-disk formats."""
import os
import runpy
import sys

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

import maskformer_d2  # noqa: F401
from maskformer_d2.data.datasets import (
    register_ade20k_panoptic,
    register_ade20k_semantic,
    register_coco_panoptic_annos_semseg,
    register_coco_stuff_10k,
    register_mapillary_vistas,
)
from maskformer_d2.data.datasets.categories import ADE20K_150_THING_IDS

from tests.helpers.dataset_files import id2rgb, reregister, save_jpg, save_png, write_json
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)


def _prepare(script, root):
    if os.path.join(REPO, "datasets") not in sys.path:  # as when run as a script
        sys.path.insert(0, os.path.join(REPO, "datasets"))
    mod = runpy.run_path(os.path.join(REPO, "datasets", script))
    mod["convert"](str(root))


def test_missing_folder_error_names_path_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    reregister(["ade20k_full_sem_seg_val", "ade20k_full_sem_seg_train"], register_ade20k_semantic.register_ade20k_full, str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("ade20k_full_sem_seg_val")
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "ADE20K_2021_17_01", "images_detectron2", "validation") in msg
    assert "DETECTRON2_DATASETS" in msg and "prepare_ade20k_full_sem_seg.py" in msg
    with pytest.raises(FileNotFoundError, match="DETECTRON2_DATASETS"):
        DatasetCatalog.get("cityscapes_fine_sem_seg_val")


def test_official_names_and_metadata():
    names = set(DatasetCatalog.list())
    for n in [
        "ade20k_sem_seg_train", "ade20k_full_sem_seg_val", "ade20k_panoptic_val", "ade20k_instance_val",
        "coco_2017_val_panoptic_with_sem_seg", "coco_2017_test_stuff_10k_sem_seg",
        "mapillary_vistas_sem_seg_val", "mapillary_vistas_panoptic_val", "cityscapes_fine_sem_seg_val",
    ]:
        assert n in names, n
    ade = MetadataCatalog.get("ade20k_sem_seg_val")
    assert len(ade.stuff_colors) == 150 and ade.stuff_colors[0] == [120, 120, 120]
    full = MetadataCatalog.get("ade20k_full_sem_seg_val")
    assert len(full.stuff_classes) == 847 and full.ignore_label == 65535 and full.evaluator_type == "sem_seg"
    pan = MetadataCatalog.get("ade20k_panoptic_val")
    assert len(pan.stuff_classes) == 150 and len(pan.thing_classes) == 100
    assert pan.evaluator_type == "ade20k_panoptic_seg" and pan.label_divisor == 1000
    coco = MetadataCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert len(coco.stuff_classes) == 133 and len(coco.thing_classes) == 80
    assert coco.thing_dataset_id_to_contiguous_id[90] == 79 and coco.stuff_dataset_id_to_contiguous_id[200] == 132
    stuff = MetadataCatalog.get("coco_2017_train_stuff_10k_sem_seg")
    assert len(stuff.stuff_classes) == 171 and stuff.stuff_classes[80] == "banner"
    mv = MetadataCatalog.get("mapillary_vistas_panoptic_val")
    assert mv.ignore_label == 65 and len(mv.stuff_classes) == 65 and len(mv.thing_dataset_id_to_contiguous_id) == 37
    assert MetadataCatalog.get("mapillary_vistas_sem_seg_val").stuff_classes[0] == "Bird"


def test_ade20k_150_full_and_coco_stuff(tmp_path):
    # ADE20K-150: raw labels 0..150 -> annotations_detectron2 via the prepare script
    ade = tmp_path / "ADEChallengeData2016"
    lab = np.array([[0, 1, 150], [3, 3, 3]], np.uint8)
    for split in ("training", "validation"):
        save_jpg(str(ade / "images" / split / "ADE_x_1.jpg"), 2, 3)
        save_png(str(ade / "annotations" / split / "ADE_x_1.png"), lab)
    _prepare("prepare_ade20k_sem_seg.py", tmp_path)
    out = np.asarray(Image.open(ade / "annotations_detectron2" / "validation" / "ADE_x_1.png"))
    np.testing.assert_array_equal(out, [[255, 0, 149], [2, 2, 2]])

    # ADE20K-full: 16-bit TIFF labels with 65535 = ignore
    full = tmp_path / "ADE20K_2021_17_01"
    save_jpg(str(full / "images_detectron2" / "validation" / "ADE_val_1.jpg"), 4, 5)
    tif = np.full((4, 5), 65535, np.uint16)
    tif[1:, :] = 846
    os.makedirs(full / "annotations_detectron2" / "validation")
    Image.fromarray(tif).save(full / "annotations_detectron2" / "validation" / "ADE_val_1.tif")
    reregister(["ade20k_full_sem_seg_train", "ade20k_full_sem_seg_val"], register_ade20k_semantic.register_ade20k_full, str(tmp_path))
    (rec,) = DatasetCatalog.get("ade20k_full_sem_seg_val")
    assert rec["sem_seg_file_name"].endswith(".tif")
    from detectron2.data import detection_utils as utils

    gt = utils.read_image(rec["sem_seg_file_name"])
    assert gt.dtype == np.uint16 and gt.max() == 65535 and gt[1, 0] == 846

    # COCO-Stuff-10k
    c10 = tmp_path / "coco" / "coco_stuff_10k"
    save_jpg(str(c10 / "images_detectron2" / "test" / "COCO_1.jpg"), 3, 3)
    save_png(str(c10 / "annotations_detectron2" / "test" / "COCO_1.png"), np.full((3, 3), 170, np.uint8))
    reregister(["coco_2017_train_stuff_10k_sem_seg", "coco_2017_test_stuff_10k_sem_seg"], register_coco_stuff_10k.register_coco_stuff_10k, str(tmp_path))
    (rec,) = DatasetCatalog.get("coco_2017_test_stuff_10k_sem_seg")
    assert rec["file_name"].endswith("COCO_1.jpg") and rec["sem_seg_file_name"].endswith("COCO_1.png")


def test_ade20k_panoptic_and_instance_from_prepare_scripts(tmp_path):
    ade = tmp_path / "ADEChallengeData2016"
    h, w = 6, 8
    sem = np.zeros((h, w), np.uint8)
    sem[:3] = 1  # wall (stuff, 150-id 0)
    sem[3:] = 3  # floor (stuff, id 2)
    sem[4:, :2] = 8  # bed (thing, id 7) - overlaps the instance below
    ins = np.zeros((h, w, 3), np.uint8)
    ins[4:, :2] = [1, 1, 0]  # instance class 1 = bed, instance 1
    ins[0:2, 5:7] = [4, 2, 0]  # instance class 4 = person (id 12), instance 2
    for split in ("training", "validation"):
        save_jpg(str(ade / "images" / split / "ADE_x_1.jpg"), h, w)
        save_png(str(ade / "annotations" / split / "ADE_x_1.png"), sem)
        save_png(str(ade / "annotations_instance" / split / "ADE_x_1.png"), ins)
    for script in ("prepare_ade20k_sem_seg.py", "prepare_ade20k_pan_seg.py", "prepare_ade20k_ins_seg.py"):
        _prepare(script, tmp_path)
    names = ["ade20k_panoptic_train", "ade20k_panoptic_val", "ade20k_instance_train", "ade20k_instance_val"]
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)
    register_ade20k_panoptic.register_ade20k_panoptic(str(tmp_path))
    register_ade20k_panoptic.register_ade20k_instance(str(tmp_path))

    (rec,) = DatasetCatalog.get("ade20k_panoptic_val")
    cats = sorted((s["category_id"], s["isthing"], s["area"]) for s in rec["segments_info"])
    assert cats == [(0, False, 20), (2, False, 20), (7, True, 4), (12, True, 4)]
    pan = np.asarray(Image.open(rec["pan_seg_file_name"]).convert("RGB")).astype(np.int64)
    ids = pan[..., 0] + 256 * pan[..., 1] + 65536 * pan[..., 2]
    bed = [s["id"] for s in rec["segments_info"] if s["category_id"] == 7][0]
    assert (ids == bed).sum() == 4 and (ids[4:, :2] == bed).all()

    (irec,) = DatasetCatalog.get("ade20k_instance_val")
    classes = sorted(a["category_id"] for a in irec["annotations"])
    # contiguous ids among the 100 instance classes: bed -> 0, person -> 3
    assert classes == [0, 3]
    assert ADE20K_150_THING_IDS[3] == 12
    assert MetadataCatalog.get("ade20k_instance_val").thing_classes[0] == "bed"


def _write_panoptic(base_img, base_pan, base_sem, json_path, sem_values, segments, ids, image_id, cats=None):
    h, w = ids.shape
    save_jpg(base_img, h, w)
    save_png(base_pan, id2rgb(ids))
    if sem_values is not None:
        save_png(base_sem, sem_values)
    ann = {"image_id": image_id, "file_name": os.path.basename(base_pan), "segments_info": segments}
    write_json(json_path, {"images": [{"id": image_id, "file_name": os.path.basename(base_img), "height": h, "width": w}],
                           "annotations": [ann], "categories": cats or []})


def test_coco_panoptic_with_sem_seg_and_prepare(tmp_path):
    ids = np.zeros((4, 4), np.int64)
    ids[:2] = 5  # person (id 1)
    ids[2:] = 9  # wall-other-merged (id 199)
    segs = [{"id": 5, "category_id": 1, "iscrowd": 0, "area": 8}, {"id": 9, "category_id": 199, "iscrowd": 0, "area": 8}]
    coco = tmp_path / "coco"
    for split in ("train2017", "val2017"):
        _write_panoptic(str(coco / split / "000000000001.jpg"), str(coco / f"panoptic_{split}" / "000000000001.png"),
                        None, str(coco / "annotations" / f"panoptic_{split}.json"), None, segs, ids, 1)
    _prepare("prepare_coco_semantic_annos_from_panoptic_annos.py", tmp_path)
    sem = np.asarray(Image.open(coco / "panoptic_semseg_val2017" / "000000000001.png"))
    assert sem[0, 0] == 0 and sem[3, 3] == 131
    reregister(["coco_2017_train_panoptic_with_sem_seg", "coco_2017_val_panoptic_with_sem_seg"],
               register_coco_panoptic_annos_semseg.register_coco_panoptic_annos_sem_seg, str(tmp_path))
    (rec,) = DatasetCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert rec["image_id"] == 1 and rec["height"] == 4
    assert [(s["category_id"], s["isthing"]) for s in rec["segments_info"]] == [(0, True), (131, False)]
    assert MetadataCatalog.get("coco_2017_val_panoptic_with_sem_seg").json_file.endswith("instances_val2017.json")


def test_mapillary_semantic_and_panoptic(tmp_path):
    mv = tmp_path / "mapillary_vistas"
    ids = np.zeros((3, 5), np.int64)
    ids[:, :2] = 1000  # Car (id 56 -> contiguous 55)
    ids[:, 2:] = 2000  # Road (id 14 -> 13)
    lab = np.full((3, 5), 13, np.uint8)
    lab[:, :2] = 55
    lab[0, 4] = 65  # unlabeled
    segs = [{"id": 1000, "category_id": 56, "iscrowd": 0, "area": 6}, {"id": 2000, "category_id": 14, "iscrowd": 0, "area": 9}]
    for d in ("training", "validation"):
        _write_panoptic(str(mv / d / "images" / "a.jpg"), str(mv / d / "panoptic" / "a.png"), str(mv / d / "labels" / "a.png"),
                        str(mv / d / "panoptic" / "panoptic_2018.json"), lab, segs, ids, "a")
    reregister(["mapillary_vistas_sem_seg_train", "mapillary_vistas_sem_seg_val", "mapillary_vistas_panoptic_train",
                "mapillary_vistas_panoptic_val"], register_mapillary_vistas.register_mapillary_vistas, str(tmp_path))
    (srec,) = DatasetCatalog.get("mapillary_vistas_sem_seg_val")
    assert srec["sem_seg_file_name"].endswith(os.path.join("labels", "a.png"))
    (prec,) = DatasetCatalog.get("mapillary_vistas_panoptic_val")
    assert [(s["category_id"], s["isthing"]) for s in prec["segments_info"]] == [(55, True), (13, False)]
