import math

import torch


class NonFiniteLossError(FloatingPointError):
    pass


def find_nonfinite_losses(loss_dict):
    """Names and values of the loss terms that are NaN or infinite."""
    bad = {}
    for name, value in loss_dict.items():
        v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            bad[name] = v
    return bad


def nonfinite_message(bad, iteration, last_checkpoint):
    terms = ", ".join(f"{k}={v}" for k, v in bad.items())
    kept = f"the last good checkpoint '{last_checkpoint}' is kept" if last_checkpoint else \
        "no checkpoint was written for this step"
    return (f"non-finite loss at iteration {iteration}: {terms}. Training stopped before the "
            f"backward pass, so the weights were not updated and {kept}. Lower SOLVER.BASE_LR, "
            "enable SOLVER.CLIP_GRADIENTS, check the data of this iteration, or set "
            "SOLVER.NONFINITE_LOSS 'skip' to skip such steps.")
