"""MODEL.INFERENCE_DTYPE (segmentation_core/precision.py): float32 by default and then exactly the
old path; bfloat16 is an error naming the missing CPU features where the CPU emulates bf16,
unless MODEL.INFERENCE_DTYPE_ALLOW_EMULATED; when it runs, the network runs in bf16, its outputs
are float32 and close to the float32 model's, and the decision is logged once."""
import logging
import os

import pytest
import torch
from detectron2.modeling import build_model

import train_net
from segmentation_core import precision
from segmentation_core.precision import (
    CpuBf16Support,
    InferencePrecision,
    UnsupportedInferenceDtypeError,
    cpu_bf16_support,
    parse_cpuinfo,
)
from tests.helpers.paths import REPO

SHAPES = os.path.join(str(REPO), "configs", "shapes")
M2F = "mask2former_R18_panoptic.yaml"  # semantic + panoptic + instance outputs
BF16 = ["MODEL.INFERENCE_DTYPE", "bfloat16"]
EMULATED = BF16 + ["MODEL.INFERENCE_DTYPE_ALLOW_EMULATED", "True"]
# Largest |bf16 - fp32| difference accepted in the per-pixel class probabilities (``sem_seg``,
# values in [0, 1]) of the seeded random Mask2Former below; measured 0.035 (bf16 keeps 8
# mantissa bits: ~0.4% per rounding, through ~40 layers).
SEM_SEG_ATOL = 0.08

NO_BF16 = CpuBf16Support("Test CPU 9000", (), "test", "AVX2")
AVX512_BF16 = CpuBf16Support("Test CPU 9000", ("avx512_bf16",), "test", "AVX512")


def _cfg(name, *opts):
    return train_net.load_config(os.path.join(SHAPES, name), ["MODEL.DEVICE", "cpu", *opts])


def _model(name, *opts):
    torch.manual_seed(0)
    return build_model(_cfg(name, *opts)).eval()


def _inputs(name=M2F, size=64):
    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8).float()
    d = {"image": img, "height": size, "width": size}
    if name.startswith("restr"):
        d["sentence"] = "the red circle on the left"
    return [d]


@pytest.fixture
def emulated_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: NO_BF16)


@pytest.fixture
def native_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: AVX512_BF16)


@pytest.mark.parametrize("name", [M2F, "segmenter_linear.yaml", "restr_shapes.yaml"])
def test_float32_by_default_in_every_family(name):
    cfg = _cfg(name)
    assert cfg.MODEL.INFERENCE_DTYPE == "float32" and cfg.MODEL.INFERENCE_DTYPE_ALLOW_EMULATED is False
    model = build_model(cfg)
    assert not model.inference_precision.reduced
    assert _cfg(name, *BF16).MODEL.INFERENCE_DTYPE == "bfloat16"


def test_unknown_dtype_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"MODEL.INFERENCE_DTYPE must be one of \['bfloat16', 'float32'\]"):
        InferencePrecision.from_config(_cfg(M2F, "MODEL.INFERENCE_DTYPE", "float16"))


def test_cpuinfo_flags_decide_native_bf16():
    x86 = "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n"
    assert parse_cpuinfo(x86) == ("Some Xeon", {"fpu", "avx2", "avx512f", "avx512_bf16", "amx_tile"})
    assert parse_cpuinfo("processor\t: 0\n") is None
    # this machine: whatever it has, the answer agrees with its /proc/cpuinfo flags
    support = cpu_bf16_support()
    if os.path.exists("/proc/cpuinfo"):
        flags = parse_cpuinfo(open("/proc/cpuinfo").read())[1]
        assert support.features == tuple(f for f in ("avx512_bf16", "amx_bf16") if f in flags)


@pytest.mark.parametrize("name", [M2F, "segmenter_linear.yaml", "restr_shapes.yaml"])
def test_bf16_on_a_cpu_without_it_is_an_error_naming_the_feature_and_the_fix(name, emulated_cpu):
    with pytest.raises(UnsupportedInferenceDtypeError) as e:
        _model(name, *BF16)
    msg = str(e.value)
    for part in ("Test CPU 9000", "avx512_bf16", "amx_bf16", "emulated",
                 "Set MODEL.INFERENCE_DTYPE float32", "MODEL.INFERENCE_DTYPE_ALLOW_EMULATED True"):
        assert part in msg, (part, msg)


