"""Optimizer of the MaskFormer family: per-parameter groups + full-model gradient clipping."""
import itertools
import logging
from typing import Any, Dict, List, Sequence

import torch

from detectron2.solver.build import maybe_add_gradient_clipping

__all__ = ["NORM_MODULE_TYPES", "get_param_groups", "build_optimizer", "add_full_model_gradient_clipping"]

logger = logging.getLogger(__name__)

NORM_MODULE_TYPES = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
    torch.nn.GroupNorm,
    torch.nn.InstanceNorm1d,
    torch.nn.InstanceNorm2d,
    torch.nn.InstanceNorm3d,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)


def get_param_groups(
    model: torch.nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    backbone_multiplier: float = 1.0,
    weight_decay_norm: float = 0.0,
    weight_decay_embed: float = 0.0,
    no_weight_decay_keys: Sequence[str] = ("relative_position_bias_table", "absolute_pos_embed"),
    backbone_module_names: Sequence[str] = ("backbone",),
) -> List[Dict[str, Any]]:
    """One group per trainable parameter (shared parameters counted once).

    * modules whose name contains one of ``backbone_module_names`` ("backbone"; ReSTR's
      vision encoder is "encoder_v"): lr x ``backbone_multiplier``;
    * parameters of normalization modules: ``weight_decay_norm``;
    * parameters of ``nn.Embedding``: ``weight_decay_embed``;
    * parameter names containing one of ``no_weight_decay_keys``: weight decay 0.
    """
    groups, memo = [], set()
    for module_name, module in model.named_modules():
        for name, value in module.named_parameters(recurse=False):
            if not value.requires_grad or value in memo:
                continue
            memo.add(value)
            lr, wd = base_lr, weight_decay
            if any(k in module_name for k in backbone_module_names):
                lr = lr * backbone_multiplier
            if any(k in name for k in no_weight_decay_keys):
                wd = 0.0
            if isinstance(module, NORM_MODULE_TYPES):
                wd = weight_decay_norm
            if isinstance(module, torch.nn.Embedding):
                wd = weight_decay_embed
            groups.append({"params": [value], "lr": lr, "weight_decay": wd})
    return groups


def add_full_model_gradient_clipping(optim_cls, clip_norm_val):
    """Subclass of ``optim_cls`` whose ``step`` first clips the global norm of all gradients."""

    class FullModelGradientClippingOptimizer(optim_cls):
        def step(self, closure=None):
            all_params = itertools.chain(*[g["params"] for g in self.param_groups])
            torch.nn.utils.clip_grad_norm_(all_params, clip_norm_val)
            return super().step(closure=closure)

    FullModelGradientClippingOptimizer.__name__ = f"FullModelClipped{optim_cls.__name__}"
    return FullModelGradientClippingOptimizer


def build_optimizer(cfg, model):
    """``SOLVER.OPTIMIZER`` ("SGD" or "ADAMW") over :func:`get_param_groups`.

    ``SOLVER.CLIP_GRADIENTS`` with ``CLIP_TYPE: full_model`` clips the norm of all gradients
    together (the official MaskFormer setting); other clip types use detectron2's per-group
    clipping.
    """
    groups = get_param_groups(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        backbone_multiplier=cfg.SOLVER.BACKBONE_MULTIPLIER,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        weight_decay_embed=cfg.SOLVER.WEIGHT_DECAY_EMBED,
        no_weight_decay_keys=tuple(cfg.SOLVER.NO_WEIGHT_DECAY_KEYS),
        backbone_module_names=tuple(cfg.SOLVER.BACKBONE_MODULE_NAMES),
    )
    clip = cfg.SOLVER.CLIP_GRADIENTS
    full_model = clip.ENABLED and clip.CLIP_TYPE == "full_model" and clip.CLIP_VALUE > 0.0
    name = cfg.SOLVER.OPTIMIZER
    if name == "SGD":
        cls, kwargs = torch.optim.SGD, {"momentum": cfg.SOLVER.MOMENTUM}
    elif name == "ADAMW":
        cls, kwargs = torch.optim.AdamW, {}
    else:
        raise NotImplementedError(f"SOLVER.OPTIMIZER={name!r}; supported: 'SGD', 'ADAMW'")
    if full_model:
        cls = add_full_model_gradient_clipping(cls, clip.CLIP_VALUE)
    optimizer = cls(groups, cfg.SOLVER.BASE_LR, **kwargs)
    if not full_model:
        optimizer = maybe_add_gradient_clipping(cfg, optimizer)
    trained = sum(p.numel() for g in groups for p in g["params"])
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    logger.info(
        f"Optimizer {type(optimizer).__name__}: {len(groups)} parameter groups "
        f"({trained / 1e6:.2f} M parameters trained, {frozen / 1e6:.2f} M frozen), base lr "
        f"{cfg.SOLVER.BASE_LR}, backbone x{cfg.SOLVER.BACKBONE_MULTIPLIER}, weight decay "
        f"{cfg.SOLVER.WEIGHT_DECAY} (norm {cfg.SOLVER.WEIGHT_DECAY_NORM}, embedding "
        f"{cfg.SOLVER.WEIGHT_DECAY_EMBED}, 0 for {list(cfg.SOLVER.NO_WEIGHT_DECAY_KEYS)}), "
        f"gradient clipping: "
        + (f"full model, max norm {clip.CLIP_VALUE}" if full_model else
           (f"{clip.CLIP_TYPE} {clip.CLIP_VALUE}" if clip.ENABLED else "off"))
    )
    return optimizer
