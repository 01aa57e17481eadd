"""tools/analysis/analyze_model.py and tools/convert/convert_pretrained_backbone.py.

The converters are checked on randomly initialised torchvision / timm models (nothing is
downloaded): the .pkl loads into the detectron2 backbone with no missing or unexpected key and
gives the source model's features.
"""
import os
import pickle

import pytest
import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)


@pytest.fixture(scope="module")
def analyze():
    from tools.analysis import analyze_model

    return analyze_model


@pytest.fixture(scope="module")
def convert():
    from tools.convert import convert_pretrained_backbone

    return convert_pretrained_backbone


# ----------------------------------------------------------------------------- analyze_model


def test_analyze_model_segmenter_hand_counted(analyze):
    """segmenter_linear: ViT d=128, 2 blocks, patch 16, 8 classes, on a 128x128 input
    (64 patches + 1 class token); every count below is done by hand."""
    res = analyze.main(["--config-file", os.path.join(REPO, "configs/shapes/segmenter_linear.yaml"),
                        "--tasks", "parameter", "flop", "--input-size", "128", "128"])
    d, tokens, mlp = 128, 65, 512
    block_params = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * mlp + mlp) + (mlp * d + d)
    encoder = d + tokens * d + (16 * 16 * 3 * d + d) + 2 * block_params + 2 * d
    decoder = d * 8 + 8
    p = res["parameter"]
    assert p["modules"] == {"encoder": (encoder, encoder), "decoder": (decoder, decoder)}
    assert p["total"] == p["trainable"] == encoder + decoder

    f = res["flop"]
    linear = 2 * tokens * (d * 3 * d + d * d + 2 * d * mlp) + 64 * d * 8  # blocks + per-patch head
    conv = 64 * (16 * 16 * 3) * d  # patch embedding
    assert f["by_operator"]["linear"] == linear
    assert f["by_operator"]["conv"] == conv
    assert f["input_size"] == (128, 128)
    assert f["total"] == sum(f["by_operator"].values())
    assert f["by_module"]["encoder"] + f["by_module"]["decoder"] <= f["total"]
    assert f["by_module"]["decoder"] >= 64 * d * 8


def test_analyze_model_mask2former_and_frozen_parameters(analyze):
    cfg_file = os.path.join(REPO, "configs/shapes/mask2former_R18_panoptic.yaml")
    res = analyze.main(["--config-file", cfg_file, "--input-size", "64", "64", "--max-depth", "1",
                        # freeze the stem and res2: 2 stages of parameters become non-trainable
                        "--opts", "MODEL.BACKBONE.FREEZE_AT", "2"])
    p = res["parameter"]
    assert set(p["modules"]) == {"backbone", "sem_seg_head"}
    backbone_total, backbone_trainable = p["modules"]["backbone"]
    assert 0 < backbone_trainable < backbone_total
    assert p["trainable"] == p["total"] - (backbone_total - backbone_trainable)
    f = res["flop"]
    assert f["total"] > 0 and f["by_module"]["backbone"] > 0 and f["by_module"]["sem_seg_head"] > 0
    # the masked-attention decoder's SDPA and the deformable attention's sampling (the default
    # "gather" core, one weighted row sum) are counted
    assert f["by_operator"]["scaled_dot_product_attention"] > 0
    assert f["by_operator"]["PythonOp.WeightedRowSum"] > 0


# ----------------------------------------------------------------------------- converters


def _d2_resnet(depth):
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False  # torchvision's layout
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()


