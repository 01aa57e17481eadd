"""ReSTR as a detectron2 model: training through batched inputs, fusion variants, attention
masks, full-size official key lists, configs."""
import glob
import json
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from restr_d2.config import add_restr_config
from restr_d2.modeling.language import GloVeTransformerEncoder, LanguageFeatures
from restr_d2.modeling.restr import ConjugateFusion, IndependentFusion, ReSTR, VanillaFusion
from restr_d2.modeling.restr.criterion import ReferringCriterion
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)


def _batched(small, with_gt=True):
    fx = small.fx
    sentences = fx["keys"]["sentences"]
    inputs = []
    for i in range(2):
        x = {"image": fx["images_u8"][i], "sentence": sentences[i], "height": 96, "width": 96,
             "resized_size": (96, 96)}
        if with_gt:
            x["gt_mask"] = fx["io"]["labels_u8"][i, 0]
        inputs.append(x)
    return inputs


def test_training_losses_through_batched_inputs(small):
    """model.train() with drop path active on the fixture: deterministic parts are checked in
    eval mode; here the dict layout, the weighting and the gradient flow."""
    model = small.build()
    ref = small.reference()
    model.eval()
    with torch.no_grad():
        # eval-mode losses through the training code path = official fixture losses
        model.training = True
        losses = model(_batched(small))
        model.training = False
    assert set(losses) == {"loss_pixel", "loss_patch"}
    assert torch.allclose(losses["loss_pixel"], ref["loss_pixel"], atol=1e-6)
    assert torch.allclose(losses["loss_patch"], 0.1 * ref["loss_patch"], atol=1e-6)
    assert torch.allclose(sum(losses.values()), ref["loss"], atol=1e-6)

    model.train()
    losses = model(_batched(small))
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    # every trainable tensor but the unused ImageNet head receives a gradient
    missing = [n for n, g in grads.items() if g is None and not n.startswith("encoder_v.head")]
    assert missing == []
    # the <pad> embedding row gets no gradient (padding_idx)
    assert not grads["encoder_l.embedding.weight"][0].any()


def test_training_requires_gt(small):
    model = small.build().train()
    with pytest.raises(ValueError, match="gt_mask"):
        model(_batched(small, with_gt=False))


def test_batched_inference_outputs(small):
    model = small.build()
    with torch.no_grad():
        outs = model(_batched(small, with_gt=False))
    assert len(outs) == 2
    for o in outs:
        assert o["ref_seg"].shape == (96, 96) and o["ref_seg"].dtype == torch.float32
        assert 0 <= float(o["ref_seg"].min()) and float(o["ref_seg"].max()) <= 1
        assert o["ref_score"].ndim == 0


def _lang(B=2, T=5, D=32, pad=2):
    torch.manual_seed(1)
    feats = torch.randn(B, T, D)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[:, :pad] = False
    return LanguageFeatures(feats, valid)


@pytest.mark.parametrize("cls", [ConjugateFusion, IndependentFusion, VanillaFusion])
@pytest.mark.parametrize("share", [False, True])
def test_fusion_variants_shapes_and_pad_masking(cls, share):
    torch.manual_seed(0)
    fusion = cls(d_vision=24, d_language=32, dim=32, num_layers=2, num_heads=2, share_weights=share,
                 use_decoder=True, num_upsample=2, mask_pad_tokens=True).eval()
    x_v = torch.randn(2, 12, 24)
    lang = _lang()
    with torch.no_grad():
        out = fusion(x_v, (3, 4), lang)
        # what the pad tokens hold must not matter when they are masked
        lang2 = LanguageFeatures(lang.features.clone(), lang.valid)
        lang2.features[:, :2] = 100 * torch.randn(2, 2, 32)
        out2 = fusion(x_v, (3, 4), lang2)
    assert out["patch_logits"].shape == (2, 1, 3, 4)
    assert out["pixel_logits"].shape == (2, 1, 12, 16)
    assert out["decoder_in"].shape == (2, 64, 3, 4)
    n_tokens = 12 + 5 + 1 if cls is VanillaFusion else 5 + 1
    assert out["norm_out"].shape == (2, n_tokens, 32)
    assert torch.allclose(out["pixel_logits"], out2["pixel_logits"], atol=1e-5)
    blocks = fusion.blocks if cls is VanillaFusion else fusion.blocks_vl
    assert len(blocks) == (1 if share else 2)


