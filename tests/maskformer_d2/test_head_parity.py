"""MaskFormerHead parity with the official Mask2Former / MaskFormer heads (fixtures produced by the
unmodified official code; see tests/fixtures/m2f_head/README.md)."""
import json
import logging

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_sem_seg_head
from detectron2.projects.deeplab import add_deeplab_config

from maskformer_d2 import add_mask_former_config, add_maskformer2_config
from tests.helpers.paths import FIXTURES

FIX = FIXTURES
ATOL = RTOL = 1e-5
R50_SHAPES = {"res2": (256, 4), "res3": (512, 8), "res4": (1024, 16), "res5": (2048, 32)}
FEATURE_SIZES = {"res2": (32, 40), "res3": (16, 20), "res4": (8, 10), "res5": (4, 5)}
# Float64 sums and first/last values of the features the fixtures were generated from (README §3).
FEATURE_CHECKS = {
    "res2": (-816.9708777241717, -1.5255959033966064, 0.9054830074310303),
    "res3": (-57.943366587113815, 0.5486451983451843, -0.10357888787984848),
    "res4": (544.3413494379274, -0.7852119207382202, -1.0080444812774658),
    "res5": (-14.391914880217882, 0.41132742166519165, -0.535021960735321),
}
ADDERS = {"m2f_head": add_maskformer2_config, "mf_head": add_mask_former_config}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # On the shared 2-core machine, 2 intra-op threads make these small forwards ~30x slower under
    # load (spin-waiting). One thread moves outputs by <= 3e-6 (README §2), inside the tolerance.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def input_shape():
    return {k: ShapeSpec(channels=c, stride=s) for k, (c, s) in R50_SHAPES.items()}


def load_cfg(name, *opts):
    cfg = get_cfg()
    add_deeplab_config(cfg)
    ADDERS[name](cfg)
    cfg.merge_from_file(str(FIX / name / "config.yaml"))
    cfg.merge_from_list(list(opts))
    return cfg


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def features():
    """README §3: one torch.randn per key (res2..res5) from Generator().manual_seed(1), batch 2."""
    g = torch.Generator().manual_seed(1)
    feats = {}
    for k, (c, _) in R50_SHAPES.items():
        feats[k] = torch.randn((2, c) + FEATURE_SIZES[k], generator=g)
        total, first, last = FEATURE_CHECKS[k]
        assert feats[k].double().sum().item() == pytest.approx(total, abs=1e-6)
        assert feats[k].flatten()[0].item() == first and feats[k].flatten()[-1].item() == last
    return feats


