"""The first hour: a short ``train_net.py`` run prints a progress line every iteration (ETA
included), says once which device it uses, writes no ANSI colour codes into
``OUTPUT_DIR/log.txt``, and prints neither torch's ``torch.jit.script is deprecated``
FutureWarnings (detectron2 imports) nor "No CUDA runtime is found"; ``tools/benchmark/benchmark.py --help``
keeps its examples on their own lines."""
import os
import re
import subprocess
import sys

from segmentation_core.engine.progress import progress_period
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)


def test_short_training_run_output(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN="4", SHAPES_NUM_VAL="2",
               OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    env.pop("PYTHONWARNINGS", None)  # the warnings must be silenced by us, not by the environment
    p = subprocess.run(
        [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file",
         os.path.join(REPO, "configs/shapes/segmenter_mask.yaml"), "OUTPUT_DIR", str(out),
         "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TEST", "64"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    console = p.stdout + p.stderr
    assert p.returncode == 0, console[-4000:]
    assert "torch.jit.script` is deprecated" not in console
    assert "No CUDA runtime is found" not in console
    assert len(re.findall(r"Device: cpu \(", console)) == 1
    progress = re.findall(r"\biter: (\d+) ", console)
    assert progress == ["0", "1", "2"], progress
    assert "eta: " in console
    log = (out / "log.txt").read_text()
    assert "\x1b[" not in log and "Running with full config" in log
    assert "\x1b[" not in (out / "config.yaml").read_text()


def test_progress_period_suits_the_run_length():
    assert progress_period(3) == 1 and progress_period(100) == 5 and progress_period(90000) == 20


def test_benchmark_help_keeps_example_lines():
    p = subprocess.run([sys.executable, os.path.join(REPO, "tools/benchmark/benchmark.py"), "--help"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "        --json out/bench.json --md out/bench.md" in lines
    assert not any("--reps 10         --json" in line for line in lines)
    assert "torch.jit.script` is deprecated" not in p.stderr