def test_official_fusion_ignores_pad_values_but_attends_pads():
    """Official (c): pad features are zeroed after the projection (so their content does not
    matter) but they still take part in attention (so their number does)."""
    torch.manual_seed(0)
    fusion = ConjugateFusion(d_vision=24, d_language=32, dim=32, num_heads=2, num_upsample=2).eval()
    x_v = torch.randn(1, 12, 24)
    lang = _lang(B=1)
    perturbed = LanguageFeatures(lang.features + 5 * (~lang.valid[..., None]), lang.valid)
    fewer_pads = LanguageFeatures(lang.features[:, 1:], lang.valid[:, 1:])
    with torch.no_grad():
        a = fusion(x_v, (3, 4), lang)["pixel_logits"]
        b = fusion(x_v, (3, 4), perturbed)["pixel_logits"]
        c = fusion(x_v, (3, 4), fewer_pads)["pixel_logits"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-6)


def test_variants_differ_and_share_parameter_layout():
    torch.manual_seed(0)
    kw = dict(d_vision=24, d_language=32, dim=32, num_heads=2, num_upsample=2)
    c = ConjugateFusion(**kw).eval()
    b = IndependentFusion(**kw).eval()
    b.load_state_dict(c.state_dict())  # same keys: (b) differs only in the data flow
    x_v, lang = torch.randn(1, 12, 24), _lang(B=1)
    with torch.no_grad():
        assert not torch.allclose(c(x_v, (3, 4), lang)["patch_logits"], b(x_v, (3, 4), lang)["patch_logits"])
    with pytest.raises(ValueError, match="grid"):
        c(x_v, (3, 3), lang)


def test_decoder_width_must_halve():
    with pytest.raises(ValueError, match="divisible"):
        ConjugateFusion(d_vision=24, d_language=24, dim=20, num_heads=2, num_upsample=4)


def test_upsample_block_equals_the_official_order_upsample_then_conv():
    """UpsampleBlock runs its 1x1 conv before the bilinear x2 (4x fewer FLOPs); the function is
    the official upsample -> conv -> LeakyReLU, forward and backward, and the keys are unchanged."""
    from restr_d2.modeling.restr.decoder import UpsampleBlock

    torch.manual_seed(0)
    block = UpsampleBlock(16, 8)
    assert list(block.state_dict()) == ["up.1.weight"]
    x = torch.randn(2, 16, 5, 7, requires_grad=True)
    ours = block(x)
    official = block.up(x)  # the Sequential in the official order
    assert ours.shape == official.shape == (2, 8, 10, 14)
    assert (ours - official).abs().max().item() <= 1e-6
    g = torch.randn_like(ours)
    (gx_ours, gw_ours) = torch.autograd.grad(ours, (x, block.up[1].weight), g)
    (gx_off, gw_off) = torch.autograd.grad(official, (x, block.up[1].weight), g)
    assert torch.allclose(gx_ours, gx_off, atol=1e-5) and torch.allclose(gw_ours, gw_off, atol=1e-4)


def test_criterion_interpolates_coarse_logits():
    crit = ReferringCriterion(patch_size=4, patch_weight=0.5)
    gt = torch.zeros(1, 1, 8, 8)
    gt[..., :4, :4] = 1
    logits = torch.zeros(1, 1, 2, 2)
    losses = crit(logits, logits, gt)
    assert losses["loss_pixel"].item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert crit.weights == {"loss_pixel": 1.0, "loss_patch": 0.5}
    with pytest.raises(ValueError, match="multiple of the patch size"):
        crit(logits, logits, torch.zeros(1, 1, 7, 8))


_FULL = {
    "restr_full_Gref_default.json": {},
    "restr_full_referit_default.json": {},
    "restr_full_Gref_shared.json": {"SHARE_WEIGHTS": True},
    "restr_full_Gref_nodecoder.json": {"DECODER": False},
}


