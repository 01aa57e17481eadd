"""Config keys of MaskFormer and Mask2Former.

``add_maskformer2_config`` / ``add_mask_former_config`` add every key the official
``add_maskformer2_config`` / ``add_mask_former_config`` add (so every official YAML merges after
``detectron2.projects.deeplab.add_deeplab_config``), plus a few explicit switches of this project:

* ``MODEL.SEM_SEG_HEAD.MSDEFORMATTN_IMPL``: multi-scale deformable attention core,
  ``"gather"`` (default: explicit bilinear taps summed by one ``embedding_bag``, the fastest),
  ``"pytorch"`` (the ``grid_sample`` reference formulation) or ``"pytorch_levelwise"``.
* ``MODEL.MASK_FORMER.POINT_LOSS``: mask loss on sampled points, ``"sigmoid_ce"`` (default,
  Mask2Former) or ``"focal"``.
* ``MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB`` (default 64): post-process the output in bands
  of rows (``modeling/banded_postprocessing.py``, results identical); 0: the whole image at once.
* ``MODEL.MASK_FORMER.TEST.COMPACT_OUTPUTS`` (default False): ``sem_seg_labels`` (H, W) instead
  of ``sem_seg`` (K, H, W), instances with bit-packed ``pred_masks_packed``: huge images.

Both functions only add keys that are missing, never overwrite a value, and can be called
together, in any order, any number of times. The one key whose default differs between the two
families is ``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME`` (``MultiScaleMaskedTransformerDecoder``
for Mask2Former, ``StandardTransformerDecoder`` for MaskFormer): with both called by hand, the
first call sets it. ``segmentation_core.config.build_cfg(yaml)`` does not depend on that order: the
families registered below decide from the YAML which function's defaults apply (every official
Mask2Former YAML names its transformer decoder; no official MaskFormer YAML does).
"""
from typing import Any

from detectron2.config import CfgNode as CN
from segmentation_core.acceleration import add_acceleration_config
from segmentation_core.config import CONFIG_FAMILY_REGISTRY, ConfigFamily, yaml_value
from segmentation_core.config_defaults import set_default

__all__ = ["add_maskformer2_config", "add_mask_former_config", "Mask2FormerConfig", "MaskFormerConfig"]


def _node(parent: CN, key: str) -> CN:
    if key not in parent:
        parent[key] = CN()
    return parent[key]


