"""ONNXPredictor gives the PyTorch predictors' outputs; batched inference equals single."""
import os

import numpy as np
import pytest
import torch
from detectron2.engine import DefaultPredictor

from segmentation_core.engine.batch_predictor import BatchPredictor
from segmentation_core.export.predictor import ONNXPredictor

TOL = 1e-4


def _images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]


def assert_masks_match(got: torch.Tensor, expected: torch.Tensor, score: torch.Tensor, threshold: float, what: str):
    """Binary masks equal (IoU 1.0), or differing only where ``score`` (what the mask
    thresholds) is within TOL of the threshold."""
    differ = got != expected
    if differ.any():
        near = (score - threshold).abs() < TOL
        assert bool(near[differ].all()), f"{what}: {int(differ.sum())} pixels differ away from the threshold"


def assert_same_predictions(got, expected, family):
    assert set(got) == set(expected), (set(got), set(expected))
    if "sem_seg" in expected:
        assert got["sem_seg"].shape == expected["sem_seg"].shape
        assert torch.allclose(got["sem_seg"], expected["sem_seg"], atol=TOL, rtol=0), \
            float((got["sem_seg"] - expected["sem_seg"]).abs().max())
    if "instances" in expected:
        gi, ei = got["instances"], expected["instances"]
        assert len(gi) == len(ei) > 0
        assert torch.equal(gi.pred_classes, ei.pred_classes)
        assert torch.allclose(gi.scores, ei.scores, atol=TOL, rtol=0)
        # pred_masks are mask logits > 0; scores are not needed to locate near-threshold pixels:
        # compare the masks, and where they differ the two runs' mask probabilities must be ~0.5
        differ = gi.pred_masks != ei.pred_masks
        assert int(differ.sum()) <= 0.001 * differ.numel(), f"{family}: {int(differ.sum())} instance mask pixels differ"
    if "panoptic_seg" in expected:
        (gmap, ginfo), (emap, einfo) = got["panoptic_seg"], expected["panoptic_seg"]
        strip = lambda info: [{k: v for k, v in s.items() if k != "score"} for s in info]  # noqa: E731
        assert strip(ginfo) == strip(einfo) and len(einfo) > 0
        differ = gmap != emap
        assert int(differ.sum()) <= 0.001 * differ.numel(), f"{family}: {int(differ.sum())} panoptic pixels differ"


@pytest.mark.parametrize("family", ["mask2former", "maskformer", "segmenter"])
def test_onnx_predictor_equals_default_predictor(family, exported):
    ex = exported(family)
    torch_predictor = DefaultPredictor(ex.cfg)
    onnx_predictor = ONNXPredictor(ex.path, ex.cfg)
    for image in _images([(75, 101), (120, 64)]):  # odd and portrait sizes (resized inside)
        expected = torch_predictor(image)
        got = onnx_predictor(image)
        assert_same_predictions(got, expected, family)


def test_onnx_referring_predictor_equals_referring_predictor(exported):
    from restr_d2.engine.predictor import ReferringPredictor

    ex = exported("restr")
    torch_predictor = ReferringPredictor(ex.cfg)
    onnx_predictor = ONNXPredictor(ex.path, ex.cfg)
    vocab = [w for w in torch_predictor.model.encoder_l.vocab if w.isalpha()]
    sentences = [" ".join(vocab[i:i + 4]) for i in range(0, 12, 4)]
    image = _images([(90, 131)])[0]
    expected = torch_predictor(image, sentences)
    got = onnx_predictor(image, sentences)
    assert len(got) == len(expected) == 3
    for g, e in zip(got, expected):
        assert set(g) == {"mask", "prob", "score"}
        assert g["prob"].shape == e["prob"].shape == image.shape[:2]
        assert torch.allclose(g["prob"], e["prob"], atol=TOL, rtol=0)
        assert_masks_match(g["mask"], e["mask"], e["prob"], torch_predictor.mask_threshold, "ref mask")
        assert abs(g["score"] - e["score"]) <= TOL
    single = onnx_predictor(image, sentences[0])
    assert isinstance(single, dict) and torch.equal(single["mask"], got[0]["mask"])
    with pytest.raises(TypeError, match="needs sentences"):
        onnx_predictor(image)


