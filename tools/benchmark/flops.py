"""Model FLOPs (fvcore) and the machine's measured dense-matmul rate.

fvcore counts one fused multiply-add as one "flop"; we report FLOPs = 2 x fvcore's count so
that achieved GFLOP/s and the dense-matmul rate (2 n^3 / t) are in the same unit. Ops fvcore
has no formula for (grid_sample, softmax, norms, element-wise) are listed as uncounted; they
are memory-bound and small in FLOPs next to the matmuls and convolutions.
"""
import time
from typing import Callable, Dict, Tuple

import torch

from .stats import percentile

__all__ = ["count_flops", "count_flops_dispatch", "flops_by_dtype", "matmul_gflops"]


def _shape(v):
    return v.type().sizes()


def _sdpa_flop(inputs, outputs):
    # q (.., L, E), k (.., S, E), v (.., S, Ev): QK^T is L*S*E MACs, attn@V is L*S*Ev MACs.
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _baddbmm_flop(inputs, outputs):
    b1, b2 = _shape(inputs[1]), _shape(inputs[2])
    return b1[0] * b1[1] * b1[2] * b2[2]


def _grid_sample_flop(inputs, outputs):
    # bilinear: 4 weighted taps per output element
    out = _shape(outputs[0])
    n = 1
    for d in out:
        n *= d
    return 4 * n


def _weighted_row_sum_flop(inputs, outputs):
    # maskformer_d2's WeightedRowSum (the deformable attention's "gather" core): every output
    # row of D channels is a weighted sum of K table rows, K = levels * points * 4 taps; the
    # same count as 4 bilinear taps per sampled element of the grid_sample core.
    # inputs: table (R, D), base rows (B, J), corner shifts (C, J), weights (B, C, J)
    weights, out = _shape(inputs[3]), _shape(outputs[0])
    return weights[0] * weights[1] * weights[2] * out[-1]


def _embedding_bag_flop(inputs, outputs):
    # aten::embedding_bag(weight (R, D), indices (flattened), offsets, ...): one multiply-add
    # per gathered row and channel when weighted; plain sums are counted the same
    indices, weight = _shape(inputs[1]), _shape(inputs[0])
    n = 1
    for d in indices:
        n *= d
    return n * weight[-1]


_EXTRA_HANDLES = {
    "aten::scaled_dot_product_attention": _sdpa_flop,
    "aten::_scaled_dot_product_flash_attention_for_cpu": _sdpa_flop,
    "aten::baddbmm": _baddbmm_flop,
    "aten::grid_sampler": _grid_sample_flop,
    "aten::grid_sampler_2d": _grid_sample_flop,
    "prim::PythonOp.WeightedRowSum": _weighted_row_sum_flop,
    "aten::embedding_bag": _embedding_bag_flop,
}


def count_flops(module: torch.nn.Module, inputs: Tuple) -> Dict[str, object]:
    """FLOPs of one `module(*inputs)` call by fvcore tracing.

    Returns {"gflop": 2*MACs/1e9, "by_operator": {op: gflop}, "uncounted_ops": {op: calls}}."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**_EXTRA_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    total = analysis.total()
    return {
        "gflop": 2.0 * total / 1e9,
        "by_operator": {k: 2.0 * v / 1e9 for k, v in sorted(analysis.by_operator().items(),
                                                              key=lambda kv: -kv[1])},
        "uncounted_ops": dict(analysis.unsupported_ops()),
    }


def matmul_gflops(n: int = 2048, reps: int = 5, dtype: torch.dtype = torch.float32) -> Dict[str, float]:
    """Dense (n x n) @ (n x n) rate in ``dtype`` (float32: the physical reference for achieved
    GFLOP/s) at the current torch thread count (median and best of `reps`)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    flop = 2.0 * n ** 3
    return {"n": n, "median_gflops": flop / percentile(times, 50) / 1e9,
            "best_gflops": flop / min(times) / 1e9, "threads": torch.get_num_threads()}


def _sdpa_cpu_flop(query, key, value, *args, out_shape=None, **kwargs):
    # torch's table has no entry for the CPU flash kernel; same formula as its GPU kernels
    b, h, lq, e = query
    return 2 * b * h * lq * key[-2] * (e + value[-1])


def flops_by_dtype(fn) -> Dict[str, float]:
    """GFLOPs of one ``fn()`` call (matmuls, convolutions, attention: torch.utils.flop_counter's
    formulas) summed per dtype of each op's first floating-point input, as the op reaches the
    dispatcher, i.e. after autocast's casts: how much of the work a bf16 autocast moved to bf16.
    ``fn`` must not use ``torch.inference_mode`` (an error says so)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry, shape_wrapper

    # Under inference_mode these composite ops reach the dispatcher undecomposed (and einsum's
    # inner bmm is autocast below it, unseen): their work would be missed or mislabelled
    composite = {torch.ops.aten.linear, torch.ops.aten.conv2d, torch.ops.aten.einsum,
                 torch.ops.aten.scaled_dot_product_attention, torch.ops.aten.matmul}
    formulas = {**flop_registry,
                torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: shape_wrapper(_sdpa_cpu_flop)}
    totals: Dict[str, float] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func._overloadpacket in composite:
                raise RuntimeError(f"flops_by_dtype: {func} reached the dispatcher undecomposed; call "
                                   "the network under torch.no_grad(), not torch.inference_mode()")
            out = func(*args, **kwargs)
            formula = formulas.get(func._overloadpacket)
            if formula is not None:
                flat = [x for a in (*args, *kwargs.values()) for x in (a if isinstance(a, (list, tuple)) else [a])]
                dtype = next((str(a.dtype).replace("torch.", "") for a in flat
                              if isinstance(a, torch.Tensor) and a.is_floating_point()), "other")
                totals[dtype] = totals.get(dtype, 0.0) + formula(*args, **kwargs, out_val=out) / 1e9
            return out

    with Count():
        fn()
    return dict(sorted(totals.items()))


def count_flops_dispatch(fn) -> Dict[str, object]:
    """FLOPs of one `fn()` call counted at the PyTorch dispatcher (torch.utils.flop_counter):
    matmuls, convolutions and scaled-dot-product attention, 2 FLOPs per multiply-add. Works on
    any model (no tracing: string inputs are fine); used where fvcore cannot trace."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop})
    with counter:
        fn()
    by_op = {str(k): v / 1e9 for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return {"gflop": counter.get_total_flops() / 1e9,
            "by_operator": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "uncounted_ops": {}}
