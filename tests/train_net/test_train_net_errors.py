"""train_net.py on the command line: a wrong input is one line naming the problem, exit status 1,
no traceback; RESTR_D2_TRACEBACK=1 brings the traceback back."""
import os
import subprocess
import sys

import torch

from tests.helpers.paths import REPO

CONFIG = str(REPO / "configs/shapes/segmenter_mask.yaml")


def _train_net(tmp_path, *args, **env):
    return subprocess.run([sys.executable, str(REPO / "train_net.py"), "--config-file", CONFIG, *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1", DETECTRON2_DATASETS=str(tmp_path), **env))


def test_a_wrong_key_is_one_line_and_exit_status_1(tmp_path):
    p = _train_net(tmp_path, "--eval-only", "MODEL.NOT_A_KEY", "1")
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert "train_net.py: error: UnknownConfigKeyError:" in p.stderr and "unknown key MODEL.NOT_A_KEY" in p.stderr


def test_a_checkpoint_of_another_model_names_the_mismatch_and_the_traceback_on_request(tmp_path):
    weights = str(tmp_path / "other.pth")
    torch.save({"model": {"encoder_v.cls_token": torch.zeros(1, 1, 8)}}, weights)
    p = _train_net(tmp_path, "--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path / "out"))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "train_net.py: error: WeightsMismatchError:" in p.stderr and "other.pth" in p.stderr
    p = _train_net(tmp_path, "--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path / "out"),
                   RESTR_D2_TRACEBACK="1")
    assert p.returncode == 1 and "Traceback" in p.stderr
    lines = p.stderr.splitlines()
    assert any(line.startswith("segmentation_core.checkpoint_policy.WeightsMismatchError: ") for line in lines)
