"""ReferringDatasetMapper: shapes, dtypes, padding, masks, flips, bad input."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import get_cfg
from segmentation_core.validation import BadRecordError
from detectron2.data import DatasetCatalog
from restr_d2.data.dataset_mappers import ReferringDatasetMapper
from restr_d2.data.dataset_mappers.referring_dataset_mapper import (
    annotations_to_mask, has_lr_words, swap_lr_words,
)

S = 96


@pytest.fixture(scope="module")
def records(shapes_root):
    return DatasetCatalog.get("testshapes_refcoco_unc_val")


def _check_common(out, rec):
    h, w = rec["height"], rec["width"]
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, S, S)
    assert out["gt_mask"].dtype == torch.uint8 and out["gt_mask"].shape == (S, S)
    nh, nw = out["resized_size"]
    assert max(nh, nw) == S and abs(nh / nw - h / w) < 0.02
    assert (out["height"], out["width"]) == (h, w)
    # bottom/right zero padding, masks 0 there
    assert out["image"][:, nh:, :].eq(0).all() and out["image"][:, :, nw:].eq(0).all()
    assert out["gt_mask"][nh:, :].eq(0).all() and out["gt_mask"][:, nw:].eq(0).all()
    assert set(out["gt_mask"].unique().tolist()) == {0, 1}
    return nh, nw


def test_test_mode_outputs(records):
    mapper = ReferringDatasetMapper(False, image_size=S)
    for rec in records[:6]:
        before = copy.deepcopy(rec)
        out = mapper(rec)
        assert rec == before  # the record is not modified
        nh, nw = _check_common(out, rec)
        orig = annotations_to_mask(rec["annotations"], rec["height"], rec["width"], rec["file_name"])
        assert out["gt_mask_orig"].dtype == torch.bool
        np.testing.assert_array_equal(out["gt_mask_orig"].numpy(), orig)
        assert out["sentence"] == rec["sentence"] and out["ref_id"] == rec["ref_id"]
        assert "annotations" not in out
        # the valid region is the bilinear resize of the original image
        src = np.asarray(Image.open(rec["file_name"]).convert("RGB"))
        ref = np.asarray(Image.fromarray(src).resize((nw, nh), Image.BILINEAR))
        np.testing.assert_array_equal(out["image"][:, :nh, :nw].permute(1, 2, 0).numpy(), ref)
        # the resized mask keeps roughly the object's share of the image
        assert abs(out["gt_mask"].float().sum() / (nh * nw) - orig.mean()) < 0.02


def test_train_mode_has_no_orig_mask_and_flips(records):
    rec = next(r for r in records if not has_lr_words(r["sentence"]))
    plain = ReferringDatasetMapper(True, image_size=S)(rec)
    assert "gt_mask_orig" not in plain
    _check_common(plain, rec)
    flipped = ReferringDatasetMapper(True, image_size=S, flip="skip_lr", flip_prob=1.0)(rec)
    nh, nw = plain["resized_size"]
    np.testing.assert_array_equal(flipped["gt_mask"][:nh, :nw].numpy(), plain["gt_mask"][:nh, :nw].flip(1).numpy())
    assert flipped["sentence"] == rec["sentence"]

    lr = dict(rec, sentence="the circle left of the star")
    kept = ReferringDatasetMapper(True, image_size=S, flip="skip_lr", flip_prob=1.0)(lr)
    assert torch.equal(kept["gt_mask"], plain["gt_mask"]) and kept["sentence"] == lr["sentence"]
    swapped = ReferringDatasetMapper(True, image_size=S, flip="swap_lr", flip_prob=1.0)(lr)
    assert swapped["sentence"] == "the circle right of the star"
    assert torch.equal(swapped["gt_mask"], flipped["gt_mask"])
    # test mode never flips
    assert ReferringDatasetMapper(False, image_size=S, flip="swap_lr", flip_prob=1.0)(lr)["sentence"] == lr["sentence"]


def test_lr_word_swapping():
    assert swap_lr_words("the Leftmost man, right of the LEFT car") == "the Rightmost man, left of the RIGHT car"
    assert swap_lr_words("bright copyright lefty") == "bright copyright lefty"
    assert has_lr_words("guy on right") and not has_lr_words("bright light")


def test_from_config_and_missing_keys():
    cfg = get_cfg()
    with pytest.raises(KeyError, match="add_restr_config"):
        ReferringDatasetMapper(cfg, True)
    cfg.INPUT.IMAGE_SIZE = 64
    cfg.INPUT.REFERRING_FLIP = "swap_lr"
    cfg.INPUT.FORMAT = "RGB"
    m = ReferringDatasetMapper(cfg, True)
    assert (m.image_size, m.flip, m.image_format) == (64, "swap_lr", "RGB")
    assert ReferringDatasetMapper(cfg, False).flip == "none"
    with pytest.raises(ValueError, match="flip"):
        ReferringDatasetMapper(image_size=64, flip="vertical")


def test_bad_inputs_name_the_file(records, tmp_path):
    rec = dict(records[0])
    data = open(rec["file_name"], "rb").read()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 3])
    mapper = ReferringDatasetMapper(False, image_size=S)
    with pytest.raises(OSError, match="broken.png"):
        mapper(dict(rec, file_name=str(broken)))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(OSError, match="garbage.jpg"):
        mapper(dict(rec, file_name=str(garbage)))
    with pytest.raises(ValueError, match="sentence"):
        mapper(dict(rec, sentence=""))
    with pytest.raises(BadRecordError, match="record says") as err:
        mapper(dict(rec, height=rec["height"] + 1))
    assert err.value.reason == "size_mismatch" and err.value.file_name == rec["file_name"]
    with pytest.raises(BadRecordError, match="no word") as err:
        mapper(dict(rec, sentence="?!"))
    assert err.value.reason == "bad_sentence"


def test_polygon_and_rle_masks_agree():
    h, w = 12, 16
    poly = [[2.0, 2.0, 10.0, 2.0, 10.0, 8.0, 2.0, 8.0]]
    m_poly = annotations_to_mask([{"segmentation": poly}], h, w, "x")
    from pycocotools import mask as mask_util
    rle = mask_util.encode(np.asfortranarray(m_poly.astype(np.uint8)))
    m_rle = annotations_to_mask([{"segmentation": {"size": [h, w], "counts": rle["counts"].decode()}}], h, w, "x")
    np.testing.assert_array_equal(m_poly, m_rle)
    assert m_poly.sum() > 30
    with pytest.raises(ValueError, match="does not match"):
        annotations_to_mask([{"segmentation": {"size": [5, 5], "counts": rle["counts"]}}], h, w, "x.jpg")