def _add_common(cfg: CN) -> None:
    """Keys shared by MaskFormer and Mask2Former (same defaults in both official projects)."""
    add_acceleration_config(cfg)
    inp = cfg.INPUT
    set_default(inp, "DATASET_MAPPER_NAME", "mask_former_semantic")
    set_default(inp, "COLOR_AUG_SSD", False)
    # Retry random crops until no single category covers more than this fraction of the crop.
    set_default(_node(inp, "CROP"), "SINGLE_CATEGORY_MAX_AREA", 1.0)
    # Pad image and GT in the dataset mapper (-1: no padding).
    set_default(inp, "SIZE_DIVISIBILITY", -1)

    solver = cfg.SOLVER
    set_default(solver, "WEIGHT_DECAY_EMBED", 0.0)
    set_default(solver, "OPTIMIZER", "ADAMW")
    set_default(solver, "BACKBONE_MULTIPLIER", 0.1)
    # Also added by add_deeplab_config (same defaults); needed by WarmupPolyLR configs.
    set_default(solver, "POLY_LR_POWER", 0.9)
    set_default(solver, "POLY_LR_CONSTANT_ENDING", 0.0)

    mf = _node(cfg.MODEL, "MASK_FORMER")
    # loss
    set_default(mf, "DEEP_SUPERVISION", True)
    set_default(mf, "NO_OBJECT_WEIGHT", 0.1)
    set_default(mf, "CLASS_WEIGHT", 1.0)
    set_default(mf, "DICE_WEIGHT", 1.0)
    set_default(mf, "MASK_WEIGHT", 20.0)
    # transformer
    set_default(mf, "NHEADS", 8)
    set_default(mf, "DROPOUT", 0.1)
    set_default(mf, "DIM_FEEDFORWARD", 2048)
    set_default(mf, "ENC_LAYERS", 0)
    set_default(mf, "DEC_LAYERS", 6)
    set_default(mf, "PRE_NORM", False)
    set_default(mf, "HIDDEN_DIM", 256)
    set_default(mf, "NUM_OBJECT_QUERIES", 100)
    set_default(mf, "TRANSFORMER_IN_FEATURE", "res5")
    set_default(mf, "ENFORCE_INPUT_PROJ", False)
    # inference
    test = _node(mf, "TEST")
    set_default(test, "SEMANTIC_ON", True)
    set_default(test, "INSTANCE_ON", False)
    set_default(test, "PANOPTIC_ON", False)
    set_default(test, "OBJECT_MASK_THRESHOLD", 0.0)
    set_default(test, "OVERLAP_THRESHOLD", 0.0)
    set_default(test, "SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE", False)
    set_default(test, "SEMANTIC_INFERENCE_METHOD", "probabilistic")  # MaskFormer key, kept for its YAMLs
    # ours: post-process in bands of output rows of at most this many MiB of (queries, rows,
    # width) float32 (identical results, bounded memory); 0 = the whole image at once
    set_default(test, "POSTPROCESS_BAND_MB", 64.0)
    # ours: sem_seg_labels (H, W) and bit-packed instance masks instead of (K, H, W) scores and
    # float masks, for huge images (needs POSTPROCESS_BAND_MB > 0)
    set_default(test, "COMPACT_OUTPUTS", False)
    # Backbones such as ResNet report size_divisibility 0; this overrides it.
    set_default(mf, "SIZE_DIVISIBILITY", 32)
    # point-sampled mask loss (Mask2Former)
    set_default(mf, "TRAIN_NUM_POINTS", 112 * 112)
    set_default(mf, "OVERSAMPLE_RATIO", 3.0)
    set_default(mf, "IMPORTANCE_SAMPLE_RATIO", 0.75)
    set_default(mf, "POINT_LOSS", "sigmoid_ce")  # ours: "sigmoid_ce" | "focal"
    # ours: Mask2Former training computes the per-layer mask logits without autograd and the
    # criterion recomputes the matched queries' masks with it (same losses and gradients up to
    # float summation order, less backward work); False: every query's masks with autograd
    set_default(mf, "MATCHED_MASK_GRAD", True)

    head = cfg.MODEL.SEM_SEG_HEAD
    set_default(head, "MASK_DIM", 256)
    set_default(head, "TRANSFORMER_ENC_LAYERS", 0)
    set_default(head, "PIXEL_DECODER_NAME", "BasePixelDecoder")
    set_default(head, "DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", ["res3", "res4", "res5"])
    # Present in the official config but not read by the official MSDeformAttnPixelDecoder.
    set_default(head, "DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS", 4)
    set_default(head, "DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS", 8)
    # ours: "gather" (default, fastest) | "pytorch" (grid_sample reference) | "pytorch_levelwise"
    set_default(head, "MSDEFORMATTN_IMPL", "gather")

    # LSJ augmentation
    set_default(inp, "IMAGE_SIZE", 1024)
    set_default(inp, "MIN_SCALE", 0.1)
    set_default(inp, "MAX_SCALE", 2.0)

    swin = _node(cfg.MODEL, "SWIN")
    set_default(swin, "PRETRAIN_IMG_SIZE", 224)
    set_default(swin, "PATCH_SIZE", 4)
    set_default(swin, "EMBED_DIM", 96)
    set_default(swin, "DEPTHS", [2, 2, 6, 2])
    set_default(swin, "NUM_HEADS", [3, 6, 12, 24])
    set_default(swin, "WINDOW_SIZE", 7)
    set_default(swin, "MLP_RATIO", 4.0)
    set_default(swin, "QKV_BIAS", True)
    set_default(swin, "QK_SCALE", None)
    set_default(swin, "DROP_RATE", 0.0)
    set_default(swin, "ATTN_DROP_RATE", 0.0)
    set_default(swin, "DROP_PATH_RATE", 0.3)
    set_default(swin, "APE", False)
    set_default(swin, "PATCH_NORM", True)
    set_default(swin, "OUT_FEATURES", ["res2", "res3", "res4", "res5"])
    set_default(swin, "USE_CHECKPOINT", False)
    # ours: CPU float32 training computes no residual branch for an image that stochastic depth
    # drops in it (same random draws and numbers; SwinTransformerBlock); False: every branch
    set_default(swin, "SKIP_DROPPED_PATHS", True)