def test_native_bf16_is_logged_once(native_cpu, caplog):
    with caplog.at_level(logging.INFO, logger="segmentation_core.precision"):
        model = _model(M2F, *BF16)
        with torch.no_grad():
            model(_inputs())
            model(_inputs())
    lines = [r.getMessage() for r in caplog.records if r.name == "segmentation_core.precision"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("inference in bfloat16 autocast on CPU (avx512_bf16")


def _conv_output_dtypes(model):
    """Records the dtype of the backbone stem's output on every forward."""
    seen = []
    model.backbone.stem.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen


def test_emulated_bf16_runs_in_bf16_and_gives_float32_results_close_to_fp32(emulated_cpu, caplog):
    fp32 = _model(M2F)
    with caplog.at_level(logging.WARNING, logger="segmentation_core.precision"):
        bf16 = _model(M2F, *EMULATED)
    assert any("EMULATED" in r.getMessage() and "Test CPU 9000" in r.getMessage() for r in caplog.records)
    bf16.load_state_dict(fp32.state_dict())
    dtypes_fp32, dtypes_bf16 = _conv_output_dtypes(fp32), _conv_output_dtypes(bf16)
    with torch.no_grad():
        (a,), (b,) = fp32(_inputs()), bf16(_inputs())
    assert dtypes_fp32 == [torch.float32] and dtypes_bf16 == [torch.bfloat16]

    assert b["sem_seg"].dtype == torch.float32
    diff = (a["sem_seg"] - b["sem_seg"]).abs().max().item()
    assert 0 < diff <= SEM_SEG_ATOL, diff  # > 0: it did not silently run in float32
    assert b["instances"].scores.dtype == torch.float32
    assert b["instances"].pred_masks.dtype == torch.float32
    assert b["panoptic_seg"][0].shape == a["panoptic_seg"][0].shape
    # the raw network outputs the post-processing receives are float32 too
    x = bf16.preprocess_images(_inputs()).tensor
    with torch.no_grad():
        out = bf16.network(x)
    assert out["pred_logits"].dtype == out["pred_masks"].dtype == torch.float32
    # the per-layer predictions inference does not read are left in bf16 (casting them costs
    # time), and carry no masks (the inference network does not compute them)
    assert {a["pred_logits"].dtype for a in out["aux_outputs"]} == {torch.bfloat16}
    assert all("pred_masks" not in a for a in out["aux_outputs"])


@pytest.mark.parametrize("name", ["segmenter_linear.yaml", "restr_shapes.yaml"])
def test_emulated_bf16_plain_vit_families(name, emulated_cpu):
    fp32, bf16 = _model(name), _model(name, *EMULATED)
    bf16.load_state_dict(fp32.state_dict())
    with torch.no_grad():
        (a,), (b,) = fp32(_inputs(name)), bf16(_inputs(name))
    key = "sem_seg" if "sem_seg" in a else "ref_seg"  # Segmenter: class probabilities; ReSTR: mask probability
    assert b[key].dtype == torch.float32
    diff = (a[key] - b[key]).abs().max().item()
    assert 0 < diff <= SEM_SEG_ATOL, diff


def test_float32_default_is_the_unchanged_network():
    """The default path calls the head on the backbone directly: no autocast, no casts."""
    model = _model(M2F)
    x = model.preprocess_images(_inputs()).tensor
    with torch.no_grad():
        direct = model.sem_seg_head(model.backbone(x))
        via = model.network(x)
    assert torch.equal(direct["pred_logits"], via["pred_logits"])
    assert torch.equal(direct["pred_masks"], via["pred_masks"])
    seen = _conv_output_dtypes(model)
    with torch.no_grad():
        model(_inputs())
    assert seen == [torch.float32]


def test_bf16_pixel_decoder_samples_in_float32(monkeypatch):
    """Under bf16 inference the MSDeformAttn pixel decoder's layers run in bf16 but the
    deformable sampling (offsets, weights, gather) gets float32; in training (SOLVER.AMP.CPU_BF16)
    the whole pixel decoder stays float32, as in the official code."""
    from maskformer_d2.layers import ms_deform_attn

    model = _model(M2F)
    pixel_decoder = model.sem_seg_head.pixel_decoder
    core_dtypes, ffn_dtypes = [], []
    gather = ms_deform_attn.ms_deform_attn_gather_from_offsets

    def recording_gather(value, shapes, reference_points, offsets, weights):
        core_dtypes.append({value.dtype, reference_points.dtype, offsets.dtype, weights.dtype})
        return gather(value, shapes, reference_points, offsets, weights)

    monkeypatch.setattr(ms_deform_attn, "ms_deform_attn_gather_from_offsets", recording_gather)
    layer = pixel_decoder.transformer.encoder.layers[0]
    layer.linear1.register_forward_hook(lambda m, i, o: ffn_dtypes.append(o.dtype))
    x = model.preprocess_images(_inputs()).tensor
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        pixel_decoder.forward_features(model.backbone(x))
        model.train()
        pixel_decoder.forward_features(model.backbone(x))
    assert ffn_dtypes == [torch.bfloat16, torch.float32]
    assert core_dtypes and all(d == {torch.float32} for d in core_dtypes)


@pytest.mark.parametrize("support,level,words", [
    (NO_BF16, logging.WARNING, ["EMULATED", "Test CPU 9000", "neither avx512_bf16 nor amx_bf16"]),
    (AVX512_BF16, logging.INFO, ["bfloat16 autocast on CPU", "native: avx512_bf16"]),
])
def test_cpu_bf16_training_loop_asks_the_same_detector(monkeypatch, caplog, support, level, words):
    from segmentation_core.engine.trainer import CPUAutocastTrainer, Trainer

    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: support)
    cfg = _cfg(M2F, "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.CPU_BF16", "True")
    model = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.INFO, logger="segmentation_core.engine.trainer"):
        loop = Trainer._build_loop(cfg, model, [[]], torch.optim.SGD(model.parameters(), lr=0.1))
    assert isinstance(loop, CPUAutocastTrainer)
    (record,) = [r for r in caplog.records if "Training loop" in r.getMessage()]
    assert record.levelno == level and all(w in record.getMessage() for w in words), record.getMessage()


def test_check_config_refuses_the_switch_for_a_meta_arch_that_ignores_it():
    from segmentation_core.config_checks import ConfigCheckError, check_inference_dtype_supported

    check_inference_dtype_supported(_cfg(M2F, *BF16))  # ours: reads it
    check_inference_dtype_supported(_cfg("semantic_fpn_R18_tiny.yaml"))  # float32: nothing to check
    with pytest.raises(ConfigCheckError, match="'SemanticSegmentor', which would run float32"):
        check_inference_dtype_supported(_cfg("semantic_fpn_R18_tiny.yaml", *BF16))
