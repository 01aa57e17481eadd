"""Parity with the official ReSTR (tests/fixtures/restr_small*, README_segmenter_restr.md §6-7):
official weights load with strict=True, and every stored intermediate and loss matches within
atol = rtol = 1e-5, for the official init and for the non-trivial weights."""
import json

import pytest
import torch
import torch.nn.functional as F

from restr_d2.modeling.restr import patch_labels

TOL = dict(atol=1e-5, rtol=1e-5)


def _max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


def _check(name, ours, ref):
    assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
    assert torch.allclose(ours, ref, **TOL), f"{name}: max abs diff {_max_diff(ours, ref):.3g}"


def _run(model, small):
    fx = small.fx
    with torch.no_grad():
        out = model.predict(fx["images"], tokens={"input_ids": fx["io"]["texts"]})
        raw = model.criterion(out["pixel_logits"], out["patch_logits"], fx["gt"])
        weighted = model.losses(out, fx["gt"])
    out["loss_pixel"] = raw["loss_pixel"]
    out["loss_patch"] = raw["loss_patch"]
    out["loss"] = sum(weighted.values())
    return out


# fixture key -> our output key
_MAP = {
    "pixel_pred": "pixel_logits",
    "patch_pred": "patch_logits",
    "decoder_in": "decoder_in",
    "fusion_norm_out": "norm_out",
    "enc_v_feats": "vision_features",
    "enc_l_feats": "language_features",
    "loss_pixel": "loss_pixel",
    "loss_patch": "loss_patch",
    "loss": "loss",
}


def test_state_dict_keys_and_order_equal_official(small):
    model = small.build()
    sd = model.state_dict()
    ref = small.fx["keys"]["state_dict_keys"]
    assert list(sd) == list(ref)
    assert {k: list(v.shape) for k, v in sd.items()} == ref
    assert sum(p.numel() for p in model.parameters()) == small.fx["keys"]["num_params"] == 2035528
    # the language position encoding is not part of the checkpoint but equals the official one
    assert "encoder_l.pos_emb_l" not in sd
    # float32 sin/cos/exp kernels differ by an ulp between CPUs: compare to the ulp, not bits
    torch.testing.assert_close(model.encoder_l.pos_embed, small.fx["io"]["pos_emb_l"], rtol=0, atol=1e-6)


def test_glove_npy_initialises_embedding_with_zero_pad_row(small):
    from restr_d2.modeling.restr import ReSTR

    model = ReSTR(small.cfg())  # fresh init, no checkpoint
    emb = model.encoder_l.embedding.weight.detach()
    ref = small.fx["state_dict"]["encoder_l.embedding.weight"]
    assert torch.equal(emb, ref)
    assert not emb[0].any()


@pytest.mark.parametrize("nontrivial", [False, True], ids=["init", "nontrivial"])
def test_restr_small_parity(small, nontrivial):
    model = small.build(nontrivial=nontrivial)
    ref = small.reference(nontrivial=nontrivial)
    out = _run(model, small)
    checked = 0
    for fkey, okey in _MAP.items():
        if fkey in ref:
            _check(fkey, out[okey], ref[fkey])
            checked += 1
    assert checked == 9


def test_patch_labels_official_count_threshold(small):
    io = small.fx["io"]
    labels = patch_labels(small.fx["gt"], 16, 0.8)
    assert torch.equal(labels, io["p_labels"])
    counts = F.avg_pool2d(small.fx["gt"], 16) * 256
    assert torch.equal(counts, io["patch_fg_counts"])
    # the patch holding only pixel (85, 90) is positive: threshold compares with a count
    assert io["patch_fg_counts"][0, 0, 5, 5] == 1 and labels[0, 0, 5, 5] == 1
    # a fraction threshold (0.8 * 256 pixels) would give other labels
    assert not torch.equal(patch_labels(small.fx["gt"], 16, 0.8 * 256), labels)


@pytest.mark.parametrize("variant", ["shared", "nodecoder"])
@pytest.mark.parametrize("nontrivial", [False, True], ids=["init", "nontrivial"])
def test_variant_parity(small, variant, nontrivial):
    model = small.build(variant, nontrivial=nontrivial)
    vdir = small.root / f"restr_small_{variant}"
    keys = json.load(open(vdir / "keys.json"))
    sd = model.state_dict()
    assert list(sd) == list(keys["state_dict_keys"])
    assert sum(p.numel() for p in model.parameters()) == keys["num_params"]
    ref = small.reference(variant, nontrivial)
    out = _run(model, small)
    fixture_keys = ["patch_pred", "fusion_norm_out", "loss_pixel", "loss_patch", "loss"]
    if variant == "shared":
        fixture_keys += ["pixel_pred", "decoder_in"]
        assert len(model.fusion_module.blocks_vl) == 1 and model.fusion_module._repeats == 2
    else:
        # no decoder: pixel logits are the patch logits; the stored upsampling is bilinear
        # align_corners=True to the input size
        assert "decoder_in" not in out and len(model.fusion_module.decoder) == 0
        assert torch.equal(out["pixel_logits"], out["patch_logits"])
        up = F.interpolate(out["pixel_logits"], size=(96, 96), mode="bilinear", align_corners=True)
        _check("pixel_pred_upsampled", up, ref["pixel_pred_upsampled"])
        # official --no_decoder: alpha_loc = 0, so loss == loss_pixel
        assert torch.equal(out["loss"], out["loss_pixel"])
    for fkey in fixture_keys:
        _check(f"{variant}/{fkey}", out[_MAP[fkey]], ref[fkey])


def test_sdpa_is_used_and_matches_explicit_softmax(small):
    """The fusion/language blocks use scaled_dot_product_attention; an explicit softmax gives
    the same numbers (within 1e-5)."""
    from restr_d2.modeling.language.blocks import MaskedSelfAttention

    torch.manual_seed(0)
    attn = MaskedSelfAttention(96, 3).eval()
    x = torch.randn(2, 57, 96)
    with torch.no_grad():
        ours = attn(x)
        qkv = attn.qkv(x).reshape(2, 57, 3, 3, 32).permute(2, 0, 3, 1, 4)
        q, k, v = qkv
        ref = ((q @ k.transpose(-2, -1)) * 32**-0.5).softmax(-1) @ v
        ref = attn.proj(ref.transpose(1, 2).reshape(2, 57, 96))
    assert torch.allclose(ours, ref, atol=1e-6)
