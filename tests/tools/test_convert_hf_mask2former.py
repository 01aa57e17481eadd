"""Hugging Face Mask2Former (Swin) -> official-key detectron2 checkpoint.

* full size: the converted key set, shapes and order equal the official Swin-T model's;
* leftovers in either direction are errors naming the keys; legacy hub names convert alike;
* tiny random model: our model loads the converted weights with strict=True and its class and
  mask logits of every decoder layer equal the Hugging Face model's on the same image.
"""
import json
import os

import pytest
import torch

from tools.convert.hf_mask2former import (
    ConversionError, build_d2_cfg, check_expected_keys, convert_hf_to_d2, d2_cfg_to_hf_config,
    hf_config_to_d2_options, rename_legacy_hf_keys,
)
from tools.benchmark.presets import get_preset

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "convert_hf_mask2former")


def _hf_swin_t_config(num_labels=133):
    from transformers import Mask2FormerConfig, SwinConfig

    swin = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                      drop_path_rate=0.3, out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(backbone_config=swin, num_labels=num_labels)


@pytest.fixture(scope="module")
def full_size_hf_state_dict():
    from transformers import Mask2FormerForUniversalSegmentation

    with torch.device("meta"):  # shapes only: no memory, no init time
        model = Mask2FormerForUniversalSegmentation(_hf_swin_t_config())
    return model.state_dict()


def test_full_size_keys_shapes_and_order_equal_official(full_size_hf_state_dict):
    with open(os.path.join(FIXTURE, "m2f_coco_panoptic_swin_tiny.json")) as f:
        official = json.load(f)
    converted = convert_hf_to_d2(full_size_hf_state_dict)
    check_expected_keys(converted, official)
    assert list(converted) == list(official)
    assert len(official) == 482
    idx = converted["backbone.layers.0.blocks.0.attn.relative_position_index"]
    assert idx.dtype == torch.int64 and idx.shape == (49, 49)
    assert int(idx[0, 0]) == 84 and int(idx.max()) == 168 and int(idx.min()) == 0


def test_leftover_keys_are_errors(full_size_hf_state_dict):
    sd = dict(full_size_hf_state_dict)
    sd["model.transformer_module.decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"1 Hugging Face keys have no official counterpart: "
                                              r"model\.transformer_module\.decoder\.extra\.weight"):
        convert_hf_to_d2(sd)
    sd = dict(full_size_hf_state_dict)
    del sd["model.transformer_module.decoder.layers.3.self_attn.k_proj.bias"]
    with pytest.raises(ConversionError, match=r"layers\.3\.self_attn\.k_proj\.bias"):
        convert_hf_to_d2(sd)


def test_check_expected_keys_names_every_problem(full_size_hf_state_dict):
    with open(os.path.join(FIXTURE, "m2f_coco_panoptic_swin_tiny.json")) as f:
        official = json.load(f)
    converted = convert_hf_to_d2(full_size_hf_state_dict)
    del converted["sem_seg_head.predictor.query_feat.weight"]
    converted["sem_seg_head.predictor.bogus"] = torch.zeros(1)
    converted["sem_seg_head.predictor.class_embed.bias"] = torch.zeros(81)
    with pytest.raises(ConversionError) as e:
        check_expected_keys(converted, official)
    msg = str(e.value)
    assert "1 official keys not produced: sem_seg_head.predictor.query_feat.weight" in msg
    assert "1 converted keys not in the official model: sem_seg_head.predictor.bogus" in msg
    assert "class_embed.bias: converted [81] vs expected [134]" in msg


