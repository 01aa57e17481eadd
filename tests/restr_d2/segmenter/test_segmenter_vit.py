"""Plain ViT variants, the detectron2 backbone wrapper and the converter CLI."""
from functools import partial

import pytest
import torch

from restr_d2.modeling.backbone import D2PlainViT, VisionTransformer
from restr_d2.modeling.segmenter import Segmenter, SegmenterCheckpointer
from tests.helpers.segmenter_reference import fixture_cfg, max_diff, reference_weights
from tests.helpers.paths import REPO as REPOSITORY

ROOT = REPOSITORY


@pytest.mark.parametrize("patch,distilled", [(8, False), (32, False), (16, True)])
def test_vit_variants_any_size(patch, distilled):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=(64, 64), patch_size=patch, embed_dim=64, depth=1, num_heads=2,
                            distilled=distilled, num_classes=10).eval()
    T = 2 if distilled else 1
    assert vit.num_extra_tokens == T and ("dist_token" in vit.state_dict()) == distilled
    x = torch.randn(2, 3, 96, 64)  # a grid other than the training one
    with torch.no_grad():
        f = vit.forward_features(x)
        assert f.shape == (2, T + (96 // patch) * (64 // patch), 64)
        assert vit(x).shape == (2, 10)
        # the D2 wrapper pads to the patch multiple and returns the patch grid
        d2 = D2PlainViT(image_size=(64, 64), patch_size=patch, embed_dim=64, depth=1, num_heads=2,
                        distilled=distilled, num_classes=10).eval()
        d2.load_state_dict(vit.state_dict(), strict=True)
        fmap = d2(x)["vit"]
        assert fmap.shape == (2, 64, 96 // patch, 64 // patch)
        assert max_diff(fmap.flatten(2).transpose(1, 2), f[:, T:]) == 0.0
        odd = d2(x[..., :90, :61])["vit"]
        assert odd.shape == (2, 64, -(-90 // patch), -(-61 // patch))
    assert d2.output_shape()["vit"].stride == patch and d2.size_divisibility == patch


def test_sdpa_impls_agree_with_math():
    torch.manual_seed(0)
    kw = dict(image_size=(64, 96), patch_size=16, embed_dim=192, depth=2, num_heads=3)
    ref = VisionTransformer(attn_impl="math", **kw).eval()
    x = torch.randn(1, 3, 64, 96)
    for impl in ("sdpa_math", "sdpa"):
        m = VisionTransformer(attn_impl=impl, **kw).eval()
        m.load_state_dict(ref.state_dict())
        with torch.no_grad():
            d = max_diff(m.forward_features(x), ref.forward_features(x))
        print(f"DIFF {impl} vs math: {d:.3g}")
        assert d <= (0.0 if impl == "sdpa_math" else 1e-5)
    with pytest.raises(ValueError, match="attn_impl must be one of"):
        VisionTransformer(attn_impl="flash", **kw)


def _tool():
    from tools.convert import convert_segmenter_checkpoint

    return convert_segmenter_checkpoint


def test_converter_cli(tmp_path):
    tool = _tool()
    sd = reference_weights()["linear"]["nontrivial"]
    torch.save({"model": sd, "optimizer": {}, "epoch": 1}, tmp_path / "official.pth")
    tool.main(["--from", "segmenter", str(tmp_path / "official.pth"), str(tmp_path / "a.pth")])
    model = Segmenter(fixture_cfg("linear"))
    SegmenterCheckpointer(model).load(str(tmp_path / "a.pth"))
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())

    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    torch.manual_seed(1)
    src = timm_vit.VisionTransformer(img_size=64, patch_size=16, embed_dim=192, depth=2, num_heads=3,
                                     num_classes=21, norm_layer=partial(torch.nn.LayerNorm, eps=1e-5))
    torch.save(src.state_dict(), tmp_path / "timm.pth")
    with pytest.raises(ValueError, match="choose head='reinit'"):
        tool.main(["--from", "timm", str(tmp_path / "timm.pth"), str(tmp_path / "b.pth"), "--image-size", "64", "96"])
    tool.main(["--from", "timm", str(tmp_path / "timm.pth"), str(tmp_path / "b.pth"),
               "--image-size", "64", "96", "--head", "reinit"])
    model = Segmenter(fixture_cfg("mask"))
    dec_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    SegmenterCheckpointer(model).load(str(tmp_path / "b.pth"))
    assert torch.equal(model.encoder.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    assert model.encoder.pos_embed.shape == (1, 25, 192)
    assert all(torch.equal(v, dec_before[k]) for k, v in model.decoder.state_dict().items())


@pytest.mark.parametrize("attn_impl", ["sdpa", "sdpa_math", "math"])
def test_attention_qkv_gradient_assembled_in_one_copy(attn_impl):
    """q, k, v from unbind(2) + transpose of the (B, N, 3, heads, d) projection: the official
    permute(2, 0, 3, 1, 4) + unbind(0) tensors (same strides), so the same outputs and
    gradients bit for bit, with one PermuteBackward (and its gradient copy) fewer."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from restr_d2.modeling.backbone.blocks import Attention
    from tests.helpers.autograd import assert_same_forward_and_gradients, fused_qkv_reference

    torch.manual_seed(0)
    attn = Attention(32, 4, attn_impl=attn_impl).train()
    x = torch.randn(2, 7, 32)

    def official(t):
        q, k, v = fused_qkv_reference(attn.qkv(t), 4)
        if attn_impl == "math":
            out = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1) @ v
        elif attn_impl == "sdpa_math":
            with sdpa_kernel(SDPBackend.MATH):
                out = torch.nn.functional.scaled_dot_product_attention(q * attn.scale, k, v, scale=1.0)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(q * attn.scale, k, v, scale=1.0)
        return attn.proj(out.transpose(1, 2).reshape(t.shape))

    nodes, official_nodes = assert_same_forward_and_gradients(attn, attn, official, x)
    assert nodes["PermuteBackward0"] == official_nodes["PermuteBackward0"] - 1
