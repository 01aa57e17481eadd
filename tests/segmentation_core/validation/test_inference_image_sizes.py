"""Every image size the training mappers accept works at inference (tiny, one pixel wide,
extreme aspect ratios), for each predictor; an image above ``INPUT.MAX_IMAGE_PIXELS`` is refused
by the demo with an error naming the limit and the option."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.engine import DefaultPredictor

from segmentation_core.config import build_cfg
from restr_d2.engine.predictor import ReferringPredictor
from tests.helpers.scripts import load_script
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
SIZES = [(1, 1), (2, 300), (300, 2), (5, 7), (700, 3)]


def _config(name, *opts):
    return build_cfg(os.path.join(REPO, "configs", "shapes", name), list(opts))


@pytest.mark.parametrize("config", [
    "mask2former_R18_panoptic.yaml",
    # sliding-window inference over the extreme aspect ratios takes ~20 s
    pytest.param("segmenter_mask.yaml", marks=pytest.mark.slow),
])
def test_default_predictor_any_size(config):
    torch.manual_seed(0)
    predictor = DefaultPredictor(_config(config))
    for h, w in SIZES:
        out = predictor(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
        assert out["sem_seg"].shape[-2:] == (h, w)


def test_referring_predictor_any_size(monkeypatch):
    monkeypatch.chdir(REPO)  # the shapes ReSTR config names its vocabulary relative to the repo
    predictor = ReferringPredictor(_config("restr_shapes.yaml"))
    for h, w in SIZES:
        out = predictor(np.zeros((h, w, 3), np.uint8), "the red circle")
        assert out["mask"].shape == (h, w)


def test_demo_refuses_an_image_above_the_pixel_limit_naming_the_option(tmp_path):
    demo = load_script("demo/demo.py", "restr_d2_demo_sizes")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(SystemExit) as e:
        demo.main(["--config-file", os.path.join(REPO, "configs/shapes/segmenter_mask.yaml"),
                   "--input", str(tmp_path / "big.png"), "--output", str(tmp_path / "out"),
                   "--opts", "INPUT.MAX_IMAGE_PIXELS", "500"])
    [(path, reason)] = e.value.failures
    assert "600 pixels exceeds the limit of 500 (INPUT.MAX_IMAGE_PIXELS)" in reason
