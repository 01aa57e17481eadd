"""Multi-scale deformable attention in pure PyTorch: semantics, gradients, all cores agree."""
import math

import pytest
import torch

from maskformer_d2.layers import MSDeformAttn, get_ms_deform_attn_core
from maskformer_d2.layers.ms_deform_attn import (
    WeightedRowSum,
    sampled_row_dots,
    ms_deform_attn_core_gather,
    ms_deform_attn_core_levelwise,
    ms_deform_attn_core_pytorch,
)
from tests.helpers.autograd import graph_node_names

CORES = [ms_deform_attn_core_pytorch, ms_deform_attn_core_levelwise, ms_deform_attn_core_gather]
SHAPES = [(3, 4), (2, 3)]  # (H, W) per level


def _inputs(dtype, n=2, lq=5, m=2, d=3, p=2, shapes=SHAPES, seed=0, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    # Some locations fall outside [0, 1] to exercise the zero padding.
    loc = torch.rand(n, lq, m, len(shapes), p, 2, generator=g, dtype=dtype) * (1 + 2 * spread) - spread
    w = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=dtype)
    return value, loc, w / w.sum((-1, -2), keepdim=True)


def _bilinear_zero_pad(img, x, y):
    """Reference read of img (D, H, W) at continuous (x, y) in [0, 1] units, pixel centres at
    (i + 0.5) / size, zero outside (grid_sample, align_corners=False)."""
    d, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=img.dtype)
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            if 0 <= yy < h and 0 <= xx < w:
                out += img[:, yy, xx] * (1 - abs(px - xx)) * (1 - abs(py - yy))
    return out


@pytest.mark.parametrize("core", CORES, ids=lambda f: f.__name__)
def test_core_matches_explicit_bilinear_sum(core):
    value, loc, w = _inputs(torch.float64)
    n, _, m, d = value.shape
    _, lq, _, nl, npts, _ = loc.shape
    out = core(value, SHAPES, loc, w)
    assert out.shape == (n, lq, m * d)
    starts = [0, SHAPES[0][0] * SHAPES[0][1]]
    expected = torch.zeros(n, lq, m, d, dtype=torch.float64)
    for b in range(n):
        for q in range(lq):
            for h in range(m):
                for lvl, (hh, ww) in enumerate(SHAPES):
                    img = value[b, starts[lvl]:starts[lvl] + hh * ww, h].T.reshape(d, hh, ww)
                    for pt in range(npts):
                        x, y = loc[b, q, h, lvl, pt]
                        expected[b, q, h] += w[b, q, h, lvl, pt] * _bilinear_zero_pad(img, float(x), float(y))
    torch.testing.assert_close(out, expected.reshape(n, lq, m * d), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("core", CORES, ids=lambda f: f.__name__)
def test_core_gradcheck_float64(core):
    value, loc, w = _inputs(torch.float64, n=1, lq=3, m=2, d=2, p=2)
    value.requires_grad_(True)
    loc.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, l, a: core(v, SHAPES, l, a), (value, loc, w), eps=1e-6, atol=1e-5)


