"""Shared fixtures of the ReSTR tests: the ``restr_small`` config/weights/inputs
(tests/fixtures/restr_small*, see their README.md)."""
import json

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg

import restr_d2  # noqa: F401  (registers ReSTR)
from restr_d2.config import add_restr_config
from restr_d2.modeling.restr import ReSTR
from tests.helpers.paths import FIXTURES

ATOL = RTOL = 1e-5


def _load(path):
    return torch.load(path, weights_only=True)


def small_cfg(fixtures_dir, variant: str = "default"):
    """Config equal to the fixture's official ``model_cfg`` (README_segmenter_restr.md §6-7)."""
    d = fixtures_dir / "restr_small"
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "ReSTR"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.PIXEL_MEAN = [127.5] * 3
    cfg.MODEL.PIXEL_STD = [127.5] * 3
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.IMAGE_SIZE = 96
    v = cfg.MODEL.VIT
    v.IMAGE_SIZE = [96, 96]
    v.PATCH_SIZE = 16
    v.EMBED_DIM = 96
    v.DEPTH = 2
    v.NUM_HEADS = 3
    v.DROP_PATH_RATE = 0.1
    lang = cfg.MODEL.RESTR.LANGUAGE
    lang.VOCAB_FILE = str(d / "vocabulary.txt")
    lang.EMBEDDING_FILE = str(d / "glove.npy")
    lang.NUM_LAYERS = 1
    lang.NUM_HEADS = 3
    cfg.MODEL.RESTR.FUSION.NUM_HEADS = 3
    if variant == "shared":
        cfg.MODEL.RESTR.FUSION.SHARE_WEIGHTS = True
    elif variant == "nodecoder":
        cfg.MODEL.RESTR.DECODER.ENABLED = False
        cfg.MODEL.RESTR.PATCH_WEIGHT = 0.0
    elif variant != "default":
        raise ValueError(variant)
    return cfg


def official_state_dict(fixtures_dir):
    """The full official ``restr_small/state_dict.pt``, rebuilt from the stored subset: the
    embedding is ``glove.npy`` with row 0 zeroed (bitwise equal, checked when the fixture was
    made); the unused ImageNet head weight is not stored and is filled with zeros."""
    d = fixtures_dir / "restr_small"
    sd = _load(d / "state_dict.pt")
    emb = torch.from_numpy(np.load(d / "glove.npy"))
    emb[0] = 0
    keys = json.load(open(d / "keys.json"))["state_dict_keys"]
    full = {}
    for k in keys:
        if k == "encoder_l.embedding.weight":
            full[k] = emb
        elif k == "encoder_v.head.weight":
            full[k] = torch.zeros(keys[k])
        else:
            full[k] = sd[k]
    return full


@pytest.fixture(scope="session")
def restr_fixtures(request):
    from pathlib import Path

    root = FIXTURES
    io = _load(root / "restr_small" / "io.pt")
    images_u8 = io["pixels_u8_hwc"].permute(0, 3, 1, 2).contiguous()
    return {
        "root": root,
        "io": io,
        "nontrivial": _load(root / "restr_small" / "nontrivial.pt"),
        "images_u8": images_u8,
        "images": (images_u8.float() - 127.5) / 127.5,
        "gt": io["labels_u8"].float(),
        "keys": json.load(open(root / "restr_small" / "keys.json")),
        "state_dict": official_state_dict(root),
    }


def build_small(fixtures_dir, variant="default", nontrivial=False, fx=None):
    """restr_small model (eval mode) with the official weights loaded strictly."""
    model = ReSTR(small_cfg(fixtures_dir, variant)).eval()
    sd = dict(fx["state_dict"])
    if nontrivial:
        sd.update(fx["nontrivial"]["overrides"])
    keys = list(model.state_dict())
    sd = {k: sd[k] for k in keys}
    model.load_state_dict(sd, strict=True)
    return model


class _Small:
    """Accessors handed to the tests (conftest functions are not importable by name)."""

    ATOL = ATOL
    RTOL = RTOL

    def __init__(self, fx):
        self.fx = fx
        self.root = fx["root"]

    def cfg(self, variant="default"):
        return small_cfg(self.root, variant)

    def build(self, variant="default", nontrivial=False):
        return build_small(self.root, variant, nontrivial, self.fx)

    def reference(self, variant="default", nontrivial=False):
        name = "restr_small" if variant == "default" else f"restr_small_{variant}"
        return _load(self.root / name / ("nontrivial.pt" if nontrivial else "io.pt"))


@pytest.fixture(scope="session")
def small(restr_fixtures):
    return _Small(restr_fixtures)