class _Wrapper(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def _load_with_checkpointer(backbone, path):
    """``DetectionCheckpointer`` into ``model.backbone`` (the matching-heuristics path a
    config's MODEL.WEIGHTS takes); returns (missing, unexpected) keys."""
    checkpointer = DetectionCheckpointer(_Wrapper(backbone))
    incompatible = checkpointer._load_model(checkpointer._load_file(path))
    return incompatible.missing_keys, incompatible.unexpected_keys


def _randomize_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean = torch.randn(n, generator=g) * 0.1
            m.running_var = torch.rand(n, generator=g) + 0.5


def test_convert_torchvision_resnet50(convert, tmp_path):
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet50(weights=None).eval()
    _randomize_bn(tv, 50)  # non-trivial BN statistics, so that a wrong BN mapping shows
    src = tmp_path / "r50.pth"
    torch.save(tv.state_dict(), src)
    out = tmp_path / "r50.pkl"
    convert.main(["--format", "torchvision", str(src), str(out)])

    with open(out, "rb") as f:
        obj = pickle.load(f)
    assert obj["__author__"] == "torchvision" and obj["matching_heuristics"] is True
    d2 = _d2_resnet(50)
    assert set(obj["model"]) == set(d2.state_dict())
    missing, unexpected = _load_with_checkpointer(d2, str(out))
    assert missing == [] and unexpected == []

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        feats = d2(x)
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        ref = {}
        for i, layer in enumerate((tv.layer1, tv.layer2, tv.layer3, tv.layer4)):
            y = layer(y)
            ref[f"res{i + 2}"] = y
    for name, r in ref.items():
        # FrozenBN folds BN into a scale and shift: equal up to float rounding
        err = (feats[name] - r).abs().max() / r.abs().max()
        assert err < 1e-5, (name, float(err))


def test_convert_torchvision_resnet101_keys(convert):
    """Same mapping code as R-50; checked on meta tensors (no memory, no init cost)."""
    import torchvision

    with torch.device("meta"):
        converted = convert.convert_torchvision_resnet(torchvision.models.resnet101(weights=None).state_dict())
        target = _d2_resnet(101).state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in target.items()}


def test_convert_timm_swin(convert, tmp_path):
    import timm

    from maskformer_d2.modeling.backbone.swin import D2SwinTransformer

    kw = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4)
    torch.manual_seed(0)
    # timm turns the shifted window off in a stage whose map is no larger than the window
    # (res5 of a 224 px input with window 7) while the official Swin keeps it; at 256 px with
    # window 4 every stage (64 ... 8) is larger, so the two models compute the same function
    src_model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=256, **kw).eval()
    with torch.no_grad():  # random norms too, so that a norm mapped to the wrong place shows
        for n, p in src_model.named_parameters():
            if "norm" in n:
                p.add_(torch.randn_like(p) * 0.2)
    src = tmp_path / "swin.pth"
    torch.save(src_model.state_dict(), src)
    out = tmp_path / "swin.pkl"
    convert.main(["--format", "timm-swin", str(src), str(out)])

    d2 = D2SwinTransformer(out_features=["res2", "res3", "res4", "res5"], pretrain_img_size=256,
                           drop_path_rate=0.0, **kw).eval()
    with open(out, "rb") as f:
        obj = pickle.load(f)
    assert set(obj["model"]) == set(d2.state_dict())
    missing, unexpected = _load_with_checkpointer(d2, str(out))
    assert missing == [] and unexpected == []

    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        feats = d2(x)
        inter = src_model.forward_intermediates(x, norm=False, output_fmt="NCHW", intermediates_only=True)
        res5 = src_model.forward_features(x).permute(0, 3, 1, 2)  # timm's final norm included
    for i, name in enumerate(("res2", "res3", "res4")):
        # norm0-2 are new LayerNorms (weight 1, bias 0) over the channels
        ref = nn.functional.layer_norm(inter[i].permute(0, 2, 3, 1), (inter[i].shape[1],)).permute(0, 3, 1, 2)
        assert (feats[name] - ref).abs().max() < 1e-5, name
    assert feats["res5"].shape == res5.shape == (1, 256, 8, 8)
    assert (feats["res5"] - res5).abs().max() < 1e-5


def test_convert_errors(convert, tmp_path):
    with pytest.raises(ValueError, match="Not a torchvision ResNet"):
        convert.convert_torchvision_resnet({"patch_embed.proj.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="Not a timm Swin"):
        convert.convert_timm_swin({"conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="Swin V2"):
        convert.convert_timm_swin({"patch_embed.proj.weight": torch.zeros(1), "layers.0.blocks.0.attn.logit_scale": torch.zeros(1)})
    torch.save([1, 2], tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no state dict"):
        convert.load_state_dict(str(tmp_path / "bad.pth"))