def test_legacy_hub_names_convert_identically():
    from transformers import Mask2FormerForUniversalSegmentation

    from tools.convert.hf_mask2former import swin_relative_position_index

    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(d2_cfg_to_hf_config(_tiny_cfg()))
    current = model.state_dict()
    legacy = {}
    prefix = "model.pixel_level_module.encoder.swin."
    for k, v in current.items():
        if k.startswith(prefix + "layernorm."):
            continue  # the unused final norm did not exist in legacy backbones
        if k.startswith(prefix):
            rest = k[len(prefix):]
            for new, old in [("attention.relative_position_bias.relative_position_bias_table",
                              "attention.self.relative_position_bias_table"),
                             ("attention.q_proj", "attention.self.query"),
                             ("attention.k_proj", "attention.self.key"),
                             ("attention.v_proj", "attention.self.value"),
                             ("attention.o_proj", "attention.output.dense"),
                             ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")]:
                rest = rest.replace(new, old)
            k = "model.pixel_level_module.encoder." + rest  # old backbones had no `swin.` level
            if rest.endswith("attention.self.relative_position_bias_table"):
                legacy[k.replace("bias_table", "index")] = swin_relative_position_index(7).flatten()
        legacy[k] = v
    assert any(".attention.self.query.weight" in k for k in legacy)
    assert set(rename_legacy_hf_keys(legacy)) - set(current) == {
        k for k in rename_legacy_hf_keys(legacy) if k.endswith("relative_position_index")}
    a, b = convert_hf_to_d2(current), convert_hf_to_d2(legacy)
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _tiny_cfg():
    p = get_preset("tiny_m2f_swin")
    return build_d2_cfg(p.options, p.base_config)


def test_config_round_trip():
    cfg = _tiny_cfg()
    hf_config = d2_cfg_to_hf_config(cfg)
    assert (hf_config.num_labels, hf_config.hidden_dim, hf_config.decoder_layers) == (10, 64, 4)
    back = build_d2_cfg(hf_config_to_d2_options(hf_config))
    for key in ["SWIN.EMBED_DIM", "SWIN.DEPTHS", "SWIN.NUM_HEADS", "SWIN.WINDOW_SIZE",
                "SEM_SEG_HEAD.NUM_CLASSES", "SEM_SEG_HEAD.CONVS_DIM", "SEM_SEG_HEAD.MASK_DIM",
                "SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "MASK_FORMER.HIDDEN_DIM",
                "MASK_FORMER.NHEADS", "MASK_FORMER.DIM_FEEDFORWARD", "MASK_FORMER.DEC_LAYERS",
                "MASK_FORMER.NUM_OBJECT_QUERIES", "MASK_FORMER.PRE_NORM"]:
        a, b = cfg.MODEL, back.MODEL
        for part in key.split("."):
            a, b = a[part], b[part]
        assert list(a) == list(b) if isinstance(a, (list, tuple)) else a == b, key
    hf_config.encoder_feedforward_dim = 512
    with pytest.raises(ConversionError, match="hard-codes 1024"):
        hf_config_to_d2_options(hf_config)


@pytest.fixture(scope="module")
def tiny_pair():
    """Seeded tiny HF model with every float tensor perturbed (no constant init tensor can hide
    a permutation), its conversion, and our model loaded with strict=True."""
    from detectron2.modeling import build_model
    from transformers import Mask2FormerForUniversalSegmentation

    import maskformer_d2  # noqa: F401

    cfg = _tiny_cfg()
    torch.manual_seed(0)
    hf = Mask2FormerForUniversalSegmentation(d2_cfg_to_hf_config(cfg)).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    converted = convert_hf_to_d2(hf.state_dict())
    ours = build_model(cfg).eval()
    ours.load_state_dict(converted, strict=True)
    return cfg, hf, ours


def test_tiny_model_outputs_equal_hf_per_layer(tiny_pair):
    cfg, hf, ours = tiny_pair
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (2, 3, 128, 192), generator=g).float()  # multiple of 32: no pad
    with torch.inference_mode():
        x = (image - ours.pixel_mean) / ours.pixel_std
        out = ours.sem_seg_head(ours.backbone(x))
        ref = hf(pixel_values=x, output_auxiliary_logits=True)
    ours_layers = out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_masks": out["pred_masks"]}]
    hf_layers = ref.auxiliary_logits + [{"class_queries_logits": ref.class_queries_logits,
                                         "masks_queries_logits": ref.masks_queries_logits}]
    assert len(ours_layers) == len(hf_layers) == cfg.MODEL.MASK_FORMER.DEC_LAYERS
    for a, b in zip(ours_layers, hf_layers):
        assert a["pred_logits"].shape == (2, 16, 11)
        assert a["pred_masks"].shape == (2, 16, 32, 48)
        torch.testing.assert_close(a["pred_logits"], b["class_queries_logits"], atol=1e-4, rtol=0)
        torch.testing.assert_close(a["pred_masks"], b["masks_queries_logits"], atol=1e-4, rtol=0)
    # the comparison is not vacuous: the layers' predictions differ from each other
    assert (ours_layers[0]["pred_masks"] - ours_layers[-1]["pred_masks"]).abs().max() > 1e-2


def test_cli_converts_a_saved_model_and_verifies_strict_load(tiny_pair, tmp_path):
    from tools.convert.convert_hf_mask2former import main

    cfg, hf, ours = tiny_pair
    hf.save_pretrained(tmp_path / "hf")
    out, yaml_path = tmp_path / "model.pth", tmp_path / "model.yaml"
    assert main(["--hf-model", str(tmp_path / "hf"), "--output", str(out),
                 "--config-out", str(yaml_path), "--verify-config", str(yaml_path)]) == 0
    ckpt = torch.load(out, weights_only=True)
    sd = ours.state_dict()
    assert set(ckpt["model"]) == set(sd)
    assert all(torch.equal(ckpt["model"][k], sd[k]) for k in sd)


def test_cli_writes_safetensors_from_a_safetensors_state_dict(tiny_pair, tmp_path):
    from safetensors.torch import save_file

    from segmentation_core.safe_checkpoint import load_checkpoint_file
    from tools.convert.convert_hf_mask2former import main

    cfg, hf, ours = tiny_pair
    hf.config.to_json_file(str(tmp_path / "config.json"))
    save_file({k: v.contiguous().clone() for k, v in hf.state_dict().items()}, str(tmp_path / "hf.safetensors"))
    out, yaml_path = tmp_path / "model.safetensors", tmp_path / "model.yaml"
    assert main(["--hf-model", str(tmp_path / "hf.safetensors"), "--hf-config", str(tmp_path / "config.json"),
                 "--output", str(out), "--config-out", str(yaml_path), "--verify-config", str(yaml_path)]) == 0
    ckpt = load_checkpoint_file(str(out))
    assert ckpt["__author__"] == "convert_hf_mask2former" and ckpt["matching_heuristics"] is False
    sd = ours.state_dict()
    assert set(ckpt["model"]) == set(sd)
    assert all(torch.equal(ckpt["model"][k], sd[k]) for k in sd)
