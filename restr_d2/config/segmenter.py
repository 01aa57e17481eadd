"""Config keys of the plain ViT backbone (shared with ReSTR) and of Segmenter.

Both functions are idempotent: calling them again leaves existing values untouched.
"""
from detectron2.config import CfgNode as CN
from segmentation_core.acceleration import add_acceleration_config
from segmentation_core.config_defaults import set_default

__all__ = ["add_vit_config", "add_segmenter_config"]


def add_vit_config(cfg: CN) -> None:
    """``MODEL.VIT.*``: the Segmenter/ReSTR plain ViT (``D2PlainViT``). Defaults: ViT-B/16."""
    set_default(cfg.MODEL, "VIT", CN())
    vit = cfg.MODEL.VIT
    # training size (H, W): defines the position-embedding grid (official ``image_size``)
    set_default(vit, "IMAGE_SIZE", [512, 512])
    set_default(vit, "PATCH_SIZE", 16)
    set_default(vit, "EMBED_DIM", 768)
    set_default(vit, "DEPTH", 12)
    set_default(vit, "NUM_HEADS", 12)
    set_default(vit, "MLP_RATIO", 4.0)
    # the official encoder always carries a 1000-way ImageNet head (unused); 0 drops it
    set_default(vit, "NUM_CLASSES", 1000)
    set_default(vit, "DROPOUT", 0.0)
    set_default(vit, "DROP_PATH_RATE", 0.1)
    # DeiT distillation token
    set_default(vit, "DISTILLED", False)
    # "sdpa_math": scaled_dot_product_attention on its math kernel, bit-exact with the official
    #     code on CPU (default); "sdpa": PyTorch picks the kernel (flash / memory-efficient, use
    #     it for GPU training; ~1e-5 from the official numbers on CPU); "math": explicit softmax
    set_default(vit, "ATTN_IMPL", "sdpa_math")
    # "bilinear" (Segmenter) or "bicubic" (DINOv2), "bicubic_antialias" (DINOv2 register models,
    # timm >= 0.9); used when the patch grid differs from the stored one
    set_default(vit, "POS_EMBED_INTERP", "bilinear")
    # name of the (B, D, H/P, W/P) feature map returned by the detectron2 backbone
    set_default(vit, "OUT_FEATURE", "vit")
    # --- DINOv2 family (issue 18); the defaults keep the official Segmenter ViT ---
    # > 0: LayerScale modules (blocks.N.ls1/ls2.gamma) initialised to this (DINOv2: 1e-5)
    set_default(vit, "LAYER_SCALE_INIT", 0.0)
    # eps of every LayerNorm of the ViT (official Segmenter 1e-5; DINOv2 1e-6)
    set_default(vit, "NORM_EPS", 1e-5)
    # DINOv2 register tokens (the *_reg4 checkpoints: 4)
    set_default(vit, "NUM_REGISTER_TOKENS", 0)
    # grid (gh, gw) pos_embed is stored on; [] = IMAGE_SIZE / PATCH_SIZE, resized only when the
    # token count differs (official Segmenter). Given (DINOv2 checkpoints: [37, 37]): resized
    # whenever the input grid differs, with POS_EMBED_INTERP ("bicubic" for DINOv2)
    set_default(vit, "POS_EMBED_GRID", [])
    # True: the ViT is a fixed feature extractor (a pretrained one, linear-probe style): no
    # gradient, no optimizer state, always in eval mode; the heads after it train as usual
    set_default(vit, "FREEZE", False)
    # > 0 (needs FREEZE): keep up to this many MiB of the frozen ViT's per-image features and
    # reuse them when the same input image comes again (ReSTR; restr_d2/modeling/backbone/
    # feature_cache.py); 0: off
    set_default(vit, "FEATURE_CACHE_MB", 0)
    # Mask2Former on a plain ViT (D2ViTSimpleFeaturePyramid): output channels of each level
    set_default(vit, "SFP_OUT_CHANNELS", 256)
    # its levels (strides 4, 8, 16, 32), named as the ResNet stages the pixel decoders expect
    set_default(vit, "SFP_OUT_FEATURES", ["res2", "res3", "res4", "res5"])
    # MODEL.COMPILE / MODEL.CHANNELS_LAST (off; segmentation_core/acceleration.py)
    add_acceleration_config(cfg)


def add_segmenter_config(cfg: CN) -> None:
    """``MODEL.SEGMENTER.*`` (meta-arch ``Segmenter``) plus ``MODEL.VIT.*``.

    The head is chosen with ``MODEL.SEM_SEG_HEAD.NAME`` ("SegmenterMaskTransformerHead" or
    "SegmenterLinearHead"); classes and ignore label come from ``MODEL.SEM_SEG_HEAD.NUM_CLASSES``
    and ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``.
    """
    add_vit_config(cfg)
    set_default(cfg.MODEL, "SEGMENTER", CN())
    seg = cfg.MODEL.SEGMENTER
    set_default(seg, "DECODER", CN())
    dec = seg.DECODER
    # mask transformer; the official config.yml uses 2 layers, dropout 0.1, drop path 0.0
    set_default(dec, "NUM_LAYERS", 2)
    set_default(dec, "DROPOUT", 0.1)
    set_default(dec, "DROP_PATH_RATE", 0.0)
    # attention heads: null (the default) = the official rule embed_dim // 64, or a number
    set_default(dec, "NUM_HEADS", None)
    set_default(seg, "TEST", CN())
    test = seg.TEST
    # "whole": one forward of the (patch-padded) image; "slide": official sliding window
    set_default(test, "MODE", "slide")
    set_default(test, "WINDOW_SIZE", 512)
    set_default(test, "WINDOW_STRIDE", 512)
    set_default(test, "WINDOW_BATCH_SIZE", 4)
    # also run the horizontally flipped image and average the probabilities
    set_default(test, "FLIP", False)
