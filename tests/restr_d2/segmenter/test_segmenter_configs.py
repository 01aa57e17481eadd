"""The Segmenter YAMLs merge into the full config and build; the shapes config trains."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config

import maskformer_d2
import restr_d2
from restr_d2.modeling.segmenter import Segmenter
from tests.helpers.paths import REPO as REPOSITORY

ROOT = REPOSITORY
ZOO = sorted((ROOT / "configs" / "segmenter").glob("*/seg_*.yaml"))
# the from-scratch shapes configs; the DINOv2 ones (pretrained ViT-S/14) are trained by
# tests/train_net/test_dinov2_shapes_training.py
SHAPES = sorted(p for p in (ROOT / "configs" / "shapes").glob("segmenter_*.yaml") if "dinov2" not in p.name)


def _cfg(path):
    cfg = get_cfg()
    add_deeplab_config(cfg)
    maskformer_d2.add_maskformer2_config(cfg)
    restr_d2.add_segmenter_config(cfg)
    restr_d2.add_restr_config(cfg)
    restr_d2.add_segmenter_config(cfg)  # idempotent
    cfg.merge_from_file(str(path))
    return cfg


def test_config_inventory():
    names = {p.relative_to(ROOT / "configs" / "segmenter").as_posix() for p in ZOO}
    for size in ("tiny", "small", "base", "large"):
        for dec in ("mask", "linear"):
            assert f"ade20k/seg_{size}_{dec}_16_512.yaml" in names
    assert "ade20k/seg_large_mask_16_640.yaml" in names
    assert any(n.startswith("pascal_context/") for n in names)
    assert any(n.startswith("cityscapes/") for n in names)
    assert len(SHAPES) == 2
    assert (ROOT / "configs" / "shapes" / "segmenter_dinov2_s14_mask.yaml").exists()


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem + "@" + p.parent.name)
def test_zoo_config_builds(path):
    cfg = _cfg(path)
    assert cfg.SOLVER.OPTIMIZER == "SGD" and cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR"
    assert cfg.MODEL.VIT.IMAGE_SIZE[0] == cfg.INPUT.CROP.SIZE[0]
    with torch.device("meta"):
        model = Segmenter(cfg)
    grid = cfg.MODEL.VIT.IMAGE_SIZE[0] // cfg.MODEL.VIT.PATCH_SIZE
    assert model.encoder.pos_embed.shape[1] == grid * grid + (2 if cfg.MODEL.VIT.DISTILLED else 1)
    assert model.num_classes == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES


@pytest.mark.parametrize("path", SHAPES, ids=lambda p: p.stem)
def test_shapes_config_trains_and_infers(path):
    cfg = _cfg(path)
    assert cfg.DATASETS.TRAIN == ("shapes_sem_seg_train",)
    torch.manual_seed(0)
    model = Segmenter(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 128, 128), generator=g, dtype=torch.uint8)
    label = torch.zeros(128, 128, dtype=torch.long)
    label[:, 64:] = 3
    image[:, :, 64:] = 200  # a learnable cue
    batch = [{"image": image, "sem_seg": label}]
    model.train()
    losses = []
    for _ in range(4):
        loss = model(batch)["loss_sem_seg"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():  # 150x170: padded windows, output at the requested size
        out = model([{"image": torch.randint(0, 256, (3, 150, 170), dtype=torch.uint8), "height": 75, "width": 85}])
    probs = out[0]["sem_seg"]
    assert probs.shape == (8, 75, 85)
    assert torch.allclose(probs.sum(0), torch.ones(75, 85), atol=1e-5)


def test_mask_head_heads_follow_the_official_rule_unless_given():
    import pytest

    from restr_d2.modeling.segmenter.mask_transformer_head import SegmenterMaskTransformerHead

    kw = dict(in_feature="vit", in_channels=128, num_classes=3, embed_dim=128, num_layers=1)
    assert SegmenterMaskTransformerHead(**kw).num_heads == 2  # None: embed_dim // 64
    assert SegmenterMaskTransformerHead(num_heads=4, **kw).num_heads == 4
    with pytest.raises(ValueError, match="None / null .* embed_dim // 64"):
        SegmenterMaskTransformerHead(num_heads=0, **kw)  # 0 used to mean the rule: now explicit
