"""Official ReSTR checkpoints.

An official checkpoint (``train_restr.py``) is a bare ``model.state_dict()`` whose keys already
equal ours (``encoder_v.*``, ``encoder_l.*``, ``fusion_module.*``, including the unused
``encoder_v.head.*``), so it loads with ``strict=True`` as it is, and detectron2's
``DetectionCheckpointer`` reads it directly through ``MODEL.WEIGHTS`` (a bare dict is wrapped as
``{"model": ...}``). ``convert_official_restr_state_dict`` only normalises the container
(``{"model": ...}``, ``{"state_dict": ...}``, DDP ``module.`` prefixes) and checks the key set;
``tools/convert/convert_restr_checkpoint.py`` writes the result as a detectron2 checkpoint.
"""
from collections import OrderedDict
from typing import Dict, Mapping

import torch

__all__ = ["RESTR_PREFIXES", "convert_official_restr_state_dict"]

RESTR_PREFIXES = ("encoder_v.", "encoder_l.", "fusion_module.")


def convert_official_restr_state_dict(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """Official ReSTR checkpoint (any of the containers above) -> our model's state dict."""
    sd = checkpoint
    for key in ("model", "state_dict"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module.") :]
        if not torch.is_tensor(v):
            raise ValueError(f"checkpoint entry {k!r} is not a tensor ({type(v).__name__})")
        out[k] = v
    unknown = sorted({k.split(".")[0] for k in out if not k.startswith(RESTR_PREFIXES)})
    if unknown:
        raise ValueError(
            f"not a ReSTR checkpoint: top-level modules {unknown} are none of "
            f"{[p[:-1] for p in RESTR_PREFIXES]}"
        )
    missing = [p[:-1] for p in RESTR_PREFIXES if not any(k.startswith(p) for k in out)]
    if missing:
        raise ValueError(f"ReSTR checkpoint without {missing} weights")
    return out
