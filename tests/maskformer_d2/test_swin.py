"""D2SwinTransformer: official checkpoint layout, output strides/channels, window attention math."""
import json

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone
from detectron2.projects.deeplab import add_deeplab_config

from maskformer_d2 import add_maskformer2_config
import torch.nn.functional as F

import maskformer_d2.modeling.backbone.swin as swin
from maskformer_d2.modeling.backbone.swin import (
    WindowAttention,
    shifted_window_mask,
    window_gather_index,
    window_partition,
)
from tests.helpers.autograd import assert_same_forward_and_gradients, fused_qkv_reference
from tests.helpers.paths import REPO as REPOSITORY

REPO = REPOSITORY
SWIN_T = REPO / "configs/mask2former/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml"
KEYS = REPO / "tests/fixtures/keys/m2f_coco_panoptic_swin_tiny.json"


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # Two intra-op threads spin-wait badly on the shared 2-core machine; results are unaffected.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def swin_t(single_thread):
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.merge_from_file(str(SWIN_T))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    return build_backbone(cfg).eval()


def test_state_dict_equals_official_checkpoint_layout(swin_t):
    official = json.loads(KEYS.read_text())
    expected = [(k[len("backbone."):], v) for k, v in official.items() if k.startswith("backbone.")]
    got = [(k, list(v.shape)) for k, v in swin_t.state_dict().items()]
    assert len(expected) == 189
    assert got == expected
    # The relative-position index is a persistent buffer with the official values.
    idx = swin_t.state_dict()["layers.0.blocks.0.attn.relative_position_index"]
    assert idx.dtype == torch.int64 and idx.min().item() == 0 and idx.max().item() == 168
    assert idx[0, 0].item() == 84 and idx[0, 48].item() == 0 and idx[48, 0].item() == 168


def test_forward_odd_size_strides_and_channels(swin_t):
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        out = swin_t(x)
    shapes = swin_t.output_shape()
    expected = {"res2": (96, 18, 23), "res3": (192, 9, 12), "res4": (384, 5, 6), "res5": (768, 3, 3)}
    assert set(out) == set(expected) == set(shapes)
    for name, (c, h, w) in expected.items():
        assert out[name].shape == (1, c, h, w)
        assert shapes[name].channels == c and shapes[name].stride == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}[name]
        assert torch.isfinite(out[name]).all()
    assert swin_t.size_divisibility == 32
    with pytest.raises(ValueError, match="N, C, H, W"):
        swin_t(torch.randn(3, 70, 90))


def test_window_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    ws, heads, dim = 3, 2, 8
    attn = WindowAttention(dim, ws, heads).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=0.5)
    mask = shifted_window_mask(6, 6, ws, 1, "cpu")  # 4 windows, -100 across shifted regions
    x = torch.randn(2 * mask.shape[0], ws * ws, dim)
    got = attn(x, mask)

    qkv = attn.qkv(x).reshape(x.shape[0], ws * ws, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * attn.scale, qkv[1], qkv[2]
    bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)].view(ws * ws, ws * ws, heads)
    logits = q @ k.transpose(-2, -1) + bias.permute(2, 0, 1)[None]
    logits = logits + mask.repeat(2, 1, 1)[:, None]  # windows are ordered image by image
    ref = attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(x.shape[0], ws * ws, dim))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert (mask == -100).any() and (mask == 0).any()