@pytest.mark.parametrize("name", sorted(_FULL))
def test_full_size_official_key_lists(name, fixtures_dir, monkeypatch):
    """Our model built from configs/restr/Base-ReSTR.yaml (+ variant flag) has exactly the
    official full-size keys, shapes and parameter count (built on the meta device)."""
    linspace = torch.linspace
    # drop-path schedules are read back with .tolist(), impossible on meta tensors
    monkeypatch.setattr(torch, "linspace", lambda *a, **k: linspace(*a, **{**k, "device": "cpu"}))
    ref = json.load(open(fixtures_dir / "restr_keys" / name))
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/restr/Base-ReSTR.yaml"))
    opts = _FULL[name]
    cfg.MODEL.RESTR.FUSION.SHARE_WEIGHTS = opts.get("SHARE_WEIGHTS", False)
    cfg.MODEL.RESTR.DECODER.ENABLED = opts.get("DECODER", True)
    vocab = ["<pad>", "<go>", "<eos>", "<unk>"] + [f"w{i}" for i in range(ref["vocab_size"] - 4)]
    lang = cfg.MODEL.RESTR.LANGUAGE
    with torch.device("meta"):
        encoder_l = GloVeTransformerEncoder(
            vocab=vocab, d_model=768, d_lang=lang.D_LANG, num_layers=lang.NUM_LAYERS,
            num_heads=lang.NUM_HEADS, max_tokens=lang.MAX_TOKENS,
        )
        from restr_d2.modeling.restr import build_fusion_module, build_restr_vit

        encoder_v = build_restr_vit(cfg)
        model = ReSTR(
            encoder_v=encoder_v, encoder_l=encoder_l,
            fusion_module=build_fusion_module(cfg, 768, 768),
            criterion=ReferringCriterion(16),
        )
    sd = model.state_dict()
    assert list(sd) == list(ref["state_dict"])
    assert {k: list(v.shape) for k, v in sd.items()} == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]
    assert list(ref["not_in_state_dict"]) == ["encoder_l.pos_emb_l"]
    assert tuple(model.encoder_l.pos_embed.shape) == tuple(ref["not_in_state_dict"]["encoder_l.pos_emb_l"])


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "configs/restr/*.yaml")))
    + sorted(glob.glob(os.path.join(REPO, "configs/shapes/restr_*.yaml")))
)
def test_configs_merge(path):
    cfg = get_cfg()
    add_restr_config(cfg)
    add_restr_config(cfg)  # idempotent
    cfg.merge_from_file(path)
    assert cfg.MODEL.META_ARCHITECTURE == "ReSTR"
    # the official "vit" normalisation; the DINOv2 ViT was pretrained on ImageNet-normalised RGB
    mean = [123.675, 116.280, 103.530] if "dinov2" in os.path.basename(path) else [127.5] * 3
    assert cfg.MODEL.PIXEL_MEAN == mean and cfg.INPUT.FORMAT == "RGB"
    if "shapes" in path:
        assert cfg.DATASETS.TRAIN == ("shapes_refcoco_unc_train",)
        assert cfg.DATASETS.TEST == ("shapes_refcoco_unc_val",)
    else:
        assert cfg.INPUT.IMAGE_SIZE == 480 and cfg.MODEL.VIT.IMAGE_SIZE == [480, 480]


def test_add_restr_config_keeps_values():
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.MODEL.RESTR.PATCH_WEIGHT = 0.3
    cfg.MODEL.VIT.EMBED_DIM = 96
    add_restr_config(cfg)
    assert cfg.MODEL.RESTR.PATCH_WEIGHT == 0.3 and cfg.MODEL.VIT.EMBED_DIM == 96