def max_diffs(got, ref, prefix=""):
    """Flatten nested dict/list outputs into {name: max abs diff}, asserting equal structure."""
    if isinstance(ref, dict):
        assert set(got) >= set(ref), f"{prefix}: missing {set(ref) - set(got)}"
        out = {}
        for k in ref:
            out.update(max_diffs(got[k], ref[k], f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), f"{prefix}: {len(got)} entries, expected {len(ref)}"
        out = {}
        for i, (g, r) in enumerate(zip(got, ref)):
            out.update(max_diffs(g, r, f"{prefix}[{i}]"))
        return out
    assert got.shape == ref.shape, f"{prefix}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=RTOL, msg=lambda m: f"{prefix}: {m}")
    return {prefix: (got - ref).abs().max().item()}


def build_head(name, *opts):
    torch.manual_seed(0)
    return build_sem_seg_head(load_cfg(name, *opts), input_shape()).eval()


@pytest.mark.parametrize("name", ["m2f_head", "mf_head"])
def test_state_dict_keys_order_and_shapes(name):
    head = build_head(name)
    expected = json.loads((FIX / name / "state_dict_keys.json").read_text())
    got = [(k, list(v.shape)) for k, v in head.state_dict().items()]
    assert got == list(expected.items())


CASES = [("m2f_head", "init"), ("m2f_head", "nontrivial"), ("mf_head", "init"), ("mf_head", "nontrivial")]


@pytest.mark.parametrize("name,weights", CASES)
def test_head_outputs_match_official(name, weights, features):
    head = build_head(name)
    state = load(FIX / name / "state_dict.pt")
    if weights == "init":
        ref_out = load(FIX / name / "outputs.pt")
        ref_pd = load(FIX / name / "pixel_decoder_outputs.pt")
    else:
        nontrivial = load(FIX / name / "nontrivial.pt")
        state = {**state, **nontrivial["overrides"]}
        ref_out, ref_pd = nontrivial["outputs"], nontrivial["pixel_decoder_outputs"]
    head.load_state_dict(state, strict=True)
    # Record the pixel decoder's outputs during the head's own forward (one pass, not two).
    recorded = []
    forward_features = head.pixel_decoder.forward_features
    head.pixel_decoder.forward_features = lambda f: recorded.append(forward_features(f)) or recorded[-1]
    with torch.no_grad():
        out = head(features)
    assert len(recorded) == 1
    mask_features, encoder_features, multi_scale = recorded[0]
    n_aux = 3 if name == "m2f_head" else 2
    assert len(out["aux_outputs"]) == n_aux
    diffs = max_diffs(out, ref_out)
    pd = {"mask_features": mask_features, "transformer_encoder_features": encoder_features,
          "multi_scale_features": multi_scale}
    diffs.update(max_diffs({k: pd[k] for k in ref_pd}, ref_pd, "pixel_decoder"))
    print(f"\n[{name}/{weights}] max abs diff per output:")
    for k, v in diffs.items():
        print(f"  {k}: {v:.3g}")


@pytest.mark.parametrize("impl", ["pytorch", "pytorch_levelwise", "gather"])
def test_each_msdeformattn_core_matches_official(features, impl):
    # Non-trivial weights: offsets and attention weights depend on the query.
    head = build_head("m2f_head", "MODEL.SEM_SEG_HEAD.MSDEFORMATTN_IMPL", impl)
    assert head.pixel_decoder.transformer.encoder.layers[0].self_attn.impl == impl
    nontrivial = load(FIX / "m2f_head" / "nontrivial.pt")
    head.load_state_dict({**load(FIX / "m2f_head" / "state_dict.pt"), **nontrivial["overrides"]}, strict=True)
    with torch.no_grad():
        diffs = max_diffs(head(features), nontrivial["outputs"])
    print(f"\n[m2f_head/nontrivial, {impl}] max abs diff: {max(diffs.values()):.3g}")



# Full-size official heads: every sem_seg_head.* key of the official model, in order, with shape.
FULL = ["m2f_coco_panoptic_R50", "m2f_ade20k_semantic_R50", "m2f_coco_instance_R50",
        "m2f_coco_panoptic_swin_tiny", "mf_ade20k150_R50", "mf_coco_panoptic_R50"]


@pytest.mark.parametrize("name", FULL)
def test_full_size_head_keys(name):
    keys = json.loads((FIX / "keys" / f"{name}.json").read_text())
    expected = [(k[len("sem_seg_head."):], v) for k, v in keys.items() if k.startswith("sem_seg_head.")]
    cfg = get_cfg()
    add_deeplab_config(cfg)
    (add_maskformer2_config if name.startswith("m2f") else add_mask_former_config)(cfg)
    cfg.merge_from_file(str(FIX / "keys" / f"{name}.yaml"))
    if "swin_tiny" in name:
        shapes = {f"res{i + 2}": ShapeSpec(channels=96 * 2 ** i, stride=4 * 2 ** i) for i in range(4)}
    else:
        shapes = input_shape()
    with torch.device("meta"):  # shapes only: skip allocating and initialising ~20M parameters
        head = build_sem_seg_head(cfg, shapes)
    got = [(k, list(v.shape)) for k, v in head.state_dict().items()]
    assert got == expected


def test_legacy_v1_checkpoint_layout_is_upgraded(caplog):
    head = build_head("mf_head")
    state = load(FIX / "mf_head" / "state_dict.pt")
    legacy = {("sem_seg_head." + k.replace("pixel_decoder.", "", 1)): v for k, v in state.items()}
    wrapper = torch.nn.Module()
    wrapper.sem_seg_head = head
    with caplog.at_level(logging.WARNING):
        wrapper.load_state_dict(legacy, strict=True)
    assert any("legacy" in r.message for r in caplog.records)
    torch.testing.assert_close(head.pixel_decoder.adapter_1.weight, state["pixel_decoder.adapter_1.weight"])


def test_unknown_names_raise_clear_errors():
    with pytest.raises(KeyError, match="PIXEL_DECODER_NAME"):
        build_head("m2f_head", "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "NoSuchDecoder")
    with pytest.raises(KeyError, match="TRANSFORMER_DECODER_NAME"):
        build_head("m2f_head", "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME", "NoSuchDecoder")
    with pytest.raises(ValueError, match="TRANSFORMER_IN_FEATURE"):
        build_head("mf_head", "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "res9")


SMALL = ["MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32, "MODEL.MASK_FORMER.HIDDEN_DIM", 32,
         "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 64, "MODEL.MASK_FORMER.DEC_LAYERS", 2]


def test_base_pixel_decoder_res5_predictor_and_pre_norm(features):
    # MaskFormer ADE20K layout: BasePixelDecoder, predictor reads res5 through input_proj.
    head = build_head("mf_head", *SMALL, "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "BasePixelDecoder",
                      "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "res5", "MODEL.MASK_FORMER.PRE_NORM", True,
                      "MODEL.MASK_FORMER.ENC_LAYERS", 1)
    keys = list(head.state_dict())
    assert keys.index("pixel_decoder.layer_4.weight") < keys.index("pixel_decoder.mask_features.weight")
    assert "predictor.input_proj.weight" in keys and "predictor.transformer.encoder.norm.weight" in keys
    with torch.no_grad():
        out = head(features)
    assert out["pred_logits"].shape == (2, 16, 11) and out["pred_masks"].shape == (2, 16, 32, 40)
    assert len(out["aux_outputs"]) == 1 and torch.isfinite(out["pred_masks"]).all()


def test_per_pixel_baseline_heads(features):
    target = torch.randint(0, 10, (2, 128, 160))
    base = build_head("mf_head", *SMALL, "MODEL.SEM_SEG_HEAD.NAME", "PerPixelBaselineHead")
    with torch.no_grad():
        logits, _ = base(features)
    assert logits.shape == (2, 10, 128, 160)
    base.train()
    _, losses = base(features, target)
    assert set(losses) == {"loss_sem_seg"} and losses["loss_sem_seg"].requires_grad

    plus = build_head("mf_head", *SMALL, "MODEL.SEM_SEG_HEAD.NAME", "PerPixelBaselinePlusHead",
                      "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 10)
    assert "predictor.class_embed.weight" not in plus.state_dict()
    with torch.no_grad():
        logits, _ = plus(features)
    assert logits.shape == (2, 10, 128, 160)
    plus.train()
    _, losses = plus(features, target)
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_0"}
    with pytest.raises(ValueError, match="NUM_OBJECT_QUERIES"):
        build_head("mf_head", *SMALL, "MODEL.SEM_SEG_HEAD.NAME", "PerPixelBaselinePlusHead")


def _torch_mha(mine):
    ref = torch.nn.MultiheadAttention(mine.embed_dim, mine.num_heads)
    ref.load_state_dict(mine.state_dict())
    return ref.eval()


def test_attention_and_pre_norm_layers_match_reference_formulas():
    """Paths the fixtures do not reach (pre-norm, padding masks) against torch.nn.MultiheadAttention."""
    from maskformer_d2.layers import MultiheadAttention, TransformerDecoderLayer
    from maskformer_d2.modeling.transformer_decoder.masked_attention import CrossAttentionLayer

    torch.manual_seed(0)
    b, q, l, c = 2, 5, 7, 16
    mha = MultiheadAttention(c, 4).eval()
    torch.nn.init.normal_(mha.in_proj_bias, std=0.1)
    ref = _torch_mha(mha)
    x, mem = torch.randn(b, q, c), torch.randn(b, l, c)
    pad = torch.zeros(b, l, dtype=torch.bool)
    pad[1, -3:] = True
    blocked = torch.rand(b, q, l) < 0.3
    blocked[..., 0] = False
    got = mha(x, mem, mem, attn_mask=blocked[:, None], key_padding_mask=pad)
    want = ref(x.transpose(0, 1), mem.transpose(0, 1), mem.transpose(0, 1), key_padding_mask=pad,
               attn_mask=blocked.repeat_interleave(4, 0))[0].transpose(0, 1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    # DETR decoder layer, pre-norm.
    layer = TransformerDecoderLayer(c, 4, dim_feedforward=32, dropout=0.0, normalize_before=True).eval()
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.2)
    qpos, pos = torch.randn(b, q, c), torch.randn(b, l, c)
    sa, ca = _torch_mha(layer.self_attn), _torch_mha(layer.multihead_attn)
    t = lambda z: z.transpose(0, 1)  # noqa: E731
    y = layer.norm1(x)
    want = x + t(sa(t(y + qpos), t(y + qpos), t(y))[0])
    y = layer.norm2(want)
    want = want + t(ca(t(y + qpos), t(mem + pos), t(mem), key_padding_mask=pad)[0])
    want = want + layer.linear2(torch.relu(layer.linear1(layer.norm3(want))))
    got = layer(x, mem, memory_key_padding_mask=pad, pos=pos, query_pos=qpos)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    # Mask2Former cross-attention layer, pre-norm.
    cross = CrossAttentionLayer(c, 4, normalize_before=True).eval()
    ca = _torch_mha(cross.multihead_attn)
    y = cross.norm(x)
    want = x + t(ca(t(y + qpos), t(mem + pos), t(mem), attn_mask=blocked.repeat_interleave(4, 0))[0])
    got = cross(x, mem, memory_mask=blocked[:, None], pos=pos, query_pos=qpos)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
