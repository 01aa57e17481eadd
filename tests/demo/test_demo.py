"""demo/demo.py on tiny random-weight models: files written, predictions drawn, the
confidence threshold filters instances, referring text, video."""
import os

import sys

import cv2
import numpy as np
import pytest
import torch

from tests.helpers.dataset_files import save_jpg
from tests.helpers.scripts import load_script
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
M2F = os.path.join(REPO, "configs/shapes/mask2former_R18_panoptic.yaml")
SEGMENTER = os.path.join(REPO, "configs/shapes/segmenter_mask.yaml")
RESTR = os.path.join(REPO, "configs/shapes/restr_shapes.yaml")
# small test resolution; random weights give class probabilities far below the default
# mask thresholds, so those are lowered to keep some panoptic segments
M2F_OPTS = ["INPUT.MIN_SIZE_TEST", "64", "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0",
            "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0"]


@pytest.fixture(scope="module")
def demo():
    return load_script("demo/demo.py", "restr_d2_demo")


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    save_jpg(str(folder / "a.jpg"), 64, 80, seed=0)
    save_jpg(str(folder / "b.jpg"), 70, 64, seed=1)
    return folder


def _read_rgb(path):
    return cv2.imread(str(path))[:, :, ::-1]


def _assert_drawn(out_path, in_path):
    assert os.path.isfile(out_path)
    out, inp = _read_rgb(out_path), _read_rgb(in_path)
    assert out.shape == inp.shape
    assert np.abs(out.astype(int) - inp.astype(int)).mean() > 1.0  # something was drawn


def test_demo_mask2former_panoptic_folder_input(demo, images, tmp_path):
    torch.manual_seed(0)  # random weights: fixed, so that the panoptic result is not by chance
    results = demo.main(["--config-file", M2F, "--input", str(images), "--output", str(tmp_path / "out"),
                         "--opts", *M2F_OPTS])
    assert [os.path.basename(p) for p, _ in results] == ["a.png", "b.png"]
    for stem in ("a", "b"):
        _assert_drawn(tmp_path / "out" / f"{stem}.png", images / f"{stem}.jpg")
    assert all(len(pred["panoptic_seg"][1]) > 0 for _, pred in results)


def test_demo_confidence_threshold_filters_instances(demo, images, tmp_path):
    common = ["--config-file", M2F, "--input", str(images / "a.jpg"), "--task", "instance"]
    # panoptic off: instance inference then keeps all top-k pairs, not only the thing classes
    opts = M2F_OPTS + ["MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False"]
    torch.manual_seed(0)  # the same random weights in both runs
    [(none_path, none_pred)] = demo.main(
        common + ["--output", str(tmp_path / "none.png"), "--confidence-threshold", "1.01", "--opts", *opts])
    torch.manual_seed(0)
    [(all_path, all_pred)] = demo.main(
        common + ["--output", str(tmp_path / "all.png"), "--confidence-threshold", "0", "--opts", *opts])
    assert len(none_pred["instances"]) == 0
    assert len(all_pred["instances"]) == 20  # TEST.DETECTIONS_PER_IMAGE of the shapes config
    # nothing drawn: the visualization is the input image itself, but for the note at the
    # bottom saying what the threshold removed
    assert np.array_equal(_read_rgb(none_path)[:32], _read_rgb(images / "a.jpg")[:32])
    _assert_drawn(all_path, images / "a.jpg")
    # a middle threshold keeps exactly the instances scoring at least that much
    filter_instances = sys.modules["predictor"].filter_instances
    scores = np.sort(all_pred["instances"].scores.numpy())
    mid = float((scores[9] + scores[10]) / 2)
    kept = filter_instances(all_pred["instances"], mid)
    assert len(kept) == 10 and bool((kept.scores >= mid).all())


def test_demo_segmenter_glob_and_video(demo, images, tmp_path):
    results = demo.main(["--config-file", SEGMENTER, "--input", str(images / "*.jpg"),
                         "--output", str(tmp_path / "out")])
    assert len(results) == 2 and all("sem_seg" in pred for _, pred in results)
    for stem in ("a", "b"):
        _assert_drawn(tmp_path / "out" / f"{stem}.png", images / f"{stem}.jpg")

    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48), True)
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    out, n = demo.main(["--config-file", SEGMENTER, "--video-input", video, "--output", str(tmp_path / "vid")])
    assert n == 3 and out.endswith("clip.mp4") and os.path.getsize(out) > 0
    cap = cv2.VideoCapture(out)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_demo_referring_text(demo, images, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the shapes ReSTR config names its vocabulary relative to the repo
    sentences = ["the red circle", "the square on the left"]
    args = ["--config-file", RESTR, "--input", str(images / "a.jpg"), "--output", str(tmp_path / "out"),
            # random weights: threshold 0 makes the mask the whole image, so the overlay shows
            "--opts", "MODEL.RESTR.TEST.MASK_THRESHOLD", "0.0"]
    results = demo.main(args[:6] + ["--text", sentences[0], "--text", sentences[1]] + args[6:])
    assert [os.path.basename(p) for p, _ in results] == ["a_0.png", "a_1.png"]
    for path, pred in results:
        assert pred["mask"].shape == (64, 80) and pred["mask"].all()
        _assert_drawn(path, images / "a.jpg")
    with pytest.raises(ValueError, match="--text"):
        demo.main(args)


def test_demo_errors(demo, images, tmp_path):
    with pytest.raises(ValueError, match="only for referring"):
        demo.main(["--config-file", SEGMENTER, "--input", str(images), "--output", str(tmp_path), "--text", "a cat"])
    with pytest.raises(FileNotFoundError, match="matches no image"):
        demo.main(["--config-file", SEGMENTER, "--input", str(tmp_path / "nothing*.jpg"), "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="exactly one"):
        demo.main(["--config-file", SEGMENTER, "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="single file"):
        demo.main(["--config-file", SEGMENTER, "--input", str(images), "--output", str(tmp_path / "x.png")])
    with pytest.raises(ValueError, match="gave no 'instances'"):
        demo.main(["--config-file", SEGMENTER, "--input", str(images / "a.jpg"), "--output", str(tmp_path),
                   "--task", "instance"])