@pytest.mark.parametrize("name", ["restr_shapes.yaml", "restr_shapes_nodecoder.yaml"])
def test_shapes_config_trains_one_step(name):
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/shapes", name))
    model = build_model(cfg).train()
    torch.manual_seed(0)
    gt = torch.zeros(128, 128, dtype=torch.uint8)
    gt[30:70, 40:90] = 1
    batch = [{"image": torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8),
              "sentence": "the large red circle left of the blue star", "gt_mask": gt}]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "sentence": "the red circle", "height": 150, "width": 150,
                      "resized_size": (128, 128)}])[0]
    assert out["ref_seg"].shape == (150, 150)


@pytest.mark.parametrize("patch,num_upsample,expected", [(16, None, 4), (8, None, 3), (8, 3, 3), (16, 4, 4)])
def test_decoder_depth_follows_the_patch_size(patch, num_upsample, expected):
    from restr_d2.modeling.restr.fusion import decoder_num_upsample

    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.MODEL.VIT.PATCH_SIZE = patch
    cfg.MODEL.RESTR.DECODER.NUM_UPSAMPLE = num_upsample
    assert decoder_num_upsample(cfg) == expected


def test_decoder_depth_mismatch_is_a_clear_error():
    from restr_d2.modeling.restr.fusion import decoder_num_upsample

    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.MODEL.VIT.PATCH_SIZE = 8
    cfg.MODEL.RESTR.DECODER.NUM_UPSAMPLE = 4  # the official value for patch 16
    with pytest.raises(ValueError, match="set NUM_UPSAMPLE to 3, or leave it null"):
        decoder_num_upsample(cfg)
    cfg.MODEL.RESTR.DECODER.NUM_UPSAMPLE = 0  # no longer "auto": an explicit count that is wrong
    with pytest.raises(ValueError, match="set NUM_UPSAMPLE to 3"):
        decoder_num_upsample(cfg)
    cfg.MODEL.VIT.PATCH_SIZE = 12
    cfg.MODEL.RESTR.DECODER.NUM_UPSAMPLE = None
    with pytest.raises(ValueError, match="power of two"):
        decoder_num_upsample(cfg)


def test_patch_label_statistics_tool():
    from tools.analysis import referring_patch_labels as tool

    full = torch.zeros(32, 32, dtype=torch.uint8)
    full[0:16, 0:16] = 1  # exactly one 16-px patch, four 8-px patches
    corner = torch.zeros(32, 32, dtype=torch.uint8)
    corner[14:18, 14:18] = 1  # 16 px straddling the centre: 4 patches, each 1/16 (16) or 1/4 (8) covered
    r16 = tool.patch_statistics([full, corner], 16, 0.8)
    r8 = tool.patch_statistics([full, corner], 8, 0.8)
    assert r16["median_area_patches"] == pytest.approx((1 + 16 / 256) / 2)
    assert r16["no_half_covered_patch_pct"] == 50.0 and r8["no_half_covered_patch_pct"] == 50.0
    # label precision: full = 100 %; corner = 16 px over 4 positive patches
    assert r16["label_precision_pct"] == pytest.approx(100 * (1 + 16 / (4 * 256)) / 2)
    assert r8["label_precision_pct"] == pytest.approx(100 * (1 + 16 / (4 * 64)) / 2)


def test_fusion_width_is_the_vit_width_unless_given():
    from restr_d2.modeling.restr.fusion import fusion_dim

    cfg = get_cfg()
    add_restr_config(cfg)
    assert cfg.MODEL.RESTR.FUSION.DIM is None and fusion_dim(cfg, 768) == 768
    cfg.merge_from_list(["MODEL.RESTR.FUSION.DIM", "256"])
    assert fusion_dim(cfg, 768) == 256
    cfg.MODEL.RESTR.FUSION.DIM = 0  # was "auto"; now a clear error
    with pytest.raises(ValueError, match="null .* for the ViT width"):
        fusion_dim(cfg, 768)


def test_decoder_depth_is_not_checked_without_a_decoder():
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/shapes/restr_shapes_nodecoder.yaml"))
    cfg.MODEL.VIT.PATCH_SIZE = 16
    cfg.MODEL.RESTR.DECODER.NUM_UPSAMPLE = 3  # would not match patch 16, but nothing upsamples
    model = build_model(cfg)
    assert len(model.fusion_module.decoder) == 0