@pytest.mark.parametrize("shift", [0, 1])
def test_inference_window_attention_in_chunks_equals_sdpa(shift, monkeypatch):
    """CPU float32 inference: the official formula over chunks of windows (bounded logits
    memory); any chunking gives the same bits, and SDPA's fused kernel the same numbers."""
    torch.manual_seed(0)
    ws, heads, dim = 3, 2, 8
    attn = WindowAttention(dim, ws, heads).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=0.5)
    mask = shifted_window_mask(9, 6, ws, shift, "cpu") if shift else None  # 6 windows
    x = torch.randn(2 * 6, ws * ws, dim)
    with torch.no_grad():
        whole = attn.attend(x, mask, (9, 6))
        # 2 windows per chunk (one window of both images with the shift mask)
        monkeypatch.setattr(swin, "_WINDOW_LOGITS_BYTES", 2 * heads * (ws * ws) ** 2 * 4)
        chunked = attn.attend(x, mask, (9, 6))
        monkeypatch.setattr(swin, "_WINDOW_LOGITS_BYTES", 1)  # one window (per image) per chunk
        single = attn.attend(x, mask, (9, 6))
        qkv = attn.qkv(x).reshape(x.shape[0], ws * ws, 3, heads, dim // heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        bias = attn.attention_bias(mask, (9, 6), q.dtype)
        if mask is not None:
            bias = bias.repeat(2, 1, 1, 1)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
    assert torch.equal(chunked, whole) and torch.equal(single, whole)
    torch.testing.assert_close(whole, ref.transpose(1, 2).reshape(x.shape), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("size", [(96, 128), (64, 224)])
def test_forward_one_window_high_several_wide(swin_t, size):
    # res4 of a 96x128 input is 6x8: padded to one 7x7 window high and two wide, where the
    # window partition used to produce a view that could not be reshaped
    with torch.no_grad():
        out = swin_t(torch.randn(1, 3, *size))
    assert out["res4"].shape[-2:] == (size[0] // 16, size[1] // 16)
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("h,w,ws,shift", [(9, 11, 3, 1), (6, 6, 3, 0), (5, 12, 7, 3), (14, 14, 7, 3), (4, 4, 7, 0)])
def test_window_gather_index_equals_pad_roll_partition(h, w, ws, shift):
    """The block's single gather equals the official pad -> roll(-shift) -> window partition,
    and its inverse equals window reverse -> roll(+shift) -> crop."""
    c = 2
    tokens = torch.randn(1, h * w, c)
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    padded = F.pad(tokens.view(1, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
    rolled = torch.roll(padded, shifts=(-shift, -shift), dims=(1, 2)) if shift else padded
    expected = window_partition(rolled, ws).view(1, -1, c)

    to_windows, from_windows = window_gather_index(h, w, ws, shift, "cpu")
    with_zero = torch.cat([tokens, tokens.new_zeros(1, 1, c)], 1)
    windows = with_zero.index_select(1, to_windows)
    assert torch.equal(windows, expected)
    assert torch.equal(windows.index_select(1, from_windows), tokens)
    assert sorted(from_windows.tolist()) == sorted(set(from_windows.tolist()))  # a permutation


def test_attention_bias_cache_follows_the_weights():
    """Without autograd the relative-position bias (+ shift mask) is cached; an optimizer-style
    in-place update, load_state_dict and training with autograd must not see a stale bias."""
    torch.manual_seed(0)
    ws, heads, dim = 3, 2, 8
    attn = WindowAttention(dim, ws, heads).eval()
    mask = shifted_window_mask(6, 6, ws, 1, "cpu")
    x = torch.randn(mask.shape[0], ws * ws, dim)

    def fresh():  # the same module's output with the cache emptied
        attn._bias_cache = None
        return attn(x, mask, mask_key=(6, 6))

    with torch.no_grad():
        first = attn(x, mask, mask_key=(6, 6))
        bias = attn.attention_bias(mask, (6, 6), x.dtype)
        assert attn.attention_bias(mask, (6, 6), x.dtype) is bias  # cached
        assert attn.attention_bias(None, None, x.dtype).shape == (1, heads, ws * ws, ws * ws)  # other key
        torch.testing.assert_close(first, fresh(), rtol=0, atol=0)

        attn.relative_position_bias_table.add_(1.0 + torch.randn_like(attn.relative_position_bias_table))
        stepped = attn(x, mask, mask_key=(6, 6))
        assert not torch.equal(stepped, first)
        torch.testing.assert_close(stepped, fresh(), rtol=0, atol=0)

    state = {k: v.clone() for k, v in attn.state_dict().items()}
    state["relative_position_bias_table"].normal_(std=2.0)
    attn.load_state_dict(state, strict=True)
    with torch.inference_mode():
        loaded = attn(x, mask, mask_key=(6, 6))
        assert not torch.equal(loaded, stepped)
        torch.testing.assert_close(loaded, fresh(), rtol=0, atol=0)

    # training resumes: the bias is rebuilt in the graph, so the table gets a gradient
    attn.train()
    attn(x, mask, mask_key=(6, 6)).sum().backward()
    grad = attn.relative_position_bias_table.grad
    assert grad is not None and grad.abs().sum() > 0


def test_mlp_recomputed_gelu_gives_the_autograd_gradients():
    """Training runs fc2(GELU(h)) as GeluLinear (the GELU recomputed in backward, not stored):
    output and gradients equal the plain composition bit for bit, and only h is kept."""
    from maskformer_d2.modeling.backbone.swin import GeluLinear, Mlp

    torch.manual_seed(0)
    mlp = Mlp(8, 32)
    x = torch.randn(2, 5, 8, requires_grad=True)
    params = [x, *mlp.parameters()]
    out = mlp(x)
    assert out.grad_fn is not None and "GeluLinear" in type(out.grad_fn).__name__
    grads = torch.autograd.grad(out.square().sum(), params)
    ref = mlp.fc2(F.gelu(mlp.fc1(x)))
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=0)
    h = torch.randn(3, 32, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 32, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GeluLinear.apply, (h, w, b))
    with torch.no_grad():  # inference: the plain path
        torch.testing.assert_close(mlp(x), ref, rtol=0, atol=0)
    mlp.eval()  # eval with autograd on (e.g. traced for FLOP counting): the plain path too
    assert "GeluLinear" not in type(mlp(x).grad_fn).__name__


def test_window_attention_qkv_gradient_assembled_in_one_copy():
    """q, k, v come from unbind(2) + transpose on the (B*nW, N, 3, heads, d) layout: the same
    strided tensors as the official permute(2, 0, 3, 1, 4) + unbind(0), so the same outputs
    and gradients bit for bit, but backward stacks the three gradients straight into the qkv
    layout instead of stacking, permuting back and copying again. In training on CPU (the
    bias takes a gradient) the attention itself is the official Swin's formula, op for op."""
    torch.manual_seed(0)
    ws, heads, dim = 3, 2, 8
    attn = WindowAttention(dim, ws, heads).train()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=0.5)
    mask = shifted_window_mask(6, 6, ws, 1, "cpu")
    x = torch.randn(2 * mask.shape[0], ws * ws, dim)

    def official(t):
        q, k, v = fused_qkv_reference(attn.qkv(t), heads)
        n = ws * ws
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)].view(n, n, -1)
        logits = logits + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        nw = mask.shape[0]
        logits = logits.view(-1, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        out = logits.view(-1, heads, n, n).softmax(-1) @ v
        return attn.proj(out.transpose(1, 2).reshape(t.shape))

    nodes, official_nodes = assert_same_forward_and_gradients(attn, lambda t: attn(t, mask), official, x)
    assert nodes["PermuteBackward0"] == official_nodes["PermuteBackward0"] - 1  # the bias keeps one


def _branch_batches(model):
    """Record the batch size each block's MLP branch runs on: (sizes, hook handles)."""
    seen = []
    handles = [blk.mlp.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
               for layer in model.layers for blk in layer.blocks]
    return seen, handles


@pytest.mark.parametrize("seed", range(12))
def test_drop_path_residual_is_timm_drop_path_without_the_dropped_work(seed):
    from timm.layers import DropPath

    from segmentation_core.modeling.drop_path import drop_path_residual

    branch = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU())
    x = torch.randn(3, 5, 8)
    results = []
    for skip in (False, True):
        branch.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        batches = []
        hook = branch.register_forward_pre_hook(lambda mod, args: batches.append(args[0].shape[0]))
        torch.manual_seed(seed)
        if skip:
            y = drop_path_residual(xi, branch, 0.5)
        else:
            y = xi + DropPath(0.5).train()(branch(xi))
        hook.remove()
        (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
        results.append((y.detach(), xi.grad, [p.grad for p in branch.parameters()], torch.rand(4), batches))
    (y0, gx0, gp0, r0, _), (y1, gx1, gp1, r1, batches) = results
    torch.testing.assert_close(y1, y0, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gx1, gx0, rtol=1e-6, atol=1e-7)
    for a, b in zip(gp1, gp0):
        assert a is not None  # a branch dropped for every sample still hands AdamW zero gradients
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert torch.equal(r0, r1)  # the same random stream afterwards
    kept = int((y0 != x).flatten(1).any(1).sum())  # samples whose branch was added
    assert batches == [kept if 0 < kept < 3 else 3]


def test_swin_skips_dropped_branches_with_the_same_numbers():
    """MODEL.SWIN.SKIP_DROPPED_PATHS: the same outputs, gradients and random stream as computing
    every branch, and the branches of dropped images are really not computed."""
    from maskformer_d2.modeling.backbone.swin import SwinTransformer

    torch.manual_seed(0)
    reference = SwinTransformer(embed_dim=32, depths=(2, 2), num_heads=(1, 2), drop_path_rate=0.6,
                                out_indices=(0, 1), skip_dropped_paths=False).train()
    skipping = SwinTransformer(embed_dim=32, depths=(2, 2), num_heads=(1, 2), drop_path_rate=0.6,
                               out_indices=(0, 1)).train()
    skipping.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 60, 44)
    partial = 0
    for seed in range(4):
        runs = []
        for model in (reference, skipping):
            model.zero_grad(set_to_none=True)
            seen, handles = _branch_batches(model)
            torch.manual_seed(seed)
            out = model(x)
            sum((v * v.detach().sin()).sum() for v in out.values()).backward()
            runs.append((out, {k: p.grad for k, p in model.named_parameters()}, torch.rand(3), list(seen)))
            for handle in handles:
                handle.remove()
        (o0, g0, r0, seen0), (o1, g1, r1, seen1) = runs
        for k in o0:
            torch.testing.assert_close(o1[k], o0[k], rtol=1e-6, atol=1e-6)
        for k in g0:
            assert g1[k] is not None, k
            torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-6)
        assert torch.equal(r0, r1)
        assert set(seen0) == {2}
        partial += seen1.count(1)
    assert partial > 0  # some image's MLP branch was skipped


def test_skip_dropped_paths_config_and_when_it_is_off(swin_t):
    from maskformer_d2.modeling.backbone.swin import SwinTransformerBlock

    assert all(blk.skip_dropped_paths for layer in swin_t.layers for blk in layer.blocks[1:])
    assert not swin_t.layers[0].blocks[0].skip_dropped_paths  # drop-path rate 0 there: nothing to skip
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.merge_from_file(str(SWIN_T))
    cfg.MODEL.SWIN.SKIP_DROPPED_PATHS = False
    backbone = build_backbone(cfg)
    assert not any(blk.skip_dropped_paths for layer in backbone.layers for blk in layer.blocks)
    # a branch with its own dropout draws random numbers before the mask: not reordered
    assert not SwinTransformerBlock(16, 2, drop=0.1, drop_path=0.2).skip_dropped_paths
    assert not SwinTransformerBlock(16, 2, attn_drop=0.1, drop_path=0.2).skip_dropped_paths
    assert SwinTransformerBlock(16, 2, drop_path=0.2).skip_dropped_paths
