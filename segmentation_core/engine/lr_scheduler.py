"""LR schedulers: detectron2's, plus ``WarmupPolyLR`` (``SOLVER.LR_SCHEDULER_NAME``) from the
DeepLab project, as the official MaskFormer / Mask2Former trainers use."""
from detectron2.projects.deeplab import build_lr_scheduler as _deeplab_build_lr_scheduler
from detectron2.projects.deeplab.lr_scheduler import WarmupPolyLR

__all__ = ["build_lr_scheduler", "WarmupPolyLR"]


def build_lr_scheduler(cfg, optimizer):
    return _deeplab_build_lr_scheduler(cfg, optimizer)
