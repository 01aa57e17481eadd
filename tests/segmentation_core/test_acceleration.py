"""MODEL.COMPILE / MODEL.CHANNELS_LAST (segmentation_core/acceleration.py): off by default, applied by
every meta-arch's constructor (so build_model, Trainer and DefaultPredictor see it), state dict
unchanged, same outputs, and the compiled code is what actually runs."""
import logging
import os

import pytest
import torch
from detectron2.modeling import build_model

import train_net
from segmentation_core.acceleration import Acceleration, channels_last_modules
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
SHAPES = os.path.join(REPO, "configs", "shapes")

# (config, image encoder attribute, entry method the meta-arch calls on it)
FAMILIES = [
    ("mask2former_R18_semantic.yaml", "backbone", "forward"),
    ("segmenter_linear.yaml", "encoder", "forward"),
    ("restr_shapes.yaml", "encoder_v", "forward_features"),
]

COMPILED_GRAPHS = []


@torch._dynamo.register_backend(name="restr_d2_test_counting")
def _counting_backend(gm, example_inputs):
    """Runs the captured graph eagerly; counts captures (proves the compiled path ran)."""
    COMPILED_GRAPHS.append(len(list(gm.graph.nodes)))
    return gm.forward


def _model(cfg_name, *opts, seed=0):
    cfg = train_net.load_config(os.path.join(SHAPES, cfg_name), ["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(seed)
    return build_model(cfg).eval()


def _inputs(cfg_name):
    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (3, 64, 64), generator=g, dtype=torch.uint8).float()
    d = {"image": img, "height": 64, "width": 64}
    if cfg_name.startswith("restr"):
        d["sentence"] = "the red circle on the left"
    return [d]


def _outputs(model, inputs):
    with torch.no_grad():
        (out,) = model(inputs)
    return out


def _assert_same_outputs(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, dict):
            _assert_same_outputs(va, vb, atol)
        elif isinstance(va, torch.Tensor):
            torch.testing.assert_close(va, vb, atol=atol, rtol=1e-5, msg=k)


def test_off_by_default():
    for cfg_name, encoder, _ in FAMILIES:
        cfg = train_net.load_config(os.path.join(SHAPES, cfg_name), ["MODEL.DEVICE", "cpu"])
        acc = Acceleration.from_config(cfg)
        assert not acc.compile and not acc.channels_last
        model = build_model(cfg)
        assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())
        assert "forward_features" not in vars(getattr(model, encoder))
        assert channels_last_modules(model) == []


@pytest.mark.parametrize("cfg_name,encoder,entry", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_compile_keeps_state_dict_and_outputs(cfg_name, encoder, entry, caplog):
    plain = _model(cfg_name)
    with caplog.at_level(logging.INFO, logger="segmentation_core.acceleration"):
        compiled = _model(cfg_name, "MODEL.COMPILE.ENABLED", "True",
                          "MODEL.COMPILE.BACKEND", "restr_d2_test_counting")
    assert f"torch.compile: {type(compiled).__name__}.{encoder}.{entry}" in caplog.text
    # compiled in place: the keys a checkpoint has are the plain model's, no "_orig_mod."
    assert list(compiled.state_dict()) == list(plain.state_dict())
    compiled.load_state_dict(plain.state_dict(), strict=True)
    inputs = _inputs(cfg_name)
    before = len(COMPILED_GRAPHS)
    _assert_same_outputs(_outputs(compiled, inputs), _outputs(plain, inputs), atol=1e-6)
    assert len(COMPILED_GRAPHS) > before, "the compiled encoder was not what ran"


def test_compile_training_step_same_gradients():
    torch.manual_seed(0)
    plain = _model("segmenter_linear.yaml").train()
    compiled = _model("segmenter_linear.yaml", "MODEL.COMPILE.ENABLED", "True",
                      "MODEL.COMPILE.BACKEND", "restr_d2_test_counting").train()
    compiled.load_state_dict(plain.state_dict(), strict=True)
    (d,) = _inputs("segmenter_linear.yaml")
    d["sem_seg"] = torch.randint(0, 3, (64, 64), generator=torch.Generator().manual_seed(2))
    grads = []
    for model in (plain, compiled):
        torch.manual_seed(3)  # dropout / drop-path draws
        loss = sum(model([d]).values())
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-5, msg=n)


def test_compile_inductor_matches_eager():
    """The default backend really generates and runs code for a (tiny) ViT encoder."""
    plain = _model("segmenter_linear.yaml", "MODEL.VIT.DEPTH", "1")
    compiled = _model("segmenter_linear.yaml", "MODEL.VIT.DEPTH", "1", "MODEL.COMPILE.ENABLED", "True")
    compiled.load_state_dict(plain.state_dict(), strict=True)
    inputs = _inputs("segmenter_linear.yaml")
    _assert_same_outputs(_outputs(compiled, inputs), _outputs(plain, inputs), atol=1e-5)


def test_channels_last_mask2former(caplog):
    plain = _model("mask2former_R18_semantic.yaml")
    with caplog.at_level(logging.INFO, logger="segmentation_core.acceleration"):
        cl = _model("mask2former_R18_semantic.yaml", "MODEL.CHANNELS_LAST.ENABLED", "True",
                    "MODEL.CHANNELS_LAST.MODULES", "['backbone', 'sem_seg_head.pixel_decoder']")
    assert "channels-last memory format: MaskFormer.sem_seg_head.pixel_decoder" in caplog.text
    assert channels_last_modules(cl) == ["backbone", "sem_seg_head.pixel_decoder"]
    assert list(cl.state_dict()) == list(plain.state_dict())
    cl.load_state_dict(plain.state_dict(), strict=True)
    # loading keeps the destination's memory format
    assert cl.backbone.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.backbone.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    inputs = _inputs("mask2former_R18_semantic.yaml")
    _assert_same_outputs(_outputs(cl, inputs), _outputs(plain, inputs), atol=1e-4)


def test_unknown_module_is_a_clear_error():
    with pytest.raises(ValueError, match=r"MODEL.COMPILE.MODULES names 'pixel_decoder'.*sem_seg_head"):
        _model("mask2former_R18_semantic.yaml", "MODEL.COMPILE.ENABLED", "True",
               "MODEL.COMPILE.MODULES", "['pixel_decoder']")
    with pytest.raises(ValueError, match=r"MODEL.CHANNELS_LAST.MODULES names 'backbone'.*encoder_v"):
        _model("restr_shapes.yaml", "MODEL.CHANNELS_LAST.ENABLED", "True",
               "MODEL.CHANNELS_LAST.MODULES", "['backbone']")
