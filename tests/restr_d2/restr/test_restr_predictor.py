"""ReferringPredictor and the official-checkpoint path (tools/convert/convert_restr_checkpoint.py,
DetectionCheckpointer with a bare official state dict)."""

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

from restr_d2.engine import ReferringPredictor
from restr_d2.modeling.restr import ReSTR, convert_official_restr_state_dict
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)


@pytest.fixture(scope="module")
def official_pth(small, tmp_path_factory):
    """The fixture weights saved the way train_restr.py saves them: a bare state dict."""
    path = tmp_path_factory.mktemp("restr") / "Gref_400000.pth"
    torch.save(small.fx["state_dict"], path)
    return path


@pytest.fixture(scope="module")
def predictor(small, official_pth):
    cfg = small.cfg()
    cfg.MODEL.WEIGHTS = str(official_pth)
    return ReferringPredictor(cfg)


def test_detection_checkpointer_loads_bare_official_checkpoint(small, official_pth):
    model = ReSTR(small.cfg())
    DetectionCheckpointer(model).load(str(official_pth))
    for k, v in model.state_dict().items():
        assert torch.equal(v, small.fx["state_dict"][k]), k


def test_convert_tool(small, official_pth, tmp_path):
    from tools.convert import convert_restr_checkpoint as tool

    # a DDP-wrapped checkpoint in a {"state_dict": ...} container
    wrapped = tmp_path / "ddp.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in small.fx["state_dict"].items()}}, wrapped)
    out = tmp_path / "converted.pth"
    cfg = small.cfg()
    cfg_path = tmp_path / "small.yaml"
    cfg_path.write_text(cfg.dump())
    tool.main([str(wrapped), str(out), "--config-file", str(cfg_path)])
    ckpt = torch.load(out, weights_only=True)
    assert list(ckpt["model"]) == list(small.fx["state_dict"])
    model = ReSTR(small.cfg())
    DetectionCheckpointer(model).load(str(out))
    assert torch.equal(model.state_dict()["fusion_module.proj_cls"], small.fx["state_dict"]["fusion_module.proj_cls"])
    with pytest.raises(ValueError, match="not a ReSTR checkpoint"):
        convert_official_restr_state_dict({"backbone.x": torch.zeros(1)})
    with pytest.raises(ValueError, match="without"):
        convert_official_restr_state_dict({"encoder_v.x": torch.zeros(1)})


def test_predictor_single_and_batched(predictor, small):
    rng = np.random.default_rng(0)
    image_bgr = rng.integers(0, 256, (60, 84, 3), dtype=np.uint8)
    one = predictor(image_bgr, "yellow wooden satchel")
    assert set(one) == {"mask", "prob", "score"}
    assert one["mask"].shape == (60, 84) and one["mask"].dtype == torch.bool
    assert one["prob"].shape == (60, 84) and one["prob"].dtype == torch.float32
    assert torch.equal(one["mask"], one["prob"] > 0.5)
    assert isinstance(one["score"], float)
    vit = predictor.model.encoder_v
    calls = []
    original = vit.forward_features
    vit.forward_features = lambda x: calls.append(x.shape[0]) or original(x)
    try:
        many = predictor(image_bgr, ["yellow wooden satchel", "the ornate swivel"])
    finally:
        del vit.forward_features
    assert calls == [1]  # one ViT pass shared by both sentences
    assert isinstance(many, list) and len(many) == 2
    # batching does not change a sentence's result
    assert torch.allclose(many[0]["prob"], one["prob"], atol=1e-5)
    assert not torch.allclose(many[0]["prob"], many[1]["prob"])


def test_predictor_matches_model_on_mapper_layout(predictor):
    """Predictor preprocessing = mapper layout (long side to S, black bottom/right pad)."""
    image_bgr = np.zeros((48, 96, 3), dtype=np.uint8)
    image_bgr[:, :, 2] = 200  # red in BGR
    res = predictor(image_bgr, "yellow")
    rgb = torch.zeros(3, 96, 96, dtype=torch.uint8)
    rgb[0, :48] = 200
    with torch.no_grad():
        ref = predictor.model([{"image": rgb, "sentence": "yellow", "height": 48, "width": 96,
                                "resized_size": (48, 96)}])[0]
    assert torch.allclose(res["prob"], ref["ref_seg"], atol=1e-6)


def test_predictor_bad_inputs(predictor):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    for bad in ["", "   ", "!!!", "\x00"]:
        with pytest.raises(ValueError, match="referring expression"):
            predictor(image, bad)
    with pytest.raises(ValueError, match="no sentence"):
        predictor(image, [])
    with pytest.raises(ValueError, match="BGR"):
        predictor(np.zeros((32, 32), dtype=np.uint8), "a")
    with pytest.raises(ValueError, match="uint8"):
        predictor(image.astype(np.float32), "a")
    # unknown words, non-ASCII, emoji, too long: defined results, no error
    for odd in ["zzzz", "ünïcødé wörds", "the 🙂 thing", " ".join(["yellow"] * 50)]:
        out = predictor(image, odd)
        assert out["prob"].shape == (32, 32) and torch.isfinite(out["prob"]).all()


def test_predictor_center_layout_reproduces_official_eval(small, official_pth):
    """PAD_LAYOUT "center" = the official evaluate.py preprocessing and postprocessing."""
    ev = torch.load(small.root / "restr_small_eval" / "io.pt", weights_only=True)
    cfg = small.cfg()
    cfg.MODEL.WEIGHTS = str(official_pth)
    cfg.MODEL.RESTR.TEST.PAD_LAYOUT = "center"
    pred = ReferringPredictor(cfg)
    rgb = ev["image_orig_u8"][0].permute(1, 2, 0).numpy()
    out = pred(np.ascontiguousarray(rgb[:, :, ::-1]), "Ornate wooden swivel, marching.")
    assert torch.allclose(out["prob"], ev["pred_cropped"][0, 0].sigmoid(), atol=1e-5)
    assert torch.equal(out["mask"], ev["hard_pred"][0, 0])


def test_predictor_describes_the_tokens_its_model_reads(predictor):
    described = predictor.describe_tokens("yellow zzzz woods")
    assert described == predictor.model.encoder_l.tokenizer.describe("yellow zzzz woods")
    assert [t["text"] for t in described["tokens"] if t["unknown"]] == ["zzzz"]
    with pytest.raises(ValueError, match="referring expression"):
        predictor.describe_tokens("!!!")