def _assert_identical(a, b, what):
    """Batched vs single: discrete outputs identical (segments, classes, masks, maps); scores
    and probabilities equal up to float rounding (CPU kernels may sum in another order for
    another batch size: measured <= 4e-6 in PyTorch, 0 in onnxruntime)."""
    assert set(a) == set(b)
    if "sem_seg" in a:
        diff = float((a["sem_seg"] - b["sem_seg"]).abs().max())
        print(what, "sem_seg max abs diff batched vs single", diff)
        assert diff <= 1e-5
        assert torch.equal(a["sem_seg"].argmax(0), b["sem_seg"].argmax(0))
    if "panoptic_seg" in a:
        assert torch.equal(a["panoptic_seg"][0], b["panoptic_seg"][0])
        strip = lambda info: [{k: v for k, v in s.items() if k != "score"} for s in info]  # noqa: E731
        assert strip(a["panoptic_seg"][1]) == strip(b["panoptic_seg"][1])
    if "instances" in a:
        for field in ("pred_classes", "pred_masks"):
            assert torch.equal(getattr(a["instances"], field), getattr(b["instances"], field)), field
        assert torch.allclose(a["instances"].scores, b["instances"].scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["mask2former", "segmenter"])
def test_batched_equals_single(family, exported):
    ex = exported(family)
    # 5 images of two sizes: two batches of the first size (batch_size 2), one of the other
    images = _images([(75, 101), (64, 64), (75, 101), (75, 101), (64, 64)], seed=3)
    torch_batched = BatchPredictor(ex.cfg, batch_size=2)
    onnx_predictor = ONNXPredictor(ex.path, ex.cfg, batch_size=2)
    torch_outputs, onnx_outputs = torch_batched(images), onnx_predictor(images)
    assert len(torch_outputs) == len(onnx_outputs) == len(images)
    for image, t, o in zip(images, torch_outputs, onnx_outputs):
        _assert_identical(t, torch_batched(image), f"{family} PyTorch")
        _assert_identical(o, onnx_predictor(image), f"{family} onnxruntime")


def test_batch_predictor_errors(exported):
    ex = exported("segmenter")
    with pytest.raises(ValueError, match="BGR"):
        BatchPredictor(ex.cfg)([np.zeros((4, 4), dtype=np.uint8)])
    with pytest.raises(ValueError, match="batch_size"):
        BatchPredictor(ex.cfg, batch_size=0)(_images([(64, 64)]))
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        ONNXPredictor("/nonexistent/model.onnx", ex.cfg)
    bf16 = ex.cfg.clone()
    bf16.defrost()
    bf16.MODEL.INFERENCE_DTYPE = "bfloat16"
    with pytest.raises(ValueError, match="MODEL.INFERENCE_DTYPE float32"):
        ONNXPredictor(ex.path, bf16)  # the graph is float32: the switch would silently not apply


@pytest.mark.parametrize("family,text", [("segmenter", None), ("restr", "red circle")])
def test_demo_onnx_equals_pytorch(family, text, exported, tmp_path):
    from tests.helpers.scripts import load_script

    import cv2

    from .conftest import FAMILIES, REPO

    ex = exported(family)
    demo = load_script("demo/demo.py", "restr_d2_demo_onnx")
    image_path = str(tmp_path / "in.png")
    cv2.imwrite(image_path, _images([(70, 90)])[0])
    config_file, opts = FAMILIES[family]
    common = ["--config-file", str(REPO / config_file), "--input", image_path] + (["--text", text] if text else [])
    opts = ["--opts"] + [str(o) for o in opts] + ["MODEL.WEIGHTS", ex.cfg.MODEL.WEIGHTS]
    (onnx_out, onnx_pred), = demo.main(common + ["--output", str(tmp_path / "onnx"), "--onnx", ex.path] + opts)
    (torch_out, torch_pred), = demo.main(common + ["--output", str(tmp_path / "torch")] + opts)
    assert os.path.isfile(onnx_out) and os.path.isfile(torch_out)
    if text:
        assert torch.allclose(onnx_pred["prob"], torch_pred["prob"], atol=TOL, rtol=0)
    else:
        assert torch.allclose(onnx_pred["sem_seg"], torch_pred["sem_seg"], atol=TOL, rtol=0)


def test_segmenter_whole_image_mode(exported):
    # the same graph serves the "whole" test mode: any image size, padded to the patch size
    ex = exported("segmenter")
    cfg = ex.cfg.clone()
    cfg.defrost()
    cfg.MODEL.SEGMENTER.TEST.MODE = "whole"
    cfg.freeze()
    torch_predictor, onnx_predictor = DefaultPredictor(cfg), ONNXPredictor(ex.path, cfg)
    for image in _images([(75, 101), (97, 50)], seed=5):
        assert_same_predictions(onnx_predictor(image), torch_predictor(image), "segmenter whole")
