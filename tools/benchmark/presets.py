"""Named benchmark cases: a model config (an official config of the repository's ``configs/``
mirrors, read by ``segmentation_core.config.build_cfg``, plus overrides) and the peer implementation
it is compared with, if any."""
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

__all__ = ["Preset", "PRESETS", "get_preset"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Official maskformer2_swin_tiny_bs16_160k.yaml (ADE20K semantic) = the R50 ADE20K semantic
# config with this backbone.
_SWIN_T = [
    "MODEL.BACKBONE.NAME", "D2SwinTransformer",
    "MODEL.SWIN.EMBED_DIM", 96,
    "MODEL.SWIN.DEPTHS", [2, 2, 6, 2],
    "MODEL.SWIN.NUM_HEADS", [3, 6, 12, 24],
    "MODEL.SWIN.WINDOW_SIZE", 7,
    "MODEL.SWIN.APE", False,
    "MODEL.SWIN.DROP_PATH_RATE", 0.3,
    "MODEL.SWIN.PATCH_NORM", True,
    "MODEL.SWIN.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.BACKBONE.FREEZE_AT", 0,
]

# A small Swin Mask2Former of the official architecture (the shape of the reference head
# fixtures: hidden 64, 4 heads, 3 decoder layers, 16 queries, 10 classes) for smoke tests and
# the converter's numerical check.
TINY_M2F_SWIN = [
    "MODEL.SWIN.EMBED_DIM", 32,
    "MODEL.SWIN.DEPTHS", [2, 2, 2, 2],
    "MODEL.SWIN.NUM_HEADS", [1, 2, 4, 8],
    "MODEL.SWIN.DROP_PATH_RATE", 0.0,
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 10,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 64,
    "MODEL.SEM_SEG_HEAD.MASK_DIM", 64,
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 2,
    "MODEL.MASK_FORMER.HIDDEN_DIM", 64,
    "MODEL.MASK_FORMER.NHEADS", 4,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 128,
    "MODEL.MASK_FORMER.DEC_LAYERS", 4,
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 16,
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 1024,
    "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", False,
    "MODEL.MASK_FORMER.TEST.INSTANCE_ON", False,
    "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", True,
]


def _repo_config(rel: str) -> str:
    """A config of the repository's configs/ folder (owned by the model packages)."""
    return os.path.join(REPO_ROOT, "configs", rel)


# the official configs the Mask2Former / MaskFormer presets start from (our byte-for-byte mirrors)
_M2F_COCO_PANOPTIC_SWIN_T = _repo_config("mask2former/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml")
_M2F_COCO_PANOPTIC_R50 = _repo_config("mask2former/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml")
_M2F_ADE20K_SEMANTIC_R50 = _repo_config("mask2former/ade20k/semantic-segmentation/maskformer2_R50_bs16_160k.yaml")
_MF_ADE20K_SEMANTIC_R50 = _repo_config("maskformer/ade20k-150/maskformer_R50_bs16_160k.yaml")

# ReSTR without the official GloVe files: the shapes vocabulary, random word vectors (the
# language encoder's cost does not depend on the vector values).
_RESTR_VOCAB = [
    "MODEL.RESTR.LANGUAGE.VOCAB_FILE", os.path.join(REPO_ROOT, "configs", "restr", "shapes_vocabulary.txt"),
    "MODEL.RESTR.LANGUAGE.EMBEDDING_FILE", "",
]


@dataclass(frozen=True)
class Preset:
    """One benchmark subject.

    family: "maskformer" (detectron2 MaskFormer meta-arch), "segmenter", "restr" or "data".
    base_config: path of a config file, or None.
    options: detectron2 `merge_from_list` overrides applied after base_config.
    peer: "hf_mask2former" when a Hugging Face model with identical (converted) weights exists.
    size: default input (H, W).
    """

    name: str
    family: str
    description: str
    base_config: Optional[str] = None
    options: List = field(default_factory=list)
    peer: Optional[str] = None
    size: Tuple[int, int] = (512, 512)


_PRESET_LIST = [
    Preset("m2f_swin_t_panoptic", "maskformer",
           "Mask2Former Swin-T, COCO panoptic (133 classes, 100 queries, 9 decoder layers)",
           _M2F_COCO_PANOPTIC_SWIN_T, peer="hf_mask2former"),
    Preset("m2f_swin_t_semantic", "maskformer",
           "Mask2Former Swin-T, ADE20K semantic (150 classes, 100 queries)",
           _M2F_ADE20K_SEMANTIC_R50, _SWIN_T, peer="hf_mask2former"),
    Preset("m2f_r50_panoptic", "maskformer", "Mask2Former R50, COCO panoptic",
           _M2F_COCO_PANOPTIC_R50),
    Preset("m2f_r50_semantic", "maskformer", "Mask2Former R50, ADE20K semantic",
           _M2F_ADE20K_SEMANTIC_R50),
    Preset("mf_r50_semantic", "maskformer", "MaskFormer R50, ADE20K-150 semantic", _MF_ADE20K_SEMANTIC_R50),
    Preset("tiny_m2f_swin", "maskformer",
           "tiny Mask2Former Swin (embed 32, hidden 64, 3 decoder layers): smoke tests only",
           _M2F_COCO_PANOPTIC_SWIN_T, TINY_M2F_SWIN, peer="hf_mask2former", size=(64, 64)),
    Preset("segmenter_vit_b_mask", "segmenter",
           "Segmenter ViT-B/16 + mask transformer (2 layers), ADE20K 150 classes",
           _repo_config("segmenter/ade20k/seg_base_mask_16_512.yaml"), [], size=(512, 512)),
    Preset("segmenter_vit_s_linear", "segmenter",
           "Segmenter ViT-S/16 + linear decoder, ADE20K 150 classes",
           _repo_config("segmenter/ade20k/seg_small_linear_16_512.yaml"), [], size=(512, 512)),
    Preset("restr_p16", "restr", "ReSTR ViT-B/16 at 480x480 (official model; 900 visual tokens)",
           _repo_config("restr/Base-ReSTR.yaml"), _RESTR_VOCAB + ["MODEL.VIT.PATCH_SIZE", 16],
           size=(480, 480)),
    Preset("restr_p8", "restr", "ReSTR ViT-B/8 at 480x480 (3600 visual tokens)",
           _repo_config("restr/Base-ReSTR.yaml"),
           _RESTR_VOCAB + ["MODEL.VIT.PATCH_SIZE", 8, "MODEL.RESTR.DECODER.NUM_UPSAMPLE", 3],
           size=(480, 480)),
    Preset("data_shapes_semantic", "data",
           "MaskFormer semantic mapper on shapes_sem_seg_train (images/s)", None, [], size=(0, 0)),
    Preset("data_shapes_panoptic", "data",
           "MaskFormer panoptic mapper on shapes_panoptic_train (images/s)", None, [], size=(0, 0)),
]

PRESETS = {p.name: p for p in _PRESET_LIST}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