def test_weighted_row_sum_gradients_and_order_check():
    # two "levels" of table rows, [0, 20) and [20, 40), with per-level corner shifts that stay
    # inside their level: one sort of the base rows orders every corner's rows
    g = torch.Generator().manual_seed(0)
    table = torch.randn(40, 3, dtype=torch.float64, generator=g, requires_grad=True)
    shifts = torch.tensor([[0, 0, 0], [1, 1, 1], [5, 5, 4], [6, 6, 5]])  # (C=4, J=3); j=2 on level 2
    base = torch.stack([torch.randint(0, 14, (7,), generator=g), torch.randint(0, 14, (7,), generator=g),
                        torch.randint(20, 34, (7,), generator=g)], dim=1)  # (B=7, J=3)
    base[3] = base[1]  # repeated rows: ties must keep their bag
    weights = torch.randn(7, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    rows = WeightedRowSum.rows(base, shifts)
    expected = (weights.reshape(7, -1)[..., None] * table[rows]).sum(1)
    out = WeightedRowSum.apply(table, base, shifts, weights)
    torch.testing.assert_close(out, expected)
    assert torch.autograd.gradcheck(lambda t, w: WeightedRowSum.apply(t, base, shifts, w), (table, weights))
    # a shift that moves a row past another row's: refused in backward, not a wrong gradient
    bad = shifts.clone()
    bad[2, 0] = 25  # level-1 point shifted into level 2
    with pytest.raises(RuntimeError, match="reorders the table rows"):
        WeightedRowSum.apply(table, base, bad, weights).sum().backward()


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_sampled_row_dots_with_repeated_and_unsorted_rows(dtype, index_dtype):
    """The weight gradient's per-entry dots (a sampled product on CPU for float32/64, the
    built-in per-sample backward for other dtypes) equal the plain gather + dot, with a bag's
    rows repeated and in any order (not a canonical CSR pattern)."""
    g = torch.Generator().manual_seed(0)
    left, table = torch.randn(300, 32, generator=g), torch.randn(1000, 32, generator=g)
    rows = torch.randint(0, 1000, (300, 48), generator=g)
    rows[:, 5] = rows[:, 0]  # a repeat in every bag
    rows[:, 6:9] = rows[:, 6:9].sort(descending=True).values
    rows[7] = 999  # a bag reading one row 48 times
    left, table = left.to(dtype), table.to(dtype)
    expected = (table.double()[rows] * left.double()[:, None, :]).sum(-1)  # of the same inputs
    out = sampled_row_dots(left, table, rows.to(index_dtype))
    assert out.shape == (300, 48) and out.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 0.1}[dtype]
    torch.testing.assert_close(out.double(), expected, atol=tol, rtol=tol)
    torch.testing.assert_close(out[7], out[7, :1].expand(48))  # one value for one repeated row
    # the inputs are left alone (the pattern's values are a fresh buffer)
    assert torch.equal(rows[7], torch.full((48,), 999))
    # a row outside the table: a clear error (the CPU kernel would read out of bounds)
    for bad in (1000, -1):
        wrong = rows.to(index_dtype).clone()
        wrong[4, 2] = bad
        with pytest.raises(IndexError, match="rows must index the table's 1000 rows"):
            sampled_row_dots(left, table, wrong)
    assert sampled_row_dots(left[:0], table, rows[:0].to(index_dtype)).shape == (0, 48)  # no bags


@pytest.mark.parametrize("core", CORES[1:], ids=lambda f: f.__name__)
@pytest.mark.parametrize("spread", [0.3, 3.0])
def test_fast_cores_equal_plain_forward_and_backward(core, spread):
    """spread 3.0 puts most points far outside the maps (zero padding, clamped gather)."""
    shapes = [(8, 10), (4, 5), (2, 3)]
    value, loc, w = _inputs(torch.float32, n=2, lq=40, m=4, d=8, p=4, shapes=shapes, seed=3, spread=spread)
    grads = []
    outs = []
    for c in (ms_deform_attn_core_pytorch, core):
        v, l, a = (t.clone().requires_grad_(True) for t in (value, loc, w))
        out = c(v, shapes, l, a)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out.detach())
        grads.append([v.grad, l.grad, a.grad])
    diff = (outs[0] - outs[1]).abs().max().item()
    print(f"{core.__name__} vs pytorch forward max abs diff: {diff:.3g}")
    torch.testing.assert_close(outs[1], outs[0], atol=1e-6, rtol=1e-5)
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g1, g0, atol=1e-5, rtol=1e-5)


def test_gather_core_reads_zeros_on_the_border_and_for_nan_locations():
    value = torch.arange(1, 7, dtype=torch.float64).view(1, 6, 1, 1)  # one 2x3 level
    shapes = [(2, 3)]
    # (x, y): exact pixel centres, the outer border, far outside, NaN
    points = torch.tensor([[0.5 / 3, 0.25], [2.5 / 3, 0.75], [0.0, 0.0], [1.0, 1.0], [-7.0, 0.5],
                           [0.5, 9.0], [float("nan"), 0.5]], dtype=torch.float64)
    loc = points.view(1, 7, 1, 1, 1, 2)
    w = torch.ones(1, 7, 1, 1, 1, dtype=torch.float64)
    ref = ms_deform_attn_core_pytorch(value, shapes, loc[:, :6], w[:, :6])
    out = ms_deform_attn_core_gather(value, shapes, loc, w)
    torch.testing.assert_close(out[:, :6], ref, atol=1e-12, rtol=0)
    assert out[0, :, 0].tolist()[:2] == [1.0, 6.0]
    assert out[0, 0:4, 0].tolist()[2:] == [0.25, 1.5]  # border: a quarter / half weight of corner pixels
    assert out[0, 4:, 0].tolist() == [0.0, 0.0, 0.0]