def add_maskformer2_config(cfg: CN) -> CN:
    """Add the Mask2Former keys (and MaskFormer's) to ``cfg`` in place; returns ``cfg``."""
    _add_common(cfg)
    set_default(cfg.MODEL.MASK_FORMER, "TRANSFORMER_DECODER_NAME", "MultiScaleMaskedTransformerDecoder")
    return cfg


def add_mask_former_config(cfg: CN) -> CN:
    """Add the MaskFormer keys (and Mask2Former's) to ``cfg`` in place; returns ``cfg``."""
    _add_common(cfg)
    set_default(cfg.MODEL.MASK_FORMER, "TRANSFORMER_DECODER_NAME", "StandardTransformerDecoder")
    return cfg


# -- the two families as the config entry point (segmentation_core.config.build_cfg) sees them ------------
_MASKED_DECODER_KEY = "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME"
_PER_PIXEL_HEADS = ("PerPixelBaselineHead", "PerPixelBaselinePlusHead")


@CONFIG_FAMILY_REGISTRY.register()
class Mask2FormerConfig(ConfigFamily):
    """A ``MaskFormer`` meta-architecture YAML that names a transformer decoder other than
    MaskFormer's: every official Mask2Former YAML names ``MultiScaleMaskedTransformerDecoder``."""

    meta_architectures = ("MaskFormer",)
    checkpoint_key_prefixes = (
        "backbone.", "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor.transformer_self_attention_layers.",
        "sem_seg_head.predictor.transformer_cross_attention_layers.",
        "sem_seg_head.predictor.transformer_ffn_layers.", "sem_seg_head.predictor.decoder_norm.",
        "sem_seg_head.predictor.query_feat.", "sem_seg_head.predictor.query_embed.",
        "sem_seg_head.predictor.level_embed.", "sem_seg_head.predictor.class_embed.",
        "sem_seg_head.predictor.mask_embed.",
    )
    add_config = staticmethod(add_maskformer2_config)

    @classmethod
    def matches(cls, tree):
        decoder = yaml_value(tree, _MASKED_DECODER_KEY)
        return super().matches(tree) and decoder is not None and decoder != "StandardTransformerDecoder"


@CONFIG_FAMILY_REGISTRY.register()
class MaskFormerConfig(ConfigFamily):
    """A ``MaskFormer`` meta-architecture YAML that names no transformer decoder (the key does not
    exist in the official MaskFormer project, which has one: the DETR decoder) or names
    ``StandardTransformerDecoder``; and the per-pixel baselines (detectron2's
    ``SemanticSegmentor`` with a ``PerPixelBaseline*Head``)."""

    meta_architectures = ("MaskFormer", "SemanticSegmentor")
    checkpoint_key_prefixes = (
        "backbone.", "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor.transformer.",
        "sem_seg_head.predictor.query_embed.", "sem_seg_head.predictor.input_proj.",
        "sem_seg_head.predictor.class_embed.", "sem_seg_head.predictor.mask_embed.",
    )
    add_config = staticmethod(add_mask_former_config)

    @classmethod
    def matches(cls, tree):
        arch = yaml_value(tree, "MODEL.META_ARCHITECTURE")
        if arch == "SemanticSegmentor":
            return yaml_value(tree, "MODEL.SEM_SEG_HEAD.NAME") in _PER_PIXEL_HEADS
        return arch == "MaskFormer" and yaml_value(tree, _MASKED_DECODER_KEY) in (None, "StandardTransformerDecoder")
