"""Multi-scale deformable attention (Deformable DETR), in pure PyTorch.

Nothing is compiled, so forward and backward run on CPU and on any GPU through autograd. Three
cores are provided, selected explicitly by name (``MODEL.SEM_SEG_HEAD.MSDEFORMATTN_IMPL``):

* ``"gather"`` (default): the bilinear taps written out and summed with their attention weights
  by one ``F.embedding_bag`` over rows of D contiguous channels, with a sorted transposed
  ``embedding_bag`` as the value gradient (:class:`WeightedRowSum`). Several times faster than
  ``"pytorch"`` on CPU forward and ~2x forward + backward at the 512x512 Mask2Former encoder
  shapes (``tools/benchmark/ms_deform_attn.py``, figures in docs/benchmarks.md), and no
  (N*M, D, Lq, L*P) temporary.
* ``"pytorch"``: ``F.grid_sample`` (``align_corners=False``, zero padding) per level, stacks the
  samples and reduces them with the attention weights in one step (the reference formulation,
  as the official and the Hugging Face pure-PyTorch fallbacks).
* ``"pytorch_levelwise"``: ``grid_sample`` per level, reduced right after sampling it (a small
  matmul per head and query) and accumulated: lower peak memory than ``"pytorch"``.

All three agree up to float summation order (max abs diff ~1e-6 in float32, tested).
"""
import math
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ms_deform_attn_core_pytorch",
    "ms_deform_attn_core_levelwise",
    "ms_deform_attn_core_gather",
    "MS_DEFORM_ATTN_IMPLS",
    "get_ms_deform_attn_core",
    "MSDeformAttn",
]

SpatialShapes = Union[torch.Tensor, Sequence[Tuple[int, int]]]


def _as_size(v):
    # A symbolic size (torch.export / ONNX export with dynamic height and width) stays
    # symbolic: int() would freeze it to the example input's value.
    return v if isinstance(v, torch.SymInt) else int(v)


def _as_int_shapes(spatial_shapes: SpatialShapes) -> List[Tuple[int, int]]:
    if isinstance(spatial_shapes, torch.Tensor):
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(_as_size(h), _as_size(w)) for h, w in spatial_shapes]


def _check_core_inputs(value, shapes, sampling_locations, attention_weights):
    if value.dim() != 4:
        raise ValueError(f"value must be (N, S, M, D); got {tuple(value.shape)}")
    n, s, m, _ = value.shape
    if sum(h * w for h, w in shapes) != s:
        raise ValueError(f"sum of H*W over spatial_shapes {shapes} must equal value.shape[1] = {s}")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError("sampling_locations must be (N, Lq, M, L, P, 2); "
                         f"got {tuple(sampling_locations.shape)}")
    _, lq, m2, num_levels, num_points, _ = sampling_locations.shape
    if (n, m) != (sampling_locations.shape[0], m2) or num_levels != len(shapes):
        raise ValueError(f"sampling_locations {tuple(sampling_locations.shape)} do not match value "
                         f"{tuple(value.shape)} and {len(shapes)} levels")
    if tuple(attention_weights.shape) != (n, lq, m, num_levels, num_points):
        raise ValueError(f"attention_weights must be (N, Lq, M, L, P) = {(n, lq, m, num_levels, num_points)}; "
                         f"got {tuple(attention_weights.shape)}")


def _level_values(value: torch.Tensor, shapes: List[Tuple[int, int]]) -> List[torch.Tensor]:
    """Split (N, S, M, D) into one (N*M, D, H_l, W_l) map per level."""
    n, _, m, d = value.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    return [v.flatten(2).transpose(1, 2).reshape(n * m, d, h, w) for v, (h, w) in zip(per_level, shapes)]


def _level_grid(sampling_grids: torch.Tensor, level: int) -> torch.Tensor:
    """(N, Lq, M, L, P, 2) in [-1, 1] -> (N*M, Lq, P, 2) for one level."""
    return sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)


