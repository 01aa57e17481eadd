"""Stochastic depth that does not compute the residual branches it drops."""
from typing import Callable

import torch

__all__ = ["drop_path_residual"]


def drop_path_residual(x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor],
                       drop_prob: float) -> torch.Tensor:
    """``x + DropPath(drop_prob)(branch(x))`` in training, with timm's ``DropPath`` (one
    Bernoulli(1 - p) draw per sample, kept samples scaled by 1 / (1 - p)), but ``branch`` runs
    only on the samples it keeps.

    x: (B, ...). ``branch`` must treat samples independently and draw no random numbers: the
    keep mask is drawn before the branch runs (timm draws it after), which is the same random
    stream only then. When every sample is kept, or none, the branch runs on the whole batch as
    usual (none kept: its parameters still get their zero gradients, which AdamW's moment decay
    and weight decay see, where a skipped branch would leave them ``None``). Otherwise the kept
    samples' rows are the same numbers as the full computation's up to the summation order of
    the batch-size-dependent kernels, and the dropped samples' rows are ``x`` itself (the full
    computation adds ``0 * branch``).

    The indices of the kept samples are read on the host: on a GPU that would synchronise
    in every block, so callers use this on CPU only, and outside autocast (timm draws the mask
    in the branch's output dtype and scales it in that dtype, bfloat16 under autocast).
    """
    keep_prob = 1.0 - drop_prob
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
    if keep_prob > 0.0:
        keep.div_(keep_prob)
    kept = keep.view(-1).nonzero().view(-1)
    if 0 < kept.numel() < x.shape[0]:
        return x.index_add(0, kept, branch(x.index_select(0, kept)) * keep.index_select(0, kept))
    return x + branch(x) * keep
