"""train_net.py end to end on a tiny ADE20K-layout fixture: 1 process in-process, then
2 CPU processes (gloo) through the launcher, including evaluator gathering, and --eval-only."""
import json
import os
import subprocess
import sys

import numpy as np

from tests.helpers.dataset_files import save_jpg, save_png
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
CONFIG = os.path.join(REPO, "configs", "shapes", "semantic_fpn_R18_tiny.yaml")


def _ade_fixture(root, n_train=4, n_val=2, size=64):
    base = os.path.join(root, "ADEChallengeData2016")
    for split, n in (("training", n_train), ("validation", n_val)):
        for i in range(n):
            save_jpg(os.path.join(base, "images", split, f"ADE_{split}_{i}.jpg"), size, size, seed=i)
            lab = np.zeros((size, size), np.uint8)
            lab[:, size // 2:] = 1
            lab[: size // 4] = 255
            save_png(os.path.join(base, "annotations_detectron2", split, f"ADE_{split}_{i}.png"), lab)


def _opts(out_dir):
    return [
        "DATASETS.TRAIN", "('ade20k_sem_seg_train',)", "DATASETS.TEST", "('ade20k_sem_seg_val',)",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "150", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.CHECKPOINT_PERIOD", "1000", "OUTPUT_DIR", out_dir,
    ]


def _run(args, root, timeout=240):
    env = dict(os.environ, DETECTRON2_DATASETS=root, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    p = subprocess.run([sys.executable, os.path.join(REPO, "train_net.py")] + args, cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return p.stdout + p.stderr


def test_train_two_processes_then_eval_only(tmp_path):
    root = str(tmp_path / "data")
    _ade_fixture(root)
    out = str(tmp_path / "out")
    log = _run(["--config-file", CONFIG, "--num-gpus", "2"] + _opts(out), root)
    assert "world size 2" in log
    assert "Dataset mapper 'mask_former_semantic'" in log
    assert "FullModelClippedAdamW" in log and "backbone x0.1" in log
    # the evaluation after training gathered the 2 validation images from both ranks
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    final = [m for m in metrics if "sem_seg/mIoU" in m]
    assert final, metrics
    assert 0.0 <= final[-1]["sem_seg/mIoU"] <= 100.0
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "log.txt")) as f:
        full_log = f.read()
    assert "Start inference on 1 batches" in full_log  # 2 val images split over 2 ranks

    log = _run(["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
                "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)", "TEST.AUG.MAX_SIZE", "128"] + _opts(out), root)
    assert "Semantic TTA: sizes [48, 64]" in log
    assert "Running inference with semantic test-time augmentation" in log, log[-3000:]
