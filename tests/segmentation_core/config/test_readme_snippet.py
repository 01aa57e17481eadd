"""The README's Python snippet ("Using it") runs as written from a directory outside the repo."""
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from detectron2.modeling import build_model

from segmentation_core.config import build_cfg, get_config_file

REPO = Path(__file__).resolve().parents[3]


def _snippet() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    using = [b for b in blocks if "ReferringPredictor(cfg)" in b and "DefaultPredictor(cfg)" in b]
    assert len(using) == 1, "the README's 'Using it' snippet is missing or duplicated"
    return using[0]


def test_readme_snippet_runs_outside_the_repo(tmp_path):
    # the checkpoints the README's training commands would have written (random weights here)
    for name, config in (("m2f", "shapes/mask2former_R18_panoptic.yaml"), ("restr", "shapes/restr_shapes.yaml")):
        (tmp_path / "out" / name).mkdir(parents=True)
        model = build_model(build_cfg(get_config_file(config)))
        torch.save({"model": model.state_dict()}, tmp_path / "out" / name / "model_final.pth")
    code = _snippet() + (
        "\nassert set(outputs) == {'sem_seg', 'panoptic_seg', 'instances'}, outputs.keys()"
        "\nassert out['mask'].shape == image_bgr.shape[:2] and len(outs) == 2\nprint('snippet ok')\n")
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN="2", SHAPES_NUM_VAL="2",
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    # the project as installed (editable) is this checkout; say so for worktrees beside it
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and "snippet ok" in p.stdout, p.stderr[-4000:]
