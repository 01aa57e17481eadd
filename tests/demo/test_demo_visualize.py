"""tools/demo/demo_visualize.py (the pictures of `make demo`): one picture per validation image,
input and prediction side by side, drawn large enough to read on the 128 px shapes images."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from segmentation_core.config import build_cfg
from tests.helpers.paths import REPO
from tests.helpers.web_demo import save_random_weights

CONFIG = str(REPO / "configs/shapes/segmenter_mask.yaml")


def _visualize(tmp_path, *args):
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN="2",
               SHAPES_NUM_VAL="2", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(REPO / "tools/demo/demo_visualize.py"), "--config-file", CONFIG,
                           "--weights", str(tmp_path / "w.pth"), "--output", str(tmp_path / "vis"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_pictures_are_drawn_at_the_display_size_with_the_input_beside(tmp_path):
    save_random_weights(build_cfg(CONFIG), str(tmp_path / "w.pth"))
    p = _visualize(tmp_path, "--num-images", "2")
    assert p.returncode == 0, p.stderr[-4000:]
    names = sorted(os.listdir(tmp_path / "vis"))
    assert len(names) == 2
    image_dir = tmp_path / "data" / "shapes" / "images"
    for name in names:
        panel = cv2.imread(str(tmp_path / "vis" / name))
        source = cv2.imread(str(image_dir / (name.split("_", 1)[1])))
        h, w = source.shape[:2]
        scale = max(1, round(512 / max(h, w)))
        assert panel.shape == (h * scale, 2 * w * scale, 3)
        # the left panel is the input, every pixel a scale x scale block
        np.testing.assert_array_equal(panel[:, : w * scale][::scale, ::scale], source)
        # the right panel is a drawing over it, not a copy of it
        assert not np.array_equal(panel[:, w * scale:], panel[:, : w * scale])


def test_a_non_positive_display_size_is_refused(capsys):
    from tools.demo.demo_visualize import main

    with pytest.raises(SystemExit) as e:
        main(["--config-file", CONFIG, "--weights", "unused.pth", "--output", "unused", "--display-size", "0"])
    assert e.value.code == 2 and "--display-size must be positive, got 0" in capsys.readouterr().err
