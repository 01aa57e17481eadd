"""Autograd-graph helpers for tests that pin down how a backward pass is built."""
from collections import Counter
from typing import Callable, List, Set, Tuple

import torch


def graph_node_counts(fn) -> Counter:
    """How many autograd nodes of each type are reachable from ``fn`` (a ``grad_fn``)."""
    counts, todo, seen = Counter(), [fn], set()
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        counts[type(f).__name__] += 1
        todo.extend(g for g, _ in f.next_functions)
    return counts


def graph_node_names(fn) -> Set[str]:
    """Type names of every autograd node reachable from ``fn`` (a ``grad_fn``)."""
    return set(graph_node_counts(fn))


def fused_qkv_reference(qkv: torch.Tensor, num_heads: int) -> List[torch.Tensor]:
    """q, k, v (B, heads, N, head_dim) of a fused (B, N, 3 * C) projection the way the official
    code splits it: reshape, permute(2, 0, 3, 1, 4), unbind(0)."""
    b, n, c3 = qkv.shape
    return list(qkv.reshape(b, n, 3, num_heads, c3 // (3 * num_heads)).permute(2, 0, 3, 1, 4).unbind(0))


def assert_same_forward_and_gradients(module: torch.nn.Module, run: Callable[[torch.Tensor], torch.Tensor],
                                      reference: Callable[[torch.Tensor], torch.Tensor],
                                      x: torch.Tensor) -> Tuple[Counter, Counter]:
    """``run(x)`` and ``reference(x)`` give bit-identical outputs and gradients (input and every
    parameter of ``module``); returns the autograd node counts of both outputs' graphs."""
    results = []
    for fn in (run, reference):
        module.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        out = fn(xi)
        names = graph_node_counts(out.grad_fn)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        results.append((out.detach(), xi.grad, {k: p.grad.clone() for k, p in module.named_parameters()
                                                  if p.grad is not None}, names))
    (out, gx, gp, names), (ref_out, ref_gx, ref_gp, ref_names) = results
    assert torch.equal(out, ref_out) and torch.equal(gx, ref_gx)
    assert gp.keys() == ref_gp.keys() and len(gp) > 0
    for k in gp:
        assert torch.equal(gp[k], ref_gp[k]), k
    return names, ref_names
