"""Full-size models built from official configs have the official state-dict layout.

For every ``tests/fixtures/keys/<name>.yaml`` (flat official config), ``build_model`` must
give exactly the keys, key order and shapes of ``<name>.json`` (recorded from the official
code), which is what loading official checkpoints with ``strict=True`` needs.
"""
import json

import pytest
import torch
from detectron2.modeling import build_model

from segmentation_core.config import build_cfg
from tests.helpers.paths import FIXTURES

KEYS_DIR = FIXTURES / "keys"
# The six models of the reference README §11 (folder shared with the head tests).
NAMES = [
    "m2f_ade20k_semantic_R50",
    "m2f_coco_instance_R50",
    "m2f_coco_panoptic_R50",
    "m2f_coco_panoptic_swin_tiny",
    "mf_ade20k150_R50",
    "mf_coco_panoptic_R50",
]


def _cfg(name):
    # the flat official dump as it is: its family (MaskFormer or Mask2Former) comes from the file
    return build_cfg(str(KEYS_DIR / f"{name}.yaml"), ["MODEL.DEVICE", "cpu"])


def test_all_configs_present():
    for name in NAMES:
        assert (KEYS_DIR / f"{name}.yaml").is_file() and (KEYS_DIR / f"{name}.json").is_file(), name


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_order_shapes(name):
    cfg = _cfg(name)
    model = build_model(cfg)
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    ref = list(json.loads((KEYS_DIR / f"{name}.json").read_text()).items())
    assert [k for k, _ in got] == [k for k, _ in ref]  # same keys, same order
    assert got == ref  # and shapes

    # Family-specific training set-up follows the official from_config.
    criterion = model.criterion
    mf = cfg.MODEL.MASK_FORMER
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    expected_weight = torch.ones(num_classes + 1)
    expected_weight[-1] = mf.NO_OBJECT_WEIGHT
    assert torch.equal(criterion.empty_weight, expected_weight)
    aux = [f"_{i}" for i in range(mf.DEC_LAYERS - 1)]
    assert sorted(criterion.weight_dict) == sorted(f"loss_{n}{s}" for n in ("ce", "mask", "dice") for s in [""] + aux)
    if name.startswith("mf_"):
        assert (criterion.num_points, criterion.mask_loss_type, criterion.matcher.cost_class) == (None, "focal", 1)  # full resolution
        assert criterion.weight_dict["loss_ce"] == 1 and not model.panoptic_requires_mask_prob
    else:
        assert criterion.num_points == criterion.matcher.num_points == 12544
        assert criterion.mask_loss_type == "sigmoid_ce" and criterion.matcher.cost_class == mf.CLASS_WEIGHT == 2.0
        assert model.panoptic_requires_mask_prob
    assert model.size_divisibility == (mf.SIZE_DIVISIBILITY if mf.SIZE_DIVISIBILITY >= 0 else 0)
    test = mf.TEST
    assert (model.semantic_on, model.panoptic_on, model.instance_on) == (
        test.SEMANTIC_ON, test.PANOPTIC_ON, test.INSTANCE_ON
    )
    assert model.sem_seg_postprocess_before_inference == bool(
        test.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE or test.PANOPTIC_ON or test.INSTANCE_ON
    )
