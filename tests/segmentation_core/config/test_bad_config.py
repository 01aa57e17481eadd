"""Bad configurations: unknown keys (did-you-mean), wrong value types, NUM_CLASSES vs dataset
metadata, missing / mismatching weights."""
import glob
import os

import numpy as np
import pytest
import torch
from torch import nn

import segmentation_core.data.shapes  # noqa: F401  (registers shapes_* without generating them)
from segmentation_core.checkpoint_policy import load_weights_checked
from segmentation_core.config_checks import (
    CheckpointShapeError, ConfigCheckError, NumClassesMismatchError, UnknownConfigKeyError,
    check_checkpoint_shapes, check_config, check_config_file, check_datasets_registered, check_num_classes,
    check_weights_file, drop_mismatched_keys, merge_from_file_checked,
    merge_from_list_checked,
    suggest_keys,
)
from segmentation_core.validation import add_validation_config
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)


@pytest.fixture(scope="module")
def base_cfg():
    from train_net import build_cfg

    cfg = build_cfg()
    add_validation_config(cfg)
    return cfg


@pytest.fixture
def cfg(base_cfg):
    return base_cfg.clone()


def _yaml(tmp_path, text, name="x.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- unknown keys ------------------------------------------------------------------------------
def test_unknown_yaml_keys_are_all_listed_with_suggestions_and_nothing_is_merged(cfg, tmp_path):
    path = _yaml(tmp_path, """
MODEL:
  MASK_FORMER:
    NUM_OBJECT_QUERY: 50
    DEC_LAYERS: 7
  SEM_SEG_HEAD:
    NUM_CLASS: 3
SOLVER:
  BASE_LR: 0.5
  BASELR: 0.1
INPUTS:
  FORMAT: RGB
""")
    before = cfg.dump()
    with pytest.raises(UnknownConfigKeyError) as err:
        merge_from_file_checked(cfg, path)
    msg = str(err.value)
    assert "4 problem(s)" in msg
    assert "unknown key MODEL.MASK_FORMER.NUM_OBJECT_QUERY - did you mean MODEL.MASK_FORMER.NUM_OBJECT_QUERIES" in msg
    assert "unknown key MODEL.SEM_SEG_HEAD.NUM_CLASS - did you mean MODEL.SEM_SEG_HEAD.NUM_CLASSES" in msg
    assert "unknown key SOLVER.BASELR - did you mean SOLVER.BASE_LR" in msg
    assert "unknown key INPUTS - did you mean INPUT?" in msg  # a misspelt group: groups suggested
    assert path in msg
    assert isinstance(err.value, KeyError)  # like yacs' "Non-existent config key"
    assert cfg.dump() == before  # nothing merged


def test_suggestions():
    keys = ["MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "SOLVER.BASE_LR", "INPUT.FORMAT"]
    assert suggest_keys("solver.base_lr", keys) == ["SOLVER.BASE_LR"]
    assert set(suggest_keys("MODEL.NUM_CLASSES", keys)) == set(keys[:2])
    assert suggest_keys("SOLVER.BASE_LRR", keys) == ["SOLVER.BASE_LR"]
    assert suggest_keys("TOTALLY.UNRELATED", keys) == []


def test_unknown_command_line_keys(cfg):
    with pytest.raises(UnknownConfigKeyError, match="MODEL.MASK_FORMER.NUM_OBJECT_QUERIES") as err:
        merge_from_list_checked(cfg, ["MODEL.MASKFORMER.NUM_OBJECT_QUERIES", "50", "SOLVER.MAX_ITERS", "9"])
    assert "unknown key SOLVER.MAX_ITERS - did you mean SOLVER.MAX_ITER?" in str(err.value)
    assert "2 problem(s) in the command-line overrides" in str(err.value)
    with pytest.raises(ConfigCheckError, match="MODEL.WEIGHTS is a value, not a group"):
        merge_from_list_checked(cfg, ["MODEL.WEIGHTS.PATH", "x"])
    with pytest.raises(ConfigCheckError, match="last key 'SOLVER.BASE_LR' has no value"):
        merge_from_list_checked(cfg, ["SOLVER.MAX_ITER", "9", "SOLVER.BASE_LR"])
    merge_from_list_checked(cfg, ["SOLVER.MAX_ITER", "9", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "50"])
    assert cfg.SOLVER.MAX_ITER == 9 and cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES == 50
    merge_from_list_checked(cfg, [])  # nothing to do


def test_new_allowed_groups_and_renamed_keys(cfg, tmp_path):
    cfg.MODEL.OPEN = type(cfg)(new_allowed=True)
    merge_from_file_checked(cfg, _yaml(tmp_path, "MODEL:\n  OPEN:\n    ANYTHING: 1\n"))
    assert cfg.MODEL.OPEN.ANYTHING == 1
    # yacs' merge_from_list never adds keys, even to such a group: reported before it fails
    with pytest.raises(UnknownConfigKeyError, match="unknown key MODEL.OPEN.OTHER"):
        merge_from_list_checked(cfg, ["MODEL.OPEN.OTHER", "1"])
    cfg.register_renamed_key("SOLVER.OLD_LR", "SOLVER.BASE_LR", "renamed in v2")
    with pytest.raises(UnknownConfigKeyError, match="SOLVER.OLD_LR was renamed to SOLVER.BASE_LR"):
        merge_from_file_checked(cfg, _yaml(tmp_path, "SOLVER:\n  OLD_LR: 0.1\n"))
    cfg.register_deprecated_key("SOLVER.GONE")
    merge_from_list_checked(cfg, ["SOLVER.GONE", "1"])  # ignored with a warning, like yacs


# -- value types -------------------------------------------------------------------------------
def test_wrong_value_types_name_key_expected_and_given(cfg, tmp_path):
    path = _yaml(tmp_path, """
SOLVER:
  BASE_LR: 1
  MAX_ITER: 10k
  STEPS: 5
MODEL:
  WEIGHTS: 3
  MASK_FORMER: 7
INPUT:
  FORMAT:
    A: 1
""")
    with pytest.raises(ConfigCheckError) as err:
        merge_from_file_checked(cfg, path)
    msg = str(err.value)
    assert not isinstance(err.value, KeyError)
    assert "6 problem(s)" in msg
    assert "SOLVER.BASE_LR expects float (default 0.001), got int 1; write 1.0" in msg
    assert "SOLVER.MAX_ITER expects int (default 40000), got str '10k'" in msg
    assert "SOLVER.STEPS expects tuple (default (30000,)), got int 5; write a list, e.g. [5]" in msg
    assert "MODEL.WEIGHTS expects str (default ''), got int 3; quote it" in msg
    assert "MODEL.MASK_FORMER is a group of keys, not a value; got int 7" in msg
    assert "INPUT.FORMAT expects str (default 'BGR'), got a group of keys {'A': 1}; INPUT.FORMAT takes a single value" in msg
    # accepted conversions of yacs: list <-> tuple, None
    merge_from_list_checked(cfg, ["SOLVER.STEPS", "[10, 20]", "INPUT.MIN_SIZE_TRAIN", "(256,)"])
    assert tuple(cfg.SOLVER.STEPS) == (10, 20)
    with pytest.raises(ConfigCheckError, match="SOLVER.IMS_PER_BATCH expects int .* got float 2.5"):
        merge_from_list_checked(cfg, ["SOLVER.IMS_PER_BATCH", "2.5"])


def test_missing_invalid_and_base_files(cfg, tmp_path):
    real = _yaml(tmp_path, "SOLVER:\n  BASE_LR: 0.5\n", "maskformer_R50.yaml")
    with pytest.raises(FileNotFoundError, match=r"maskformer_R5.yaml does not exist; did you mean .*maskformer_R50.yaml"):
        merge_from_file_checked(cfg, str(tmp_path / "maskformer_R5.yaml"))
    with pytest.raises(ConfigCheckError, match="not valid YAML"):
        merge_from_file_checked(cfg, _yaml(tmp_path, "SOLVER: [1, 2\n", "broken.yaml"))
    with pytest.raises(FileNotFoundError, match="_BASE_"):
        merge_from_file_checked(cfg, _yaml(tmp_path, "_BASE_: missing_base.yaml\n", "child.yaml"))
    with pytest.raises(ConfigCheckError, match="must contain a mapping"):
        merge_from_file_checked(cfg, _yaml(tmp_path, "- 1\n- 2\n", "list.yaml"))
    # a bad key inherited from a _BASE_ file is found too
    _yaml(tmp_path, "SOLVER:\n  BASE_LRR: 0.5\n", "bad_base.yaml")
    with pytest.raises(UnknownConfigKeyError, match="SOLVER.BASE_LRR - did you mean SOLVER.BASE_LR"):
        merge_from_file_checked(cfg, _yaml(tmp_path, "_BASE_: bad_base.yaml\n", "child2.yaml"))
    before = cfg.dump()
    merge_from_file_checked(cfg, _yaml(tmp_path, "# nothing\n", "empty.yaml"))  # fvcore alone: TypeError
    assert cfg.dump() == before
    merge_from_file_checked(cfg, real)
    assert cfg.SOLVER.BASE_LR == 0.5


def test_every_shipped_config_merges_through_the_checks(base_cfg):
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
    assert len(paths) > 50
    failures = []
    for path in paths:
        try:
            check_config_file(base_cfg, path)  # checks only: base_cfg is not modified
        except Exception as e:  # collect all, report together
            failures.append(f"{os.path.relpath(path, REPO)}: {e}")
    assert not failures, "\n".join(failures)


# -- datasets and NUM_CLASSES ------------------------------------------------------------------
def test_num_classes_must_match_the_dataset_metadata(cfg):
    cfg.MODEL.META_ARCHITECTURE = "MaskFormer"
    cfg.DATASETS.TRAIN = ("shapes_sem_seg_train",)
    cfg.DATASETS.TEST = ("shapes_panoptic_val",)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 8  # 4 things + 4 stuff
    check_num_classes(cfg)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 150
    with pytest.raises(NumClassesMismatchError) as err:
        check_num_classes(cfg)
    msg = str(err.value)
    assert "MODEL.SEM_SEG_HEAD.NUM_CLASSES=150 but dataset 'shapes_sem_seg_train' has 8 classes (metadata stuff_classes" in msg
    assert "'shapes_panoptic_val' has 8 classes" in msg and "drop" in msg
    # instance datasets count thing classes
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("shapes_instance_train",), ()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 4
    check_num_classes(cfg)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 8
    with pytest.raises(NumClassesMismatchError, match="has 4 classes \\(metadata thing_classes"):
        check_num_classes(cfg)
    # detectron2's own models use their own key
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 80
    with pytest.raises(NumClassesMismatchError, match="MODEL.ROI_HEADS.NUM_CLASSES=80"):
        check_num_classes(cfg)
    # referring models / datasets have no class count to check
    cfg.MODEL.META_ARCHITECTURE = "ReSTR"
    check_num_classes(cfg)
    cfg.MODEL.META_ARCHITECTURE = "MaskFormer"
    cfg.DATASETS.TRAIN = ("shapes_refcoco_unc_train",)
    check_num_classes(cfg)


def test_unregistered_datasets_get_suggestions(cfg):
    with pytest.raises(ConfigCheckError, match="'shapes_semseg_train' is not registered - did you mean shapes_sem_seg_train"):
        check_datasets_registered(["shapes_semseg_train"])
    cfg.DATASETS.TRAIN = ("shapes_semseg_train",)
    with pytest.raises(ConfigCheckError, match="not registered"):
        check_config(cfg)


# -- weights -----------------------------------------------------------------------------------
def test_missing_weights_file(tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"MODEL.WEIGHTS: weights file .*model_finl.pth does not exist; "
                                                r"did you mean .*model_final.pth\?.*'' to train from scratch"):
        check_weights_file(str(tmp_path / "model_finl.pth"))
    with pytest.raises(FileNotFoundError, match="nor its folder"):
        check_weights_file(str(tmp_path / "nodir" / "m.pth"))
    check_weights_file(str(tmp_path / "model_final.pth"))
    check_weights_file("")
    check_weights_file("detectron2://ImageNetPretrained/torchvision/R-50.pkl")


class _Net(nn.Module):
    def __init__(self, num_classes=8, width=16):
        super().__init__()
        self.backbone = nn.Linear(4, width)
        self.class_embed = nn.Linear(width, num_classes + 1)


def test_checkpoint_shape_mismatches_are_listed_with_the_fix():
    model = _Net(num_classes=8)
    ckpt = _Net(num_classes=150).state_dict()
    with pytest.raises(CheckpointShapeError) as err:
        check_checkpoint_shapes(model, ckpt, name="ade20k.pth")
    msg = str(err.value)
    assert msg.startswith("ade20k.pth: 2 tensor(s) do not fit the model:")
    assert "class_embed.weight: checkpoint (151, 16), model (9, 16)" in msg
    assert "class_embed.bias: checkpoint (151,), model (9,)" in msg
    assert "drop_mismatched_keys" in msg
    # detectron2 checkpoint layout, a DDP "module." prefix, numpy arrays, a DDP-wrapped model
    wrapped = {"model": {"module." + k: v.numpy() for k, v in ckpt.items()}, "iteration": 5}
    ddp_like = type("DDP", (), {"module": model})()
    found = check_checkpoint_shapes(ddp_like, wrapped, raise_error=False)
    assert [m.key for m in found] == ["class_embed.weight", "class_embed.bias"]
    assert found[0].checkpoint_shape == (151, 16) and found[0].model_shape == (9, 16)
    # dropping them lets the rest load; the classifier keeps its fresh initialisation
    fresh = model.class_embed.weight.detach().clone()
    kept = drop_mismatched_keys(model, ckpt)
    assert set(kept) == {"backbone.weight", "backbone.bias"}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    assert set(missing) == {"class_embed.weight", "class_embed.bias"} and not unexpected
    assert torch.equal(model.backbone.weight, ckpt["backbone.weight"])
    assert torch.equal(model.class_embed.weight, fresh)
    assert check_checkpoint_shapes(model, _Net(8).state_dict()) == []
    assert check_checkpoint_shapes(model.state_dict(), {"backbone.weight": np.zeros((16, 4))}) == []


def test_load_weights_checked_refuses_silent_shape_mismatches(tmp_path):
    path = tmp_path / "model_150.pth"
    torch.save({"model": _Net(num_classes=150).state_dict()}, path)
    model = _Net(num_classes=8)
    with pytest.raises(CheckpointShapeError, match=r"class_embed.weight: checkpoint \(151, 16\), model \(9, 16\)"):
        load_weights_checked(model, str(path))
    model = _Net(num_classes=8)
    fresh = model.class_embed.weight.detach().clone()
    incompatible = load_weights_checked(model, str(path), allow_shape_mismatch=True)
    assert [k for k, _, _ in incompatible.incorrect_shapes] == ["class_embed.weight", "class_embed.bias"]
    assert torch.equal(model.class_embed.weight, fresh)
    assert torch.equal(model.backbone.weight, torch.load(path, weights_only=True)["model"]["backbone.weight"])
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        load_weights_checked(model, str(tmp_path / "missing.pth"))


def test_check_config_catches_bad_choices(cfg):
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (), ()
    cfg.MODEL.WEIGHTS = ""
    check_config(cfg)
    cfg.DATALOADER.BAD_RECORD_POLICY = "ignore"
    with pytest.raises(ConfigCheckError, match=r"DATALOADER.BAD_RECORD_POLICY='ignore'; expected one of \('fatal', 'skip'\)"):
        check_config(cfg)
    cfg.DATALOADER.BAD_RECORD_POLICY = "skip"
    cfg.INPUT.MAX_IMAGE_PIXELS = -1
    with pytest.raises(ConfigCheckError, match="MAX_IMAGE_PIXELS"):
        check_config(cfg)
    cfg.INPUT.MAX_IMAGE_PIXELS = 0
    cfg.MODEL.WEIGHTS = "/no/such/model.pth"
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        check_config(cfg)
    check_config(cfg, check_weights=False)  # --resume: the last checkpoint takes precedence
