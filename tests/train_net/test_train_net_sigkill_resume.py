"""A real `train_net.py` run (Segmenter on the shapes data, random crops and flips), killed with
SIGKILL after its first checkpoint and continued with `--resume`, ends with weights bit-identical
to an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import torch
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
CONFIG = os.path.join(REPO, "configs", "shapes", "segmenter_mask.yaml")
OPTS = ["SOLVER.MAX_ITER", "40", "SOLVER.CHECKPOINT_PERIOD", "5", "SOLVER.IMS_PER_BATCH", "2",
        "DATASETS.TEST", "()", "SEED", "3"]


def _cmd(out, *extra):
    return [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", CONFIG, *extra,
            "OUTPUT_DIR", str(out), *OPTS]


def _env(tmp_path):
    return dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN="8",
                SHAPES_NUM_VAL="2", OMP_NUM_THREADS="1")


def _final(out):
    return torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = _env(tmp_path)
    # the uninterrupted run and the one to be killed side by side (the shapes data is generated
    # once, under ensure_shapes' lock; one OpenMP thread each: the results do not depend on it)
    ref = tmp_path / "uninterrupted"
    reference_run = subprocess.Popen(_cmd(ref), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (out / "model_0000004.pth").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before the kill"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model_final.pth").exists(), "killed too late: the run had finished"

    resumed = subprocess.Popen(_cmd(out, "--resume"), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    _, resumed_log = resumed.communicate(timeout=900)
    _, reference_log = reference_run.communicate(timeout=900)
    assert reference_run.returncode == 0, reference_log[-3000:]
    assert resumed.returncode == 0, resumed_log[-3000:]
    assert "Starting training from iteration 0" not in resumed_log
    a, b = _final(ref), _final(out)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