def test_module_impls_agree_and_are_explicit():
    torch.manual_seed(0)
    shapes = [(4, 5), (2, 3)]
    plain = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3, impl="pytorch")
    # Make offsets and weights depend on the query (they are zero at init).
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.2)
    s = sum(h * w for h, w in shapes)
    src = torch.randn(2, s, 16)
    ref = torch.rand(2, s, 2, 2)
    shapes_t = torch.tensor(shapes)
    out0 = plain(src, ref, src, shapes_t)
    assert out0.shape == (2, s, 16)
    for impl in ("pytorch_levelwise", "gather"):
        fast = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3, impl=impl)
        fast.load_state_dict(plain.state_dict())
        assert fast.impl == impl and impl in repr(fast)
        torch.testing.assert_close(fast(src, ref, src, shapes), out0, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="MSDEFORMATTN_IMPL"):
        MSDeformAttn(16, 2, 4, 3, impl="cuda")
    with pytest.raises(ValueError, match="MSDEFORMATTN_IMPL"):
        get_ms_deform_attn_core("compiled")


def test_bad_shapes_give_clear_errors():
    value, loc, w = _inputs(torch.float32)
    with pytest.raises(ValueError, match="sum of H\\*W"):
        ms_deform_attn_core_pytorch(value, [(3, 4), (2, 2)], loc, w)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn_core_pytorch(value, SHAPES, loc, w[..., :1])
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2)
    src = torch.randn(1, 18, 8)
    with pytest.raises(ValueError, match="reference_points"):
        attn(src, torch.rand(1, 18, 2, 3), src, SHAPES)
    with pytest.raises(ValueError, match="input_flatten"):
        attn(src, torch.rand(1, 18, 2, 2), src, [(3, 4), (1, 1)])


def test_encoder_layer_inplace_relu_keeps_gradients():
    """The encoder layer applies its FFN ReLU in place (in training also the ReLU's backward:
    ReluLinear); forward and every gradient equal the out-of-place formulation."""
    import torch.nn.functional as F

    from maskformer_d2.modeling.pixel_decoder.msdeformattn import MSDeformAttnTransformerEncoderLayer

    torch.manual_seed(0)
    layer = MSDeformAttnTransformerEncoderLayer(d_model=16, d_ffn=32, dropout=0.0, n_levels=2,
                                                n_heads=2, n_points=2)
    shapes = [(4, 4), (2, 2)]
    src = torch.randn(2, 20, 16, requires_grad=True)
    pos = torch.randn(2, 20, 16)
    ref_points = torch.rand(2, 20, 2, 2)

    def reference(src):  # the layer's forward with an out-of-place ReLU
        attn = layer.self_attn(src + pos, ref_points, src, shapes, None, None)
        x = layer.norm1(src + attn)
        return layer.norm2(x + layer.linear2(F.relu(layer.linear1(x))))

    out = layer(src, pos, ref_points, shapes, None)
    grads = torch.autograd.grad(out.square().sum(), [src, *layer.parameters()])
    ref = reference(src)
    ref_grads = torch.autograd.grad(ref.square().sum(), [src, *layer.parameters()])
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=0)
    # in place on the 2-D linear result, not on a view of it: a CopySlices node would copy
    # the whole (B * S, d_ffn) gradient twice and fill a zero buffer in backward
    names = graph_node_names(layer(src, pos, ref_points, shapes, None).grad_fn)
    assert "CopySlices" not in names
    assert any("ReluLinear" in n for n in names) and "ThresholdBackward" not in " ".join(names)
    # eval with autograd on (e.g. traced), and dropout between the linears: autograd's ReLU
    layer.eval()
    eval_names = graph_node_names(layer(src, pos, ref_points, shapes, None).grad_fn)
    assert not any("ReluLinear" in n for n in eval_names) and "CopySlices" not in eval_names
    torch.testing.assert_close(layer(src, pos, ref_points, shapes, None), ref, rtol=0, atol=0)
    layer.train()
    layer.dropout2.p = 0.1
    assert not any("ReluLinear" in n for n in graph_node_names(layer(src, pos, ref_points, shapes, None).grad_fn))