def ms_deform_attn_core_pytorch(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of multi-level value maps.

    Args:
        value: (N, S, M, D) with S = sum_l H_l * W_l, levels concatenated in order.
        spatial_shapes: (L, 2) tensor or list of (H_l, W_l).
        sampling_locations: (N, Lq, M, L, P, 2), (x, y) in [0, 1] (0 and 1 are the outer
            borders of the map, pixel centres at (i + 0.5) / size); outside reads zeros.
        attention_weights: (N, Lq, M, L, P).

    Returns:
        (N, Lq, M * D).
    """
    shapes = _as_int_shapes(spatial_shapes)
    _check_core_inputs(value, shapes, sampling_locations, attention_weights)
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    samples = [
        F.grid_sample(v, _level_grid(grids, lvl), mode="bilinear", padding_mode="zeros", align_corners=False)
        for lvl, v in enumerate(_level_values(value, shapes))
    ]  # each (N*M, D, Lq, P)
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels * num_points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # (N*M, D, Lq)
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


def ms_deform_attn_core_levelwise(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Same contract as :func:`ms_deform_attn_core_pytorch`; accumulates level by level."""
    shapes = _as_int_shapes(spatial_shapes)
    _check_core_inputs(value, shapes, sampling_locations, attention_weights)
    n, _, m, d = value.shape
    lq = sampling_locations.shape[1]
    grids = 2 * sampling_locations - 1
    weights = attention_weights.transpose(1, 2).flatten(0, 1)  # (N*M, Lq, L, P)
    out = None
    for lvl, v in enumerate(_level_values(value, shapes)):
        sampled = F.grid_sample(v, _level_grid(grids, lvl), mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # (N*M, D, Lq, P)
        # (N*M, Lq, 1, P) @ (N*M, Lq, P, D): one small matmul per (head, query), no big temporaries.
        contrib = torch.matmul(weights[:, :, lvl].unsqueeze(2), sampled.permute(0, 2, 3, 1)).squeeze(2)
        out = contrib if out is None else out + contrib  # (N*M, Lq, D)
    return out.view(n, m, lq, d).transpose(1, 2).reshape(n, lq, m * d)


class WeightedRowSum(torch.autograd.Function):
    """``out[b] = sum_{c, j} weights[b, c, j] * table[base[b, j] + shifts[c, j]]``:
    (R, D), (B, J) int, (C, J) int, (B, C, J) -> (B, D); int32 or int64 indices.

    The deformable attention's bilinear sampling: ``base`` is the top-left tap of each of the J
    sampling points, ``shifts`` the C = 4 corner offsets (per point, as rows differ per level).

    Forward is one ``F.embedding_bag(mode="sum")`` over the B bags of C * J rows. The table
    gradient is the transposed sum: every table row becomes a bag of the output rows that read
    it, so the B * J entries are sorted by ``base`` (once; int32 indices sort ~1.7x faster than
    int64) and one ``embedding_bag`` per corner sums them. One sort serves all C corners
    because a shift never moves a key past another key: ``shifts`` are the same for all points
    of a level and each level's rows are a block the shifted rows stay in (checked; a caller
    that breaks this gets an error, not a wrong gradient). The weight gradient is one dot
    product per entry (:func:`sampled_row_dots`).
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, base: torch.Tensor, shifts: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
        rows = WeightedRowSum.rows(base, shifts)
        # the base, not the C-times larger rows: backward rebuilds them (one add) for the
        # weight gradient
        ctx.save_for_backward(table, base, shifts, weights)
        return F.embedding_bag(rows, table, per_sample_weights=weights.reshape(base.shape[0], -1), mode="sum")

    @staticmethod
    def rows(base: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """(B, J), (C, J) -> (B, C * J) table rows, corner-major within each bag."""
        return (base[:, None, :] + shifts[None]).reshape(base.shape[0], -1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        table, base, shifts, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        num_rows, num_points = table.shape[0], shifts.shape[1]
        if ctx.needs_input_grad[0]:
            flat = base.reshape(-1)  # the base rows
            order = torch.sort(flat, stable=True)[1]
            reader = torch.div(order, num_points, rounding_mode="floor")  # output row of each entry
            point = order - reader * num_points
            sorted_base = flat.index_select(0, order)
            flat_weights = weights.reshape(weights.shape[0], weights.shape[1], -1)
            reordered = torch.zeros((), dtype=torch.bool, device=base.device)
            for c in range(shifts.shape[0]):
                rows_c = sorted_base + shifts[c].index_select(0, point)
                reordered |= (rows_c[1:] < rows_c[:-1]).any()
                counts = torch.bincount(rows_c, minlength=num_rows)
                starts = torch.cumsum(counts, 0) - counts
                w_c = flat_weights[:, c].reshape(-1).index_select(0, order)
                g = F.embedding_bag(reader, grad_out, starts, mode="sum", per_sample_weights=w_c)
                grad_table = g if grad_table is None else grad_table.add_(g)
            if bool(reordered):  # one host sync for the 4 corners
                raise RuntimeError(
                    "WeightedRowSum: a corner shift reorders the table rows, so one sort "
                    "cannot serve every corner (shifts must be per-level constants)"
                )
        if ctx.needs_input_grad[3]:
            # d out[b] / d weights[b, k] = table[rows[b, k]], so the gradient is one dot product
            # per entry (called directly: through autograd the built-in would rerun the forward)
            rows = WeightedRowSum.rows(base, shifts)
            grad_weights = sampled_row_dots(grad_out.contiguous(), table, rows).view_as(weights)
        return grad_table, None, None, grad_weights


def sampled_row_dots(left: torch.Tensor, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``out[b, k] = <left[b], table[rows[b, k]]>``: (B, D), (R, D), (B, K) int -> (B, K).

    On CPU (float32 / float64) one sampled dense-dense product, ``torch.sparse.sampled_addmm``
    over the B x K pattern given as CSR (K entries per row, in the caller's order): its kernel is
    one vectorised dot per entry, where ``embedding_bag``'s per-sample-weights backward calls a
    BLAS dot per entry; 2.5-3.5x faster at the Swin-T encoder's shapes (B = 86016, K = 48,
    D = 32: ~22 vs 57-77 ms, docs/benchmarks.md). The pattern is not a canonical CSR (a row's
    columns may repeat and are not sorted: two taps can read one pixel), which that kernel does
    not need: it reads each entry's column and writes its value (tested with repeats against a
    plain gather + dot). Elsewhere (GPU: cuSPARSE's SDDMM may assume canonical CSR; other dtypes) the
    built-in per-sample backward. Both agree up to float summation order.

    Neither kernel checks its indices, so a row outside the table is an ``IndexError`` here,
    not a read out of bounds (the check, one ``aminmax`` over the indices, is ~1 % of the
    product: 0.4 ms at the shapes above).
    """
    bags, per_bag = rows.shape
    if rows.numel() == 0:
        return left.new_zeros(bags, per_bag)
    lo, hi = (int(v) for v in torch.aminmax(rows))
    if lo < 0 or hi >= table.shape[0]:
        raise IndexError(f"sampled_row_dots: rows must index the table's {table.shape[0]} rows; "
                         f"got indices from {lo} to {hi}")
    if left.device.type == "cpu" and left.dtype in (torch.float32, torch.float64):
        crow = torch.arange(0, bags * per_bag + 1, per_bag, dtype=rows.dtype)
        # zeros, not empty: the kernel computes beta * value + dot even for beta = 0
        values = torch.zeros(bags * per_bag, dtype=left.dtype)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            # older torch (2.11) warns once that the checks are off unless enabled globally; they
            # are off on purpose (check_invariants=False below, the indices checked above)
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
            pattern = torch.sparse_csr_tensor(crow, rows.reshape(-1), values, size=(bags, table.shape[0]),
                                              check_invariants=False)
            torch.sparse.sampled_addmm(pattern, left, table.t(), beta=0.0, out=pattern)  # in place
        return pattern.values().view(bags, per_bag)
    offsets = torch.arange(0, bags * per_bag, per_bag, dtype=rows.dtype, device=rows.device)
    # the bag of every entry, given: without it the kernel derives it from the offsets (a zero
    # fill, an index_add and a cumsum over all B * K entries)
    offset2bag = torch.arange(bags, dtype=rows.dtype, device=rows.device).repeat_interleave(per_bag)
    return torch.ops.aten._embedding_bag_per_sample_weights_backward(
        left, table, rows.reshape(-1), offsets, offset2bag, 0).view(bags, per_bag)


def ms_deform_attn_core_gather(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Same contract as :func:`ms_deform_attn_core_pytorch`, computed as one weighted gather.

    Bilinear sampling is written out: each (query, head, level, point) reads its 4 neighbouring
    pixels with weight ``attention * bilinear``, and ``F.embedding_bag(mode="sum")`` gathers and
    sums the L * P * 4 rows of D contiguous channels of every (query, head) at once. On CPU this
    reads whole cache lines where ``grid_sample`` on (N*M, D, H, W) maps strides through D
    separate planes per tap, and nothing of size (N*M, D, Lq, L*P) is materialised.

    Out-of-map reads are zeros as with ``grid_sample(padding_mode="zeros")``: every level is
    stored with a zero border (1 pixel before, 2 after, on both axes) and sampling positions
    are clamped to [-1, size], which puts every corner of a far-outside point on the border
    with a bilinear weight of 0 for any inner corner.
    """
    shapes = _as_int_shapes(spatial_shapes)
    _check_core_inputs(value, shapes, sampling_locations, attention_weights)
    heights, widths = _level_sizes(shapes, value, sampling_locations.shape[3], sampling_locations.shape[4])
    # pixel coordinates, align_corners=False: pixel centres at i + 0.5
    x = sampling_locations[..., 0] * widths - 0.5
    y = sampling_locations[..., 1] * heights - 0.5
    return _gather_at_pixels(value, shapes, x, y, attention_weights, heights, widths)


def ms_deform_attn_gather_from_offsets(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    reference_points: torch.Tensor,
    offsets: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The ``"gather"`` core fed by what :class:`MSDeformAttn` predicts, without forming the
    normalised sampling locations: reference points (N, Lq, L, 2) in [0, 1] and offsets
    (N, Lq, M, L, P, 2) in pixels of each level. ``(ref + off / W) * W - 0.5`` is
    ``ref * W - 0.5 + off``: one broadcast add per axis instead of a divide and an add over
    size-2 inner dimensions and a multiply (same values up to float rounding)."""
    shapes = _as_int_shapes(spatial_shapes)
    _check_core_inputs(value, shapes, offsets, attention_weights)
    n, lq, m, num_levels, num_points, _ = offsets.shape
    if reference_points.shape != (n, lq, num_levels, 2):
        raise ValueError(f"reference_points must be (N, Lq, L, 2) = {(n, lq, num_levels, 2)}, "
                         f"got {tuple(reference_points.shape)}")
    heights, widths = _level_sizes(shapes, value, num_levels, num_points)
    ref = reference_points[:, :, None, :, None, :]  # (N, Lq, 1, L, 1, 2)
    # the (N, Lq, 1, L, P) terms contiguous: broadcast over heads only (see _level_sizes)
    x = offsets[..., 0] + (ref[..., 0] * widths - 0.5)
    y = offsets[..., 1] + (ref[..., 1] * heights - 0.5)
    return _gather_at_pixels(value, shapes, x, y, attention_weights, heights, widths)


def _level_constant(values: List[int], num_points: int, **kw) -> torch.Tensor:
    """A per-level constant as a contiguous (1, 1, 1, L, P) tensor (the same value for every
    point of a level). Why not (1, 1, 1, L, 1): an elementwise op of an (N, Lq, M, L, P) tensor
    with that broadcasts inside the innermost (L, P) block, so the CPU kernel runs an inner
    loop of P = 4 elements with a stride-0 operand; with the constant spelled out over P the
    (L, P) block is one contiguous run in both operands and vectorises: ``minimum`` of a
    (2, 5376, 8, 3, 4) tensor 1.5 -> 0.2 ms at 2 threads (docs/benchmarks.md, twelfth
    session). The values, and so the results, are the same."""
    return torch.tensor(values, **kw).view(1, 1, 1, -1, 1).expand(-1, -1, -1, -1, num_points).contiguous()


def _level_sizes(shapes: List[Tuple[int, int]], value: torch.Tensor, num_levels: int, num_points: int):
    """Per-level heights and widths as contiguous (1, 1, 1, L, P) tensors of the value's
    dtype (:func:`_level_constant`)."""
    kw = dict(device=value.device, dtype=value.dtype)
    return (_level_constant([h for h, _ in shapes], num_points, **kw),
            _level_constant([w for _, w in shapes], num_points, **kw))


def _clamp_coordinates(x: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, size]; NaN coordinates read the zero border instead of indexing out of
    the table."""
    return x.nan_to_num(-1.0).clamp_(min=-1.0).minimum(size)


def _clamp_coordinates_grad(x: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """d _clamp_coordinates(x) / dx as autograd gives it for nan_to_num, the in-place
    clamp_min and minimum: 0 at non-finite x and at or below -1, 1/2 where x equals the
    size, 0 above it."""
    xn = x.nan_to_num(-1.0)
    ok = torch.isfinite(x) & (xn > -1.0)
    half = torch.where(xn == size, 0.5, 1.0)
    return torch.where(ok & (xn <= size), half, 0.0).to(x.dtype)


def _corner_weights(fx: torch.Tensor, fy: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """Bilinear corner weights times the attention weights: (N, Lq, M, L, P) fractional
    parts and weights -> (N, Lq, M, 4, L, P), corners (top-left, top-right, bottom-left,
    bottom-right)."""
    right = attention_weights * fx
    left = attention_weights - right
    bottom_left, bottom_right = left * fy, right * fy
    return torch.stack([left - bottom_left, right - bottom_right, bottom_left, bottom_right], dim=3)


class CornerWeights(torch.autograd.Function):
    """``_corner_weights`` of the clamped pixel coordinates x, y (N, Lq, M, L, P) and the
    attention weights, keeping only those three for backward (the composed ops keep ten
    tensors of that size: the clamp chain, the fractions, left/right). Forward runs the same
    operations as the composed path (same values); the gradient is autograd's formula for it,
    written out (same up to float summation order)."""

    @staticmethod
    def forward(ctx, x, y, attention_weights, widths, heights):
        ctx.save_for_backward(x, y, attention_weights, widths, heights)
        xc, yc = _clamp_coordinates(x, widths), _clamp_coordinates(y, heights)
        return _corner_weights(xc - xc.floor(), yc - yc.floor(), attention_weights)

    @staticmethod
    def backward(ctx, grad):
        x, y, a, widths, heights = ctx.saved_tensors
        xc, yc = _clamp_coordinates(x, widths), _clamp_coordinates(y, heights)
        fx, fy = xc - xc.floor(), yc - yc.floor()
        right = a * fx
        left = a - right
        g0, g1, g2, g3 = grad.unbind(3)
        g_bottom_left, g_bottom_right = g2 - g0, g3 - g1
        g_left = g0 + g_bottom_left * fy
        g_right = g1 + g_bottom_right * fy
        g_fy = g_bottom_left * left + g_bottom_right * right
        g_right_total = g_right - g_left  # left = a - right
        g_a = g_left + g_right_total * fx  # right = a * fx
        g_fx = g_right_total * a
        g_x = g_fx * _clamp_coordinates_grad(x, widths) if ctx.needs_input_grad[0] else None
        g_y = g_fy * _clamp_coordinates_grad(y, heights) if ctx.needs_input_grad[1] else None
        return g_x, g_y, g_a if ctx.needs_input_grad[2] else None, None, None


def _gather_at_pixels(value: torch.Tensor, shapes: List[Tuple[int, int]], x: torch.Tensor,
                      y: torch.Tensor, attention_weights: torch.Tensor, heights: torch.Tensor,
                      widths: torch.Tensor) -> torch.Tensor:
    """The gather core on pixel coordinates x, y (N, Lq, M, L, P) of each level (pixel centres
    at i + 0.5, any value, NaN allowed; ``heights``/``widths`` from :func:`_level_sizes`)
    -> (N, Lq, M * D)."""
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points = x.shape
    device = value.device
    # MSDeformAttn hands the weights over as a view with the heads innermost (its softmax runs
    # that way); the corner weights combine them with x and y elementwise, which vectorises
    # only when all three share one layout: (2, 5376, 8, 3, 4) at 2 threads 5.6 -> 4.0 ms
    # with this copy included (the same values)
    attention_weights = attention_weights.contiguous()

    # Value table with a zero border per level: (N, S_padded, M, D) -> rows of D channels.
    tables, starts, row_lengths = [], [], []
    start = 0
    for v, (h, w) in zip(value.split([h * w for h, w in shapes], dim=1), shapes):
        tables.append(F.pad(v.reshape(n, h, w, m * d), (0, 0, 1, 2, 1, 2)).view(n, -1, m, d))
        starts.append(start)
        row_lengths.append(w + 3)
        start += (h + 3) * (w + 3)
    table = torch.cat(tables, dim=1)
    padded_size = table.shape[1]

    with_grad = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad or attention_weights.requires_grad)
    raw_x, raw_y = x, y
    # no graph for the clamped coordinates and their floors: the indices need none, and with
    # autograd the corner weights come from CornerWeights on the raw x, y
    with torch.no_grad():
        x, y = _clamp_coordinates(x, widths), _clamp_coordinates(y, heights)
        x0, y0 = x.floor(), y.floor()

    # A bag's entries may come in any order: corner-major (N, Lq, M, 4, L, P) keeps every
    # elementwise op below on contiguous (L, P) blocks instead of size-2 inner dimensions.
    # Row of the top-left corner in the flattened (N, S_padded, M) table:
    # ((batch * S_padded + level_start + (y0 + 1) * row_len + (x0 + 1)) * M + head, folded into
    # y0 * row_len * M + x0 * M + a small per-(batch, head, level) constant. int32 indices where
    # the table allows (half the memory traffic of int64; embedding_bag takes both).
    index_dtype = torch.int32 if n * padded_size * m < 2**31 else torch.int64
    # (1, 1, 1, L, P) and (N, 1, M, L, P), contiguous: see _level_constant
    row_len = _level_constant(row_lengths, num_points, device=device, dtype=index_dtype)
    level_start = _level_constant(starts, num_points, device=device, dtype=index_dtype)
    batch = torch.arange(n, device=device, dtype=index_dtype).view(n, 1, 1, 1, 1) * padded_size
    head = torch.arange(m, device=device, dtype=index_dtype).view(1, 1, m, 1, 1)
    constant = (batch + level_start + row_len + 1) * m + head  # (N, 1, M, L, P)
    top_left = y0.to(index_dtype).mul_(row_len * m)
    top_left += x0.to(index_dtype).mul_(m)
    top_left += constant  # (N, Lq, M, L, P)
    # corner offsets per (level, point): right = +M, below = +row_len * M
    below = (row_len * m).view(num_levels, num_points)
    shifts = torch.stack([torch.zeros_like(below), below.new_full(below.shape, m), below, below + m])

    if with_grad:
        # training: the corner weights as one autograd node that keeps the raw x, y and the
        # attention weights and recomputes the rest in backward (the composed ops kept ten
        # (N, Lq, M, L, P) tensors per layer, this keeps three)
        weights = CornerWeights.apply(raw_x, raw_y, attention_weights, widths, heights)
    else:
        weights = _corner_weights(x - x0, y - y0, attention_weights)

    points = num_levels * num_points
    out = WeightedRowSum.apply(table.reshape(-1, d), top_left.reshape(-1, points),
                               shifts.reshape(4, points), weights.reshape(-1, 4, points))
    return out.view(n, lq, m * d)


MS_DEFORM_ATTN_IMPLS: Dict[str, Callable[..., torch.Tensor]] = {
    "pytorch": ms_deform_attn_core_pytorch,
    "pytorch_levelwise": ms_deform_attn_core_levelwise,
    "gather": ms_deform_attn_core_gather,
}


def get_ms_deform_attn_core(impl: str) -> Callable[..., torch.Tensor]:
    if impl not in MS_DEFORM_ATTN_IMPLS:
        raise ValueError(
            f"Unknown MSDeformAttn implementation {impl!r}; choose one of {sorted(MS_DEFORM_ATTN_IMPLS)} "
            "(config key MODEL.SEM_SEG_HEAD.MSDEFORMATTN_IMPL)."
        )
    return MS_DEFORM_ATTN_IMPLS[impl]


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (state-dict keys as Deformable DETR /
    Mask2Former: ``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``).

    Each query attends to ``n_points`` learned offsets around its reference point on each of
    ``n_levels`` maps, per head, with softmax weights over (level, point).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 impl: str = "gather"):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
        head_dim = d_model // n_heads
        if head_dim & (head_dim - 1):
            # Only matters for the CUDA kernel of the original work; kept as a hint for porting.
            warnings.warn(f"MSDeformAttn head dim {head_dim} is not a power of 2.")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.impl = impl
        self._core = get_ms_deform_attn_core(impl)

        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def set_impl(self, impl: str) -> None:
        """Switch the core (same weights, same results up to float summation order)."""
        self._core = get_ms_deform_attn_core(impl)
        self.impl = impl

    def _reset_parameters(self):
        # Offsets start on a ring: head h points in direction 2*pi*h/n_heads (scaled so the
        # larger coordinate is 1), point p at distance p+1; the offset weights start at zero.
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: SpatialShapes,
        input_level_start_index: Optional[torch.Tensor] = None,
        input_padding_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            query: (N, Lq, C).
            reference_points: (N, Lq, L, 2) points in [0, 1] (x, y), or (N, Lq, L, 4) boxes
                (cx, cy, w, h).
            input_flatten: (N, S, C), all levels' pixels concatenated.
            input_spatial_shapes: (L, 2) long tensor or list of (H_l, W_l).
            input_level_start_index: unused by the PyTorch cores (kept for call compatibility).
            input_padding_mask: optional bool (N, S), True on padding.

        Returns:
            (N, Lq, C).
        """
        shapes = _as_int_shapes(input_spatial_shapes)
        n, lq, _ = query.shape
        _, s, _ = input_flatten.shape
        if sum(h * w for h, w in shapes) != s:
            raise ValueError(f"input_flatten has {s} positions but spatial shapes {shapes} give "
                             f"{sum(h * w for h, w in shapes)}")

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, self.d_model // self.n_heads)
        device_type = query.device.type
        if torch.is_autocast_enabled(device_type):
            # Under autocast (bf16 inference: the pixel decoder lets it in there) the projections
            # run reduced, the sampling in float32: bf16's 8 mantissa bits would place a sample
            # at x = 60 px only to 0.25 px, and the gather's bilinear weights come from x.
            with torch.autocast(device_type, enabled=False):
                out = self._sample(query.float(), reference_points.float(), value.float(), shapes)
        else:
            out = self._sample(query, reference_points, value, shapes)
        return self.output_proj(out)

    def _sample(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                shapes: List[Tuple[int, int]]) -> torch.Tensor:
        """Offsets and weights from the queries, then the core: (N, Lq, M * D)."""
        n, lq, _ = query.shape
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        # softmax over the L * P (= 12) weights of each head, computed with the heads innermost:
        # CPU softmax vectorises along the inner dimension, 2.5x faster than over 12 contiguous
        # values (same result up to rounding); the transposed-back view feeds the cores as is.
        weights = F.softmax(weights.transpose(-1, -2), -2).transpose(-1, -2)
        weights = weights.view(n, lq, self.n_heads, self.n_levels, self.n_points)

        if reference_points.shape[-1] == 2 and self.impl == "gather":
            return ms_deform_attn_gather_from_offsets(value, shapes, reference_points, offsets, weights)
        if reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level: divide by that level's (W, H).
            normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
            locations = (reference_points[:, :, None, :, None, :]
                         + offsets / normalizer[None, None, None, :, None, :])
        elif reference_points.shape[-1] == 4:
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError("reference_points must end in 2 (points) or 4 (boxes); "
                             f"got {tuple(reference_points.shape)}")
        return self._core(value, shapes, locations, weights)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_levels={self.n_levels}, n_heads={self.n_heads}, "
                f"n_points={self.n_points}, impl={self.impl!r}")
