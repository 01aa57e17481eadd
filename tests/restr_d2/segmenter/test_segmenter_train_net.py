"""Segmenter trains and evaluates on the synthetic shapes data through train_net.py.

fast: 3 iterations then ``--eval-only`` on the checkpoint (metric table present, loss finite).
slow: the full ``configs/shapes/segmenter_mask.yaml`` training (300 iterations; measured
mIoU 44.6, pACC 85.3 on shapes_sem_seg_val, against 3.2-6.9 mIoU for chance predictions) learns.
"""
import json
import math
import os
import subprocess
import sys

import pytest
from tests.helpers.evaluation import saved_sem_seg_evaluation
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
CONFIG = os.path.join(REPO, "configs", "shapes", "segmenter_mask.yaml")


def _train_net(tmp_path, *args, num_train="8", num_val="4"):
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN=num_train,
               SHAPES_NUM_VAL=num_val, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", CONFIG,
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def test_segmenter_shapes_train_then_eval_only(tmp_path):
    out = tmp_path / "train"
    _train_net(tmp_path, "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2",
               "DATASETS.TEST", "()")
    losses = [m["total_loss"] for m in _metrics(out) if "total_loss" in m]
    assert losses and all(math.isfinite(x) for x in losses)
    _train_net(tmp_path, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
               "OUTPUT_DIR", str(tmp_path / "eval"))
    res = saved_sem_seg_evaluation(str(tmp_path / "eval"), "shapes_sem_seg_val")
    assert {"mIoU", "fwIoU", "mACC", "pACC"} <= set(res)
    assert 0.0 <= res["mIoU"] <= 100.0 and 0.0 <= res["pACC"] <= 100.0


@pytest.mark.slow
def test_segmenter_shapes_learns(tmp_path):
    out = tmp_path / "train"
    log = _train_net(tmp_path, "OUTPUT_DIR", str(out), "SEED", "0", num_train="200", num_val="50")
    line = log[log.index("copypaste: mIoU,fwIoU,mACC,pACC"):].splitlines()[1]
    miou = float(line.split("copypaste:")[1].split(",")[0])
    assert miou > 30.0, line
