"""demo/demo.py: a bad input is named with its reason, the other inputs are still visualized,
the failures are listed at the end and the exit status is non-zero; images are read as
training reads them (16-bit); what the confidence filter removed and an empty referring mask
are said in the log and on the picture."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segmentation_core.validation import read_image_checked
from tests.helpers.scripts import load_script
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
M2F = os.path.join(REPO, "configs/shapes/mask2former_R18_panoptic.yaml")
SEGMENTER = os.path.join(REPO, "configs/shapes/segmenter_mask.yaml")
RESTR = os.path.join(REPO, "configs/shapes/restr_shapes.yaml")
M2F_OPTS = ["INPUT.MIN_SIZE_TEST", "64", "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0",
            "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0", "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False"]


@pytest.fixture(scope="module")
def demo():
    return load_script("demo/demo.py", "restr_d2_demo_reliability")


@pytest.fixture
def demo_log(log_lines):
    return log_lines("restr_d2.demo")


@pytest.fixture
def folder_with_bad_image(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "c.jpg"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / name)
    (folder / "b.jpg").write_bytes(b"")  # zero bytes
    return folder


def test_bad_image_named_others_processed_failures_listed(demo, folder_with_bad_image, tmp_path, demo_log):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        demo.main(["--config-file", SEGMENTER, "--input", str(folder_with_bad_image), "--output", str(out)])
    assert isinstance(e.value, demo.InputsFailed)
    assert [os.path.basename(p) for p, _ in e.value.failures] == ["b.jpg"]
    assert "not an image PIL can identify" in e.value.failures[0][1]
    assert sorted(os.listdir(out)) == ["a.png", "c.png"]  # the input after the bad one too
    assert "1 input(s) failed" in str(e.value.code) and "b.jpg" in str(e.value.code)
    assert "1 of 3 input(s) failed" in "\n".join(demo_log)


@pytest.mark.slow  # a subprocess (15 s); the in-process test above covers the same path
def test_bad_image_exit_status_without_traceback(folder_with_bad_image, tmp_path):
    bad = folder_with_bad_image / "b.jpg"
    p = subprocess.run([sys.executable, os.path.join(REPO, "demo/demo.py"), "--config-file", SEGMENTER,
                        "--input", str(bad), "--output", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=240,
                       env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO))
    assert p.returncode == 1, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert f"{bad}: not an image PIL can identify" in p.stderr


def test_demo_reads_sixteen_bit_like_training(demo, tmp_path, monkeypatch):
    path = tmp_path / "gray16.png"
    Image.fromarray(np.linspace(1000, 60000, 48 * 64).reshape(48, 64).astype(np.uint16)).save(path)
    seen = []

    def spy(self, image_bgr, text=None):
        seen.append(image_bgr)
        return self.predict(image_bgr, text), None

    predictor_module = sys.modules["predictor"]
    monkeypatch.setattr(predictor_module.VisualizationDemo, "run_on_image", spy)
    monkeypatch.setattr(demo, "_write", lambda *a: None)
    demo.main(["--config-file", SEGMENTER, "--input", str(path), "--output", str(tmp_path / "out")])
    np.testing.assert_array_equal(seen[0], read_image_checked(str(path), "BGR"))
    assert seen[0].max() < 250


def test_confidence_filter_said_in_log_and_on_picture(demo, tmp_path, demo_log):
    image = tmp_path / "a.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(image)
    torch.manual_seed(0)  # random weights: every score is far below 1.01
    [(out, pred)] = demo.main(["--config-file", M2F, "--input", str(image), "--task", "instance",
                               "--output", str(tmp_path / "vis.png"), "--confidence-threshold", "1.01",
                               "--opts", *M2F_OPTS])
    assert len(pred["instances"]) == 0
    assert "0 instances drawn, 20 of 20 instances scored below 1.01 (--confidence-threshold), not drawn" in "\n".join(demo_log)
    vis = cv2.imread(out)[:, :, ::-1].astype(int)
    orig = np.asarray(Image.open(image)).astype(int)
    # nothing drawn above; the note is written on the bottom rows
    assert np.abs(vis[:32] - orig[:32]).mean() < 1.0
    assert np.abs(vis[-8:] - orig[-8:]).mean() > 10.0


def test_empty_referring_mask_said_in_log_and_on_picture(demo, tmp_path, demo_log, monkeypatch):
    monkeypatch.chdir(REPO)  # the shapes ReSTR config names its vocabulary relative to the repo
    image = tmp_path / "a.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(image)
    [(out, pred)] = demo.main(["--config-file", RESTR, "--input", str(image), "--text", "the red circle",
                               "--output", str(tmp_path / "vis.png"),
                               "--opts", "MODEL.RESTR.TEST.MASK_THRESHOLD", "1.0"])
    assert not pred["mask"].any()
    assert "empty mask: no pixel has probability > 1" in "\n".join(demo_log)
    vis = cv2.imread(out)[:, :, ::-1].astype(int)
    orig = np.asarray(Image.open(image)).astype(int)
    assert np.abs(vis[-8:] - orig[-8:]).mean() > 10.0


def test_empty_panoptic_result_said_in_log(demo, tmp_path, demo_log):
    image = tmp_path / "a.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(image)
    [(out, pred)] = demo.main(["--config-file", M2F, "--input", str(image), "--output", str(tmp_path / "vis.png"),
                               "--opts", "INPUT.MIN_SIZE_TEST", "64", "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "1.0"])
    assert pred["panoptic_seg"][1] == []
    assert ("0 panoptic segments drawn, no panoptic segment kept (MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD=1, "
            "OVERLAP_THRESHOLD=0.8)") in "\n".join(demo_log)
