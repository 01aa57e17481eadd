"""Config keys of the shared training engine (idempotent: existing values are kept)."""
from detectron2.config import CfgNode as CN
from segmentation_core.config_defaults import set_default

__all__ = ["add_engine_config"]


def add_engine_config(cfg):
    """Keys ``Trainer`` reads that not every model family's config function defines.

    The MaskFormer-family keys (``SOLVER.OPTIMIZER``, ``SOLVER.BACKBONE_MULTIPLIER``,
    ``SOLVER.WEIGHT_DECAY_EMBED``, ``INPUT.DATASET_MAPPER_NAME``) get the official defaults.
    """
    set_default(cfg.SOLVER, "OPTIMIZER", "SGD")
    set_default(cfg.SOLVER, "BACKBONE_MULTIPLIER", 1.0)
    set_default(cfg.SOLVER, "WEIGHT_DECAY_EMBED", 0.0)
    # modules whose name contains one of these get lr x BACKBONE_MULTIPLIER
    set_default(cfg.SOLVER, "BACKBONE_MODULE_NAMES", ["backbone"])
    # parameters whose name contains one of these get weight decay 0 (Swin's position tables
    # in the official Mask2Former; add e.g. "pos_embed", "cls_token" for a plain ViT)
    set_default(cfg.SOLVER, "NO_WEIGHT_DECAY_KEYS", ["relative_position_bias_table", "absolute_pos_embed"])
    # SOLVER.AMP.ENABLED autocasts on CUDA (fp16 + grad scaling); on CPU it is ignored
    # unless CPU_BF16 is True, in which case the forward runs under bfloat16 autocast
    set_default(cfg.SOLVER.AMP, "CPU_BF16", False)
    # True: weights for evaluation / prediction / resume must cover the whole model, and a
    # training start from MODEL.WEIGHTS must place every tensor of the file (segmentation_core.checkpoint_policy);
    # False: detectron2's lenient loading (what fits loads, the rest is a warning)
    set_default(cfg.MODEL, "WEIGHTS_STRICT", True)
    set_default(cfg.INPUT, "DATASET_MAPPER_NAME", "")
    # True: a data stream that is a pure function of SEED and the iteration, so `--resume`
    # after a kill continues bit-exactly (segmentation_core.resume); False: detectron2's loader
    set_default(cfg.DATALOADER, "RESUMABLE", True)
    # what a NaN/Inf loss does: "raise" stops before the backward pass; "skip" skips the step
    set_default(cfg.SOLVER, "NONFINITE_LOSS", "raise")
    set_default(cfg, "EVAL", CN())
    # metric kernels: "pycocotools" or "faster_coco_eval" for COCO AP; "hotcoco" or
    # "panopticapi" for PQ
    set_default(cfg.EVAL, "COCO_BACKEND", "pycocotools")
    set_default(cfg.EVAL, "PANOPTIC_BACKEND", "hotcoco")
