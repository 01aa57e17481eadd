"""tools/analysis/bf16_accuracy.py: the per-image agreement and metric-difference helpers, and one
run on the tiny shapes split (3 images, seeded random weights; bf16 emulated where the CPU lacks it)."""
import json
import os

import pytest
import torch

from tests.helpers.paths import REPO
from tools.analysis.bf16_accuracy import label_map_agreement, main, metric_differences


def test_label_map_agreement():
    ref = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    assert label_map_agreement(ref, ref) == {"miou": 1.0, "pixel_agreement": 1.0}
    other = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 2]])
    # class 0: 4/5, class 1: 2/4, class 2: 0/1 -> mean over the three labels either map has
    got = label_map_agreement(ref, other)
    assert got["miou"] == pytest.approx((4 / 5 + 2 / 4 + 0) / 3)
    assert got["pixel_agreement"] == pytest.approx(6 / 8)


def test_metric_differences():
    fp32 = {"panoptic_seg": {"PQ": 40.0, "SQ": 70.0}, "sem_seg": {"mIoU": 50.0}}
    bf16 = {"panoptic_seg": {"PQ": 40.25, "SQ": 70.0}, "sem_seg": {"mIoU": 49.5}}
    d = metric_differences(fp32, bf16)
    assert d["panoptic_seg/PQ"] == {"fp32": 40.0, "bf16": 40.25, "bf16_minus_fp32": 0.25}
    assert d["sem_seg/mIoU"]["bf16_minus_fp32"] == -0.5


def test_bf16_accuracy_tool_runs(shapes_root, tmp_path):
    from detectron2.modeling import build_model

    from segmentation_core.config import load_config

    config = os.path.join(str(REPO), "configs", "shapes", "mask2former_R18_panoptic.yaml")
    data = ["DATASETS.TRAIN", "('testshapes_panoptic_train',)", "DATASETS.TEST", "('testshapes_panoptic_val',)",
            "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]  # small: emulated bf16 is slow
    torch.manual_seed(0)
    weights = str(tmp_path / "random.pth")
    torch.save({"model": build_model(load_config(config, data)).state_dict()}, weights)
    out = tmp_path / "eval"
    summary = main(["--config-file", config, "--weights", weights, "--output", str(out), "--allow-emulated",
                    "--opts", *data])
    d = summary["datasets"]["testshapes_panoptic_val"]
    assert d["images"] == 3 and len(d["per_image"]) == 3
    for key in ("panoptic_seg/PQ", "sem_seg/mIoU"):
        m = d["metrics"][key]
        assert m["bf16_minus_fp32"] == pytest.approx(m["bf16"] - m["fp32"])
    s = d["per_image_semantic_iou_bf16_vs_fp32"]
    assert 0 <= s["min"] <= s["mean"] <= 1 and 0 <= s["pixel_agreement_min"] <= 1
    assert json.loads((out / "summary.json").read_text())["datasets"]["testshapes_panoptic_val"]["images"] == 3
