"""Config keys and the official model-zoo YAML mirrors under configs/mask2former, configs/maskformer."""

import pytest
from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config

from segmentation_core.config import (
    CONFIG_FAMILY_REGISTRY, assemble_config, build_cfg, config_tree, detect_family, registered_families,
)
from maskformer_d2 import add_mask_former_config, add_maskformer2_config
from tests.helpers.paths import REPO as REPOSITORY

REPO = REPOSITORY
KEYS = REPO / "tests" / "fixtures" / "keys"
M2F_YAMLS = sorted((REPO / "configs" / "mask2former").rglob("*.yaml"))
MF_YAMLS = sorted((REPO / "configs" / "maskformer").rglob("*.yaml"))


def _cfg(*adders):
    cfg = get_cfg()
    add_deeplab_config(cfg)
    for add in adders:
        add(cfg)
    return cfg


@pytest.mark.parametrize("path", M2F_YAMLS + MF_YAMLS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_yaml_merges(path):
    cfg = build_cfg(str(path))  # the official file, read safely, with its own family's defaults
    is_base = path.name.startswith("Base-")
    assert is_base or cfg.MODEL.META_ARCHITECTURE in ("MaskFormer", "SemanticSegmentor")
    if cfg.MODEL.META_ARCHITECTURE == "MaskFormer":
        expected = ("MultiScaleMaskedTransformerDecoder" if "mask2former" in path.parts
                    else "StandardTransformerDecoder")
        assert cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == expected
    if not is_base:
        assert isinstance(cfg.MODEL.WEIGHTS, str) and cfg.MODEL.WEIGHTS


@pytest.mark.parametrize("rel", [
    "mask2former/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml",
    "maskformer/ade20k-150/swin/maskformer_swin_tiny_bs16_160k.yaml",
    "maskformer/ade20k-150/per_pixel_baseline_plus_R50_bs16_160k.yaml",
])
def test_both_adders_in_either_order_give_the_same_config(rel):
    # the family adders, registered in either order (build_cfg's assembly), then the file
    path = str(REPO / "configs" / rel)
    family = detect_family(config_tree(path))
    m2f, mf = CONFIG_FAMILY_REGISTRY.get("Mask2FormerConfig"), CONFIG_FAMILY_REGISTRY.get("MaskFormerConfig")
    others = [f for f in registered_families() if f not in (m2f, mf)]
    a = assemble_config(family, [m2f, mf] + others)
    b = assemble_config(family, [mf, m2f] + others[::-1])
    for cfg in (a, b):
        cfg.merge_from_file(path)
    assert a.dump() == b.dump()


# Mirror -> flat official copy (keys/*.yaml: _BASE_ chain resolved by the official harness).
FLAT = {
    "m2f_coco_panoptic_R50": "mask2former/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml",
    "m2f_ade20k_semantic_R50": "mask2former/ade20k/semantic-segmentation/maskformer2_R50_bs16_160k.yaml",
    "m2f_coco_instance_R50": "mask2former/coco/instance-segmentation/maskformer2_R50_bs16_50ep.yaml",
    "m2f_coco_panoptic_swin_tiny": "mask2former/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml",
    "mf_ade20k150_R50": "maskformer/ade20k-150/maskformer_R50_bs16_160k.yaml",
    "mf_coco_panoptic_R50": "maskformer/coco-panoptic/maskformer_panoptic_R50_bs64_554k.yaml",
}


@pytest.mark.parametrize("name", sorted(FLAT))
def test_mirror_equals_official_flat_config(name):
    flat = build_cfg(str(KEYS / f"{name}.yaml"))
    mirror = build_cfg(str(REPO / "configs" / FLAT[name]))
    assert mirror.dump() == flat.dump()


def test_evaluated_min_size_lists():
    cfg = build_cfg(str(REPO / "configs/mask2former/ade20k/panoptic-segmentation/maskformer2_R50_bs16_160k.yaml"))
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [int(x * 0.1 * 640) for x in range(5, 21)]
    cfg = build_cfg(str(REPO / "configs/maskformer/coco-stuff-10k-171/maskformer_R50_bs32_60k.yaml"))
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [int(x * 0.1 * 640) for x in range(5, 16)]


def test_required_keys_and_switches():
    cfg = _cfg(add_maskformer2_config)
    mf, head = cfg.MODEL.MASK_FORMER, cfg.MODEL.SEM_SEG_HEAD
    assert (cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE) == (1024, 0.1, 2.0)
    assert cfg.INPUT.DATASET_MAPPER_NAME == "mask_former_semantic"
    assert cfg.INPUT.COLOR_AUG_SSD is False and cfg.INPUT.SIZE_DIVISIBILITY == -1
    assert cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA == 1.0
    assert (cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BACKBONE_MULTIPLIER, cfg.SOLVER.WEIGHT_DECAY_EMBED) == ("ADAMW", 0.1, 0.0)
    assert cfg.SOLVER.POLY_LR_POWER == 0.9 and cfg.SOLVER.POLY_LR_CONSTANT_ENDING == 0.0
    assert (mf.TEST.SEMANTIC_ON, mf.TEST.INSTANCE_ON, mf.TEST.PANOPTIC_ON) == (True, False, False)
    assert (mf.TRAIN_NUM_POINTS, mf.OVERSAMPLE_RATIO, mf.IMPORTANCE_SAMPLE_RATIO) == (12544, 3.0, 0.75)
    assert head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES == ["res3", "res4", "res5"]
    assert head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS == 4 and head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS == 8
    assert head.MSDEFORMATTN_IMPL == "gather" and mf.POINT_LOSS == "sigmoid_ce"
    assert cfg.MODEL.SWIN.USE_CHECKPOINT is False and cfg.MODEL.SWIN.DEPTHS == [2, 2, 6, 2]
    assert mf.TRANSFORMER_DECODER_NAME == "MultiScaleMaskedTransformerDecoder"
    assert _cfg(add_mask_former_config).MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == "StandardTransformerDecoder"


def test_adders_are_idempotent_and_never_overwrite():
    cfg = _cfg(add_maskformer2_config)
    reference = cfg.dump()
    add_maskformer2_config(cfg)
    assert cfg.dump() == reference
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 7
    cfg.MODEL.SEM_SEG_HEAD.MSDEFORMATTN_IMPL = "pytorch_levelwise"
    add_mask_former_config(cfg)
    add_maskformer2_config(cfg)
    assert cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES == 7
    assert cfg.MODEL.SEM_SEG_HEAD.MSDEFORMATTN_IMPL == "pytorch_levelwise"
    # add_mask_former_config only adds MaskFormer keys missing from Mask2Former's set.
    assert "SEMANTIC_INFERENCE_METHOD" in cfg.MODEL.MASK_FORMER.TEST


def test_point_loss_and_impl_accept_options():
    cfg = _cfg(add_maskformer2_config)
    cfg.merge_from_list(["MODEL.MASK_FORMER.POINT_LOSS", "focal",
                         "MODEL.SEM_SEG_HEAD.MSDEFORMATTN_IMPL", "pytorch_levelwise"])
    assert cfg.MODEL.MASK_FORMER.POINT_LOSS == "focal"
    with pytest.raises(AssertionError, match="Non-existent key"):  # yacs' unknown-key error
        cfg.merge_from_list(["MODEL.MASK_FORMER.NOT_A_KEY", 1])
