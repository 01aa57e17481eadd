"""ReSTR trains and evaluates on the synthetic shapes referring data through train_net.py.

* fast: a few iterations of ``configs/shapes/restr_shapes.yaml`` on 8 train / 4 val images, then
  ``--eval-only`` on the written ``model_final.pth``: the referring metrics have their keys and
  ranges, the logged losses are finite; ``tools/analysis/referring_baselines.py`` runs on the same data.
* slow: the full tuned training (figures in docs/results_referring.md) reaches an overall IoU
  above the "largest object" baseline.

The shapes datasets read ``SHAPES_NUM_TRAIN`` / ``SHAPES_NUM_VAL`` / ``DETECTRON2_DATASETS`` at
import, so every run is a subprocess with its own environment; this file is also the program
that subprocess runs (``python test_restr_shapes_training.py OUT.json CFG [MAX_ITER]``).
"""
import json
import math
import os
import subprocess
import sys

import pytest
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
RESTR_SHAPES = os.path.join(REPO, "configs", "shapes", "restr_shapes.yaml")
METRIC_KEYS = {"num_samples", "oIoU", "mIoU", "Prec@0.5", "Prec@0.6", "Prec@0.7", "Prec@0.8", "Prec@0.9"}

# Issue 5 acceptance: on shapes_refcoco_unc_val (200/50 images, seed 0) the largest-object
# baseline has oIoU 20.2 (docs/results_referring.md). The full restr_shapes.yaml run (patch 8,
# 12,000 iterations with the dice term, seed 0) measured oIoU 35.8 (+15.6); the margin leaves
# room for platform differences while still failing a model that does not ground the sentences.
SLOW_MARGIN_OVER_BASELINE = 10.0


def _program(out_json: str, cfg_file: str, max_iter: str = ""):
    """Baselines, then train ``cfg_file``, then ``--eval-only`` of its ``model_final.pth``."""
    sys.path.insert(0, REPO)
    import train_net
    from tools.analysis import referring_baselines as baselines_tool

    out_dir = os.path.join(os.path.dirname(out_json), "run")
    opts = ["OUTPUT_DIR", out_dir]
    train_opts = []
    if max_iter:
        train_opts = ["SOLVER.MAX_ITER", max_iter, "SOLVER.IMS_PER_BATCH", "2",
                      "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", max_iter,
                      "DATASETS.TEST", "()"]
    parser = train_net.default_argument_parser()
    baselines = baselines_tool.run_baselines("shapes_refcoco_unc_val")
    train_net.main(parser.parse_args(["--config-file", cfg_file] + opts + train_opts))
    with open(os.path.join(out_dir, "metrics.json")) as f:
        logged = [json.loads(line) for line in f]
    eval_res = train_net.main(parser.parse_args(
        ["--config-file", cfg_file, "--eval-only", "MODEL.WEIGHTS",
         os.path.join(out_dir, "model_final.pth")] + opts))
    report = {
        "losses": [m["total_loss"] for m in logged if "total_loss" in m],
        "loss_keys": sorted({k for m in logged for k in m if k.startswith("loss_")}),
        # the evaluation at the end of training, as EvalHook logged it
        "train_results": {k: v for m in logged for k, v in m.items() if k.startswith("referring/")},
        "eval_results": eval_res,
        "baselines": baselines,
    }
    with open(out_json, "w") as f:
        json.dump(report, f, default=float)


def _run(tmp_path, num_train: int, num_val: int, timeout: int, max_iter: str = ""):
    env = dict(
        os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN=str(num_train),
        SHAPES_NUM_VAL=str(num_val), PYTHONWARNINGS="ignore",
        # the driver below is this file run as a script: it imports tests.helpers from the repo
        PYTHONPATH=os.pathsep.join([REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        # one thread: on a loaded 2-core machine two OpenMP threads per process run ~20x slower
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )
    out_json = str(tmp_path / "report.json")
    args = [sys.executable, os.path.abspath(__file__), out_json, RESTR_SHAPES] + ([max_iter] if max_iter else [])
    # run from outside the repository: every path in the config (the vocabulary file) must
    # resolve relative to the config file, not the current directory
    work = tmp_path / "elsewhere"
    work.mkdir()
    p = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    with open(out_json) as f:
        return json.load(f), p.stdout + p.stderr


def _check_metrics(m):
    assert set(m) == METRIC_KEYS, sorted(m)
    for k in METRIC_KEYS - {"num_samples"}:
        assert 0.0 <= m[k] <= 100.0, (k, m)
    precs = [m[f"Prec@{t}"] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")]
    assert precs == sorted(precs, reverse=True), m  # a stricter threshold never passes more


def test_restr_shapes_train_and_eval_tiny(tmp_path):
    report, _ = _run(tmp_path, num_train=8, num_val=4, timeout=240, max_iter="3")
    with open(tmp_path / "data" / "shapes" / "manifest.json") as f:
        manifest = json.load(f)
    assert (manifest["config"]["num_train"], manifest["config"]["num_val"]) == (8, 4), manifest["config"]
    losses = report["losses"]
    assert len(losses) >= 1 and all(math.isfinite(x) for x in losses), losses
    # restr_shapes.yaml adds the pixel dice term (MODEL.RESTR.DICE_WEIGHT 1.0) to the official two
    assert report["loss_keys"] == ["loss_dice", "loss_patch", "loss_pixel"], report["loss_keys"]
    res = report["eval_results"]
    assert set(res) == {"referring"}, res.keys()
    _check_metrics(res["referring"])
    n = res["referring"]["num_samples"]
    assert n >= 4, res  # every val image has at least one referred object
    for name, m in report["baselines"].items():
        _check_metrics(m)
        assert m["num_samples"] == n, (name, m)
    # a GT object inside the whole image: I = |GT| > 0, so the whole-image oIoU is positive
    assert report["baselines"]["whole_image"]["oIoU"] > 0.0
    # the largest object is the referred one for some sentence but not for all
    assert 0.0 < report["baselines"]["largest_object"]["mIoU"] < 100.0


@pytest.mark.slow
def test_restr_shapes_learns(tmp_path):
    """The full CPU training of restr_shapes.yaml (~1 h on one core, 200/50 images)."""
    report, _ = _run(tmp_path, num_train=200, num_val=50, timeout=5400)
    losses = report["losses"]
    assert all(math.isfinite(x) for x in losses)
    # the loss falls clearly from the first logged value (iteration 20; the patch-8 config's
    # loss halves within its first 60 iterations, so a mean over the first logs says little)
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses
    res = report["eval_results"]["referring"]
    _check_metrics(res)
    baseline = report["baselines"]["largest_object"]["oIoU"]
    assert res["oIoU"] > baseline + SLOW_MARGIN_OVER_BASELINE, (res, report["baselines"])
    # the evaluation at the end of training and --eval-only of model_final.pth agree
    assert abs(report["train_results"]["referring/oIoU"] - res["oIoU"]) < 1e-6


if __name__ == "__main__":
    _program(*sys.argv[1:])
