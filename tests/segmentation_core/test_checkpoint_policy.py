"""Weights for evaluation and prediction cover the whole model; a training start from pretrained
weights loads only what lands, and says what is fresh (segmentation_core.checkpoint_policy)."""
import logging
import os
import subprocess
import sys

import pytest
import torch
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model

import train_net
from segmentation_core.checkpoint_policy import WeightsMismatchError
from segmentation_core.config import build_cfg
from segmentation_core.resume import ResilientCheckpointer
from restr_d2.engine.predictor import ReferringPredictor
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
SHAPES = os.path.join(REPO, "configs", "shapes")
M2F = os.path.join(SHAPES, "mask2former_R18_panoptic.yaml")
RESTR = os.path.join(SHAPES, "restr_shapes.yaml")
SEGMENTER = os.path.join(SHAPES, "segmenter_mask.yaml")


def _save(model_or_state, path):
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    torch.save({"model": state, "iteration": 7}, path)
    return str(path)


@pytest.fixture(scope="module")
def restr_ckpt(tmp_path_factory):
    return _save(build_model(build_cfg(RESTR)), tmp_path_factory.mktemp("ckpt") / "restr.pth")


def test_cross_family_checkpoint_in_default_predictor_is_named(restr_ckpt):
    cfg = build_cfg(M2F, ["MODEL.WEIGHTS", restr_ckpt])
    with pytest.raises(WeightsMismatchError) as err:
        DefaultPredictor(cfg)
    msg = str(err.value)
    assert "does not cover the model (MaskFormer" in msg and "missing from the file" in msg
    assert "unexpected in the file: encoder_" in msg or "unexpected in the file: fusion" in msg
    assert "looks like a ReSTR checkpoint; this model is Mask2Former" in msg
    # a Segmenter model is told the same
    with pytest.raises(WeightsMismatchError, match="looks like a ReSTR checkpoint; this model is Segmenter"):
        DefaultPredictor(build_cfg(SEGMENTER, ["MODEL.WEIGHTS", restr_ckpt]))


def test_cross_family_checkpoint_at_eval_only_is_named(restr_ckpt, tmp_path):
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", M2F, "--eval-only", "MODEL.WEIGHTS", restr_ckpt, "OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(WeightsMismatchError, match=r"restr.pth does not cover the model .*looks like a ReSTR checkpoint"):
        train_net.main(args)


def test_referring_predictor_refuses_a_partial_checkpoint(restr_ckpt, tmp_path):
    state = torch.load(restr_ckpt, weights_only=True)["model"]
    partial = _save({k: v for k, v in state.items() if not k.startswith("fusion_module.")}, tmp_path / "part.pth")
    with pytest.raises(WeightsMismatchError, match=r"part.pth does not cover the model .* missing from the file: fusion_module"):
        ReferringPredictor(build_cfg(RESTR, ["MODEL.WEIGHTS", partial]))
    ReferringPredictor(build_cfg(RESTR, ["MODEL.WEIGHTS", restr_ckpt]))  # the whole model loads


def test_mis_shaped_and_opt_out(tmp_path, caplog):
    cfg = build_cfg(M2F)
    model = build_model(cfg)
    state = model.state_dict()
    key = "sem_seg_head.predictor.class_embed.weight"
    state[key] = torch.zeros(3, state[key].shape[1])
    path = _save(state, tmp_path / "shape.pth")
    with pytest.raises(WeightsMismatchError, match="the wrong shape|do not fit"):
        DefaultPredictor(build_cfg(M2F, ["MODEL.WEIGHTS", path]))
    # explicit opt-out: loads what fits, says so
    with caplog.at_level(logging.WARNING):
        DefaultPredictor(build_cfg(M2F, ["MODEL.WEIGHTS", path, "MODEL.WEIGHTS_STRICT", "False"]))
    assert any("MODEL.WEIGHTS_STRICT is False" in r.getMessage() for r in caplog.records)


def test_backbone_only_start_is_a_partial_load_that_says_what_is_fresh(tmp_path, caplog):
    cfg = build_cfg(M2F)
    donor = build_model(cfg)
    backbone = {k: v for k, v in donor.state_dict().items() if k.startswith("backbone.")}
    backbone["stem.fc.weight"] = torch.zeros(10, 512)  # an ImageNet classifier: ignored, logged
    path = _save(backbone, tmp_path / "backbone.pth")
    model = build_model(cfg)
    head_before = model.sem_seg_head.predictor.query_feat.weight.detach().clone()
    with caplog.at_level(logging.INFO):
        ResilientCheckpointer(model, str(tmp_path)).resume_or_load(path, resume=False)
    for k, v in model.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(v, backbone[k]), k
    assert torch.equal(model.sem_seg_head.predictor.query_feat.weight, head_before)  # fresh
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "partial load" in text and "backbone: " in text and "sem_seg_head: fresh" in text
    assert "ignored the pretrained classifier ['stem.fc.weight']" in text
    # a tensor of the file with no place in the model is an error, not a warning
    backbone["sem_seg_head.not_a_module.weight"] = torch.zeros(1)
    bad = _save(backbone, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match="needs every tensor of the file to land"):
        ResilientCheckpointer(build_model(cfg), str(tmp_path)).resume_or_load(bad, resume=False)
    # resuming needs the whole model
    model = build_model(cfg)
    ckpt = ResilientCheckpointer(model, str(tmp_path / "run"))
    os.makedirs(tmp_path / "run")
    _save(backbone, tmp_path / "run" / "model_0000009.pth")
    ckpt.tag_last_checkpoint("model_0000009.pth")
    with pytest.raises(WeightsMismatchError, match="does not cover the model"):
        ckpt.resume_or_load(path, resume=True)


_TRAIN = r"""
import sys
sys.path.insert(0, sys.argv[1])
import train_net
args = train_net.default_argument_parser().parse_args(sys.argv[2:])
train_net.main(args)
"""


def test_backbone_only_checkpoint_trains(tmp_path):
    """train_net.py from a backbone-only file: 2 iterations, with what is fresh in the log."""
    cfg = build_cfg(M2F)
    backbone = {k: v for k, v in build_model(cfg).state_dict().items() if k.startswith("backbone.")}
    path = _save(backbone, tmp_path / "backbone.pth")
    out = tmp_path / "out"
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN="4",
               SHAPES_NUM_VAL="2", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", _TRAIN, REPO, "--config-file", M2F, "MODEL.WEIGHTS", path,
                        "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
                        "DATASETS.TEST", "()"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    assert (out / "model_final.pth").is_file()
    log = (out / "log.txt").read_text()
    assert "partial load" in log and "sem_seg_head: fresh" in log, log[-3000:]