def test_corner_weights_function_matches_composed_autograd():
    """CornerWeights (training path of the gather core) equals the composed clamp + bilinear
    weight ops in value and gradient, also outside the map, at the clamp bounds and for NaN."""
    from maskformer_d2.layers.ms_deform_attn import (CornerWeights, _clamp_coordinates,
                                                     _corner_weights)

    torch.manual_seed(0)
    shape = (2, 7, 3, 2, 4)  # (N, Lq, M, L, P)
    widths = torch.tensor([5.0, 3.0], dtype=torch.float64).view(1, 1, 1, 2, 1)
    heights = torch.tensor([4.0, 2.0], dtype=torch.float64).view(1, 1, 1, 2, 1)
    x = torch.rand(shape, dtype=torch.float64) * 9 - 3
    y = torch.rand(shape, dtype=torch.float64) * 7 - 3
    x[0, 0, 0, 0, :4] = torch.tensor([-1.0, 5.0, float("nan"), 4.5])  # bounds, NaN, inside
    y[0, 0, 0, 1, :4] = torch.tensor([2.0, -1.0, float("inf"), -7.0])
    a = torch.rand(shape, dtype=torch.float64)

    def composed(x, y, a):
        xc, yc = _clamp_coordinates(x, widths), _clamp_coordinates(y, heights)
        return _corner_weights(xc - xc.floor(), yc - yc.floor(), a)

    grad = torch.randn(2, 7, 3, 4, 2, 4, dtype=torch.float64)
    inputs = [t.clone().requires_grad_(True) for t in (x, y, a)]
    ref = composed(*inputs)
    ref_grads = torch.autograd.grad(ref, inputs, grad)
    inputs = [t.clone().requires_grad_(True) for t in (x, y, a)]
    got = CornerWeights.apply(*inputs, widths, heights)
    got_grads = torch.autograd.grad(got, inputs, grad)
    assert torch.equal(got, ref)
    for g, r in zip(got_grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    assert (ref_grads[0] == 0).any() and (ref_grads[0].abs() > 0).any()


def test_encoder_shared_ffn_buffer_is_bit_identical():
    """At inference the deformable encoder writes every layer's FFN hidden layer into one shared
    buffer: the same bits as each layer's own linear + ReLU (grad enabled takes that path)."""
    from maskformer_d2.modeling.pixel_decoder.msdeformattn import MSDeformAttnTransformerEncoderOnly

    torch.manual_seed(0)
    enc = MSDeformAttnTransformerEncoderOnly(d_model=32, nhead=4, num_encoder_layers=3, dim_feedforward=48,
                                             num_feature_levels=3, enc_n_points=2).eval()
    for p in enc.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    srcs = [torch.randn(2, 32, h, w) for h, w in [(4, 6), (8, 12), (16, 24)]]
    pos = [torch.randn_like(x) for x in srcs]
    assert enc.encoder._shared_ffn_buffer(torch.zeros(2, 10, 32)) is None  # grad enabled here
    with torch.no_grad():
        assert enc.encoder._shared_ffn_buffer(torch.zeros(2, 10, 32)).shape == (20, 48)
        shared, _, _ = enc(srcs, pos)
    with torch.enable_grad():
        separate, _, _ = enc(srcs, pos)
    assert torch.equal(shared, separate.detach())
    enc.train()
    with torch.no_grad():
        assert enc.encoder._shared_ffn_buffer(torch.zeros(2, 10, 32)) is None  # dropout in training


def test_gather_core_layouts_give_the_same_bits():
    """The gather core spells per-level constants out over the points (contiguous (1, 1, 1, L,
    P), so the elementwise ops vectorise) and copies heads-innermost attention weights (how
    MSDeformAttn's softmax leaves them) to one layout: outputs and gradients are the same bits
    as for contiguous weights."""
    from maskformer_d2.layers.ms_deform_attn import _level_sizes

    shapes = [(8, 10), (4, 5), (2, 3)]
    value, loc, w = _inputs(torch.float32, n=2, lq=40, m=4, d=8, p=4, shapes=shapes, seed=5, spread=0.5)
    heights, widths = _level_sizes(shapes, value, 3, 4)
    for t, sizes in ((heights, (8, 4, 2)), (widths, (10, 5, 3))):
        assert t.shape == (1, 1, 1, 3, 4) and t.is_contiguous() and t.dtype == value.dtype
        assert t[0, 0, 0, :, :].tolist() == [[float(s)] * 4 for s in sizes]
    # the same weights with the heads innermost in memory
    heads_inner = w.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    assert torch.equal(heads_inner, w) and not heads_inner.is_contiguous()
    results = []
    for a in (w, heads_inner):
        v, l = value.clone().requires_grad_(True), loc.clone().requires_grad_(True)
        a = a.detach().requires_grad_(True)
        out = ms_deform_attn_core_gather(v, shapes, l, a)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append([out.detach(), v.grad, l.grad, a.grad])
    for x, y in zip(*results):
        assert torch.equal(x, y)
