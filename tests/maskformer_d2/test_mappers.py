"""MaskFormer-family mappers: shapes, dtypes, padding, ignore labels, errors."""
import numpy as np
import pytest
import torch

from detectron2.data import transforms as T
from detectron2.structures import BoxMode

import maskformer_d2  # noqa: F401  (registers the mappers)
from segmentation_core.engine.mapper_registry import get_mapper_class
from maskformer_d2.data.dataset_mappers import (
    COCOInstanceNewBaselineDatasetMapper,
    COCOPanopticNewBaselineDatasetMapper,
    DETRPanopticDatasetMapper,
    MaskFormerInstanceDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
)

from tests.helpers.dataset_files import id2rgb, save_jpg, save_png, two_class_semantic


def _pan_record(tmp_path, h=20, w=30):
    save_jpg(str(tmp_path / "img.jpg"), h, w)
    ids = np.zeros((h, w), np.int64)
    ids[:, : w // 2] = 7
    ids[:, w // 2:] = 8
    ids[:4, :4] = 9  # crowd segment
    save_png(str(tmp_path / "pan.png"), id2rgb(ids))
    sem = np.full((h, w), 4, np.uint8)
    save_png(str(tmp_path / "sem.png"), sem)
    segs = [{"id": 7, "category_id": 3, "iscrowd": 0}, {"id": 8, "category_id": 5, "iscrowd": 0},
            {"id": 9, "category_id": 1, "iscrowd": 1}]
    return {"file_name": str(tmp_path / "img.jpg"), "pan_seg_file_name": str(tmp_path / "pan.png"),
            "sem_seg_file_name": str(tmp_path / "sem.png"), "segments_info": segs, "height": h, "width": w, "image_id": 1}


def test_semantic_mapper_pads_and_builds_per_class_masks(tmp_path):
    save_jpg(str(tmp_path / "a.jpg"), 20, 30)
    save_png(str(tmp_path / "a.png"), two_class_semantic(20, 30))
    m = MaskFormerSemanticDatasetMapper(True, augmentations=[], image_format="RGB", ignore_label=255, size_divisibility=32)
    out = m({"file_name": str(tmp_path / "a.jpg"), "sem_seg_file_name": str(tmp_path / "a.png"), "height": 20, "width": 30})
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.uint8
    assert (out["image"][:, 20:, :] == 128).all() and (out["image"][:, :, 30:] == 128).all()
    assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (32, 32)
    assert (out["sem_seg"][20:] == 255).all() and (out["sem_seg"][0] == 255).all()
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [1, 2]
    assert inst.gt_masks.dtype == torch.bool and inst.gt_masks.shape == (2, 32, 32)
    assert inst.gt_masks[0].sum() == 19 * 15 and inst.gt_masks[1].sum() == 19 * 15
    with pytest.raises(ValueError, match="SIZE_DIVISIBILITY"):
        MaskFormerSemanticDatasetMapper(True, augmentations=[], image_format="RGB", ignore_label=255, size_divisibility=16)(
            {"file_name": str(tmp_path / "a.jpg"), "sem_seg_file_name": str(tmp_path / "a.png")})


def test_semantic_mapper_category_area_crop_and_16bit_ignore(tmp_path):
    save_jpg(str(tmp_path / "b.jpg"), 40, 40)
    lab = np.full((40, 40), 846, np.uint16)
    lab[:, 20:] = 65535
    from PIL import Image

    Image.fromarray(lab).save(tmp_path / "b.tif")
    augs = [T.RandomCrop_CategoryAreaConstraint("absolute", (16, 16), 1.0, 65535)]
    m = MaskFormerSemanticDatasetMapper(True, augmentations=augs, image_format="BGR", ignore_label=65535, size_divisibility=16)
    out = m({"file_name": str(tmp_path / "b.jpg"), "sem_seg_file_name": str(tmp_path / "b.tif")})
    assert out["image"].shape == (3, 16, 16)
    assert set(out["sem_seg"].unique().tolist()) <= {846, 65535}
    assert out["instances"].gt_classes.tolist() in ([846], [])


def test_panoptic_mapper_skips_crowd_and_pads_void(tmp_path):
    m = MaskFormerPanopticDatasetMapper(True, augmentations=[], image_format="RGB", ignore_label=255, size_divisibility=32)
    out = m(_pan_record(tmp_path))
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [3, 5]
    assert inst.gt_masks.shape == (2, 32, 32) and inst.gt_masks[:, 20:, :].sum() == 0
    # the crowd region belongs to neither kept segment
    assert inst.gt_masks[:, :4, :4].sum() == 0 and inst.gt_masks[0].sum() == 20 * 15 - 16
    assert (out["sem_seg"][20:] == 255).all() and (out["sem_seg"][:20, :30] == 4).all()


def test_detr_and_lsj_panoptic_mappers(tmp_path):
    rec = _pan_record(tmp_path)
    detr = DETRPanopticDatasetMapper(True, crop_gen=None, tfm_gens=[T.ResizeShortestEdge(40, 100)], image_format="RGB")
    out = detr(rec)
    assert out["image"].shape == (3, 40, 60)
    assert out["instances"].gt_masks.shape == (2, 40, 60) and out["instances"].gt_masks.dtype == torch.bool
    lsj = COCOPanopticNewBaselineDatasetMapper(
        True, tfm_gens=[T.ResizeScale(1.0, 1.0, 48, 48), T.FixedSizeCrop((48, 48))], image_format="RGB")
    out = lsj(rec)
    assert out["image"].shape == (3, 48, 48)
    assert out["instances"].gt_boxes.tensor.shape == (2, 4)
    # 20x30 scaled by 48/30 -> 32x48: rows 32.. are padding (FixedSizeCrop pads the image with 128)
    assert out["instances"].gt_masks[:, 32:, :].sum() == 0 and (out["image"][:, 32:, :] == 128).all()


def test_instance_mappers(tmp_path):
    save_jpg(str(tmp_path / "c.jpg"), 20, 20)
    annos = [
        {"segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]], "bbox": [2, 2, 8, 8], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 4, "iscrowd": 0},
        {"segmentation": [[0, 0, 3, 0, 3, 3]], "bbox": [0, 0, 3, 3], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "iscrowd": 1},
    ]
    rec = {"file_name": str(tmp_path / "c.jpg"), "height": 20, "width": 20, "annotations": annos}
    m = MaskFormerInstanceDatasetMapper(True, augmentations=[], image_format="RGB", size_divisibility=32)
    out = m(rec)
    assert out["image"].shape == (3, 32, 32) and out["instances"].gt_classes.tolist() == [4]
    assert out["instances"].gt_masks.shape == (1, 32, 32) and out["instances"].gt_masks[:, 20:].sum() == 0
    lsj = COCOInstanceNewBaselineDatasetMapper(
        True, tfm_gens=[T.ResizeScale(2.0, 2.0, 32, 32), T.FixedSizeCrop((32, 32))], image_format="RGB")
    # 20 -> 64, then a random 32x32 crop; about 2% of offsets (near 32) cut the object out,
    # so the crop offset is made deterministic
    np.random.seed(0)
    out = lsj(rec)
    assert out["image"].shape == (3, 32, 32) and out["padding_mask"].dtype == torch.bool
    assert not out["padding_mask"].any()  # cropped from 64: no padding
    assert out["instances"].gt_classes.tolist() == [4] and out["instances"].gt_masks.dtype == torch.bool
    small = COCOInstanceNewBaselineDatasetMapper(
        True, tfm_gens=[T.ResizeScale(1.0, 1.0, 20, 20), T.FixedSizeCrop((32, 32))], image_format="RGB")
    pm = small(rec)["padding_mask"]
    assert pm[20:].all() and not pm[:20, :20].any()


def test_registry_and_errors(tmp_path):
    assert get_mapper_class("mask_former_semantic") is MaskFormerSemanticDatasetMapper
    assert get_mapper_class("coco_instance_lsj") is COCOInstanceNewBaselineDatasetMapper
    with pytest.raises(KeyError) as e:
        get_mapper_class("mask_former_semantik")
    for name in ("mask_former_semantic", "mask_former_panoptic", "mask_former_instance", "coco_instance_lsj",
                 "coco_panoptic_lsj", "detr_panoptic", "referring"):
        assert name in str(e.value)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg at all")
    m = MaskFormerSemanticDatasetMapper(True, augmentations=[], image_format="RGB", ignore_label=255, size_divisibility=0)
    with pytest.raises(ValueError, match="bad.jpg"):
        m({"file_name": str(tmp_path / "bad.jpg"), "sem_seg_file_name": str(tmp_path / "bad.png")})


def _rle_record(tmp_path, h=20, w=20):
    import pycocotools.mask as mask_util

    save_jpg(str(tmp_path / "r.jpg"), h, w)
    mask = np.zeros((h, w), np.uint8)
    mask[2:10, 3:8] = 1  # asymmetric, so a flip moves it
    rle = mask_util.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    anno = {"segmentation": rle, "bbox": [3, 2, 5, 8], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 4, "iscrowd": 0}
    return {"file_name": str(tmp_path / "r.jpg"), "height": h, "width": w, "annotations": [anno]}, mask


def test_instance_mappers_accept_flipped_rle(tmp_path):
    # regression: a flipped RLE mask is a negative-stride view that torch.from_numpy rejected
    rec, mask = _rle_record(tmp_path)
    expected = torch.from_numpy(mask[:, ::-1].copy()).bool()
    m = MaskFormerInstanceDatasetMapper(
        True, augmentations=[T.RandomFlip(prob=1.0)], image_format="RGB", size_divisibility=32)
    out = m(rec)
    assert out["instances"].gt_classes.tolist() == [4]
    assert torch.equal(out["instances"].gt_masks[0, :20, :20], expected)
    assert out["instances"].gt_masks[0, 20:].sum() == 0
    lsj = COCOInstanceNewBaselineDatasetMapper(
        True, tfm_gens=[T.RandomFlip(prob=1.0), T.ResizeScale(1.0, 1.0, 20, 20), T.FixedSizeCrop((20, 20))],
        image_format="RGB")
    out = lsj(rec)
    assert torch.equal(out["instances"].gt_masks[0], expected)
    assert out["instances"].gt_boxes.tensor.tolist() == [[12.0, 2.0, 17.0, 10.0]]


@pytest.mark.parametrize("crop,color", [(True, True), (False, False)])
def test_mask_former_mappers_build_the_official_augmentations_from_the_config(crop, color):
    """Resize, the mapper's own crop, SSD colour jitter, flip, in that order; the semantic (and
    panoptic) crop keeps any one class below SINGLE_CATEGORY_MAX_AREA, the instance crop is plain."""
    from detectron2.projects.point_rend import ColorAugSSDTransform

    from segmentation_core.config import build_cfg
    from tests.helpers.paths import REPO

    cfg = build_cfg(str(REPO / "configs/shapes/mask2former_R18_semantic.yaml"),
                    ["INPUT.CROP.ENABLED", str(crop), "INPUT.COLOR_AUG_SSD", str(color),
                     "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA", "0.75"])
    for mapper_cls, crop_cls in ((MaskFormerSemanticDatasetMapper, T.RandomCrop_CategoryAreaConstraint),
                                 (MaskFormerPanopticDatasetMapper, T.RandomCrop_CategoryAreaConstraint),
                                 (MaskFormerInstanceDatasetMapper, T.RandomCrop)):
        augs = mapper_cls.from_config(cfg, True)["augmentations"]
        expected = [T.ResizeShortestEdge] + [crop_cls] * crop + [ColorAugSSDTransform] * color + [T.RandomFlip]
        assert [type(a) for a in augs] == expected, mapper_cls
        assert augs[0].short_edge_length == tuple(cfg.INPUT.MIN_SIZE_TRAIN)
        if crop:
            inner = augs[1] if crop_cls is T.RandomCrop else augs[1].crop_aug
            assert inner.crop_type == cfg.INPUT.CROP.TYPE and tuple(inner.crop_size) == tuple(cfg.INPUT.CROP.SIZE)
        if crop and crop_cls is T.RandomCrop_CategoryAreaConstraint:
            assert augs[1].single_category_max_area == 0.75
