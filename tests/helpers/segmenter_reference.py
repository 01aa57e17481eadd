"""Shared helpers for the Segmenter tests.

The reference weights and inputs are *regenerated* from their documented seeds (see
tests/fixtures/segmenter_ref/README.md) and checked bit for bit against the SHA-256 digests
of the official tensors; only the reference outputs are stored.
"""
import hashlib
import json
from pathlib import Path

import functools

import torch

import restr_d2  # noqa: F401  (registers the backbone, heads and meta-arch)
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from restr_d2.config import add_segmenter_config

REF = Path(__file__).resolve().parent.parent / "fixtures" / "segmenter_ref"
KEYS = Path(__file__).resolve().parent.parent / "fixtures" / "segmenter_keys"
HEADS = {"mask": "SegmenterMaskTransformerHead", "linear": "SegmenterLinearHead"}
# float32 CPU tolerance suggested by the reference README (1- vs 2-thread noise is 3.8e-6)
ATOL = RTOL = 1e-5


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def fixture_cfg(head: str = "mask", attn_impl: str = "sdpa_math"):
    """The reference net: ViT d192, 2 layers, 3 heads, patch 16, image 64x96, 5 classes."""
    cfg = get_cfg()
    add_segmenter_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "Segmenter"
    cfg.MODEL.BACKBONE.NAME = "D2PlainViT"
    cfg.MODEL.SEM_SEG_HEAD.NAME = HEADS[head]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.PIXEL_MEAN = [127.5] * 3
    cfg.MODEL.PIXEL_STD = [127.5] * 3
    cfg.MODEL.DEVICE = "cpu"
    cfg.INPUT.FORMAT = "RGB"
    v = cfg.MODEL.VIT
    v.IMAGE_SIZE, v.PATCH_SIZE, v.EMBED_DIM, v.DEPTH, v.NUM_HEADS = [64, 96], 16, 192, 2, 3
    v.DROP_PATH_RATE, v.DROPOUT, v.ATTN_IMPL = 0.1, 0.0, attn_impl
    d = cfg.MODEL.SEGMENTER.DECODER
    d.NUM_LAYERS, d.DROPOUT, d.DROP_PATH_RATE = 2, 0.0, 0.0
    cfg.MODEL.SEGMENTER.TEST.WINDOW_SIZE = 64
    cfg.MODEL.SEGMENTER.TEST.WINDOW_STRIDE = 48
    cfg.MODEL.SEGMENTER.TEST.WINDOW_BATCH_SIZE = 2
    return cfg


@functools.lru_cache(None)
def digests():
    return json.loads((REF / "digests.json").read_text())


@functools.lru_cache(None)
def outputs():
    return {h: torch.load(REF / f"{h}_outputs.pt", weights_only=True) for h in HEADS}


@functools.lru_cache(None)
def inputs():
    """README §4: pixel codes from Generator seed 1 in the order a, b, c, sw, sw_small, then
    the labels; images normalized as (k/255 - 0.5)/0.5."""
    g = torch.Generator().manual_seed(1)
    shapes = {"a": (2, 3, 64, 96), "b": (1, 3, 75, 106), "c": (1, 3, 96, 64),
              "sw": (1, 3, 100, 150), "sw_small": (1, 3, 40, 150)}
    out = {}
    for k, s in shapes.items():
        px = torch.randint(0, 256, s, generator=g)
        out["pixels_" + k] = px.to(torch.uint8)
        out["im_" + k] = (px.float() / 255 - 0.5) / 0.5
    labels = torch.randint(0, 5, (2, 64, 96), generator=g)
    labels[:, :8] = 255
    labels[1, 40:, 70:] = 255
    out["labels_a"] = labels
    return out


def _overrides(state_dict):
    """README §2: all-1 tensors -> 1 + 0.2 N(0,1), all-0 -> 0.1 N(0,1), in state-dict order,
    seed 3 for encoder.*, 4 for decoder.*."""
    gens = {"encoder.": torch.Generator().manual_seed(3), "decoder.": torch.Generator().manual_seed(4)}
    out = {}
    for k, v in state_dict.items():
        g = gens[k[:8]]
        if torch.all(v == 1):
            out[k] = 1 + 0.2 * torch.randn(v.shape, generator=g)
        elif torch.all(v == 0):
            out[k] = 0.1 * torch.randn(v.shape, generator=g)
    return out


def _check_regenerated(tensors, name):
    """Every regenerated tensor equals the official one: bit for bit where this CPU's float32
    kernels round like the reference machine's, else to the last bits (the inverse-CDF sampler's
    ``erfinv`` is vectorised differently across CPUs: 1-2 ulp, ~4e-9 at std 0.02). A wrong seed,
    draw order or formula gives values off by ~1e-2, far outside the tolerance."""
    ref, probes = digests()[name], digests()[name + "_probes"]
    assert list(tensors) == list(ref), f"{name}: keys/order differ from the official model"
    assert all(list(v.shape) == ref[k][0] for k, v in tensors.items()), f"{name}: shapes differ"
    inexact = [k for k, v in tensors.items() if digest(v) != ref[k][1]]
    for k in inexact:
        p = probes[k]
        flat = tensors[k].reshape(-1).double()
        got = flat[torch.tensor(p["index"])]
        torch.testing.assert_close(got, torch.tensor(p["values"], dtype=torch.float64), rtol=0,
                                   atol=1e-7, msg=lambda m: f"{name}[{k}] differs from the official: {m}")
        assert abs(flat.abs().sum().item() - p["abs_sum"]) <= 1e-6 * p["abs_sum"], (name, k)
    return inexact


@functools.lru_cache(None)
def reference_weights():
    """{head: {"init": state_dict, "nontrivial": state_dict}}, checked against the official
    tensors' digests and probes (``_check_regenerated``). The init weights come from
    ``torch.manual_seed(0)`` + our builders, which draw random numbers in the official order."""
    weights = {}
    for head in HEADS:
        torch.manual_seed(0)
        sd = build_model(fixture_cfg(head)).state_dict()
        _check_regenerated(sd, f"{head}_state_dict")
        ov = _overrides(sd)
        _check_regenerated(ov, f"{head}_overrides")
        weights[head] = {"init": sd, "nontrivial": {**sd, **ov}}
    return weights


def load_reference_model(head, weights, attn_impl="sdpa_math"):
    torch.manual_seed(123)  # different init: everything must come from the state dict
    model = build_model(fixture_cfg(head, attn_impl)).eval()
    model.load_state_dict(reference_weights()[head][weights], strict=True)
    return model
