"""The official evaluation pipeline on one non-square sample (tests/fixtures/restr_small_eval,
README_segmenter_restr.md §8): centred resize-and-pad without antialias, model, resize-and-crop
of the logits, threshold, I/U; and the detectron2 inference path of ReSTR."""
import json

import pytest
import torch

from restr_d2.evaluation import ReferringEvaluator, mask_intersection_union
from restr_d2.modeling.restr.resize import official_resize_and_crop, resize_and_pad

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def ev(small):
    d = small.root / "restr_small_eval"
    return torch.load(d / "io.pt", weights_only=True), json.load(open(d / "config.json"))


@pytest.fixture(scope="module")
def center_model(small):
    model = small.build()
    model.pad_layout = "center"
    return model


def test_official_resize_and_pad(ev):
    io, _ = ev
    image = io["image_orig_u8"].float()
    # the official code pads the *normalised* image with 0 = the pixel mean
    padded, region = resize_and_pad(image, 96, "center", pad_value=127.5)
    assert region == (19, 0, 58, 96)
    normalised = (padded - 127.5) / 127.5
    assert torch.allclose(normalised, io["image_resized_padded"], **TOL)


def test_official_resize_and_crop(ev):
    io, _ = ev
    assert torch.equal(official_resize_and_crop(io["pixel_pred"], 72, 120), io["pred_cropped"])
    assert torch.equal(official_resize_and_crop(io["pixel_pred"].sigmoid(), 72, 120), io["sigmoid_cropped"])
    assert torch.equal(
        official_resize_and_crop(io["patch_pred"].sigmoid(), 72, 120, "nearest"),
        io["sigmoid_patch_cropped_nearest"],
    )
    syn = official_resize_and_crop(io["syn_pixel_logits"], 72, 120)
    assert torch.equal(syn, io["syn_pred_cropped"])
    gt = io["label_orig_u8"][0, 0].bool()
    hard = syn[0, 0] >= 1e-9
    assert torch.equal(hard, io["syn_hard_pred"][0, 0])
    assert mask_intersection_union(hard, gt) == (int(io["syn_I"]), int(io["syn_U"])) == (1443, 5830)


def test_model_on_official_eval_input(ev, center_model):
    io, cfg = ev
    with torch.no_grad():
        out = center_model.predict(io["image_resized_padded"], [cfg["sentence"]])
    assert torch.allclose(out["pixel_logits"], io["pixel_pred"], **TOL)
    assert torch.allclose(out["patch_logits"], io["patch_pred"], **TOL)
    tokens = center_model.encoder_l.tokenize([cfg["sentence"]])["input_ids"]
    assert tokens.tolist() == cfg["text"] == io["text"].tolist()


def test_detectron2_inference_center_layout_reproduces_official_iou(ev, center_model, small):
    io, cfg = ev
    padded, _ = resize_and_pad(io["image_orig_u8"].float(), 96, "center", pad_value=127.5)
    inputs = [{"image": padded[0], "sentence": cfg["sentence"], "height": 72, "width": 120}]
    with torch.no_grad():
        out = center_model(inputs)[0]
    prob = out["ref_seg"]
    assert prob.shape == (72, 120) and prob.dtype == torch.float32
    assert torch.allclose(prob, io["pred_cropped"][0, 0].sigmoid(), **TOL)
    mask = prob > 0.5
    assert torch.equal(mask, io["hard_pred"][0, 0])
    gt = io["label_orig_u8"][0, 0].bool()
    assert mask_intersection_union(mask, gt) == (997, 4800)
    assert 0.5 < float(out["ref_score"]) <= 1.0

    # the evaluator on this single sample gives the official cumulative IoU
    evaluator = ReferringEvaluator("restr_small_eval", distributed=False)
    evaluator.reset()
    evaluator.process([{"gt_mask_orig": gt}], [out])
    res = evaluator.evaluate()["referring"]
    assert res["oIoU"] == pytest.approx(float(io["cum_iou_official_evaluate_model"]), abs=1e-4)


def test_bottom_right_inference_matches_manual_postprocessing(small):
    """Contract layout: crop the valid region, resize to the original size, sigmoid."""
    model = small.build()
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 96, 96), dtype=torch.uint8)
    image[:, 60:] = 0  # a 60x96 image padded at the bottom
    x = {"image": image, "sentence": "yellow wooden satchel", "height": 45, "width": 72, "resized_size": (60, 96)}
    with torch.no_grad():
        out = model([x])[0]
        logits = model.predict(model.normalize(image)[None], [x["sentence"]])["pixel_logits"]
    ref = torch.nn.functional.interpolate(logits[..., :60, :96], size=(45, 72), mode="bilinear", align_corners=False)
    assert out["ref_seg"].shape == (45, 72)
    assert torch.allclose(out["ref_seg"], ref[0, 0].sigmoid(), atol=1e-6)
