"""MaskFormer / Mask2Former train and evaluate on the synthetic shapes data through train_net.py.

* fast: 3 iterations of each shapes config (panoptic, semantic, instance; Mask2Former and
  MaskFormer), then ``--eval-only`` on the written checkpoint: the metric tables have their keys
  and the losses are finite.
* slow: the full training of ``configs/shapes/mask2former_R18_panoptic.yaml`` (figures in
  docs/results_shapes.md) learns: PQ and mIoU well above chance.

The shapes datasets read ``SHAPES_NUM_TRAIN`` / ``SHAPES_NUM_VAL`` / ``DETECTRON2_DATASETS`` when
imported, so every run is a subprocess with its own environment. This file is also the driver
that subprocess runs (``python test_maskformer_shapes_training.py OUT.json CFG[:MAX_ITER] ...``).
"""
import json
import math
import os
import subprocess
import sys

import pytest
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
SHAPES_CONFIGS = os.path.join(REPO, "configs", "shapes")

# Chance on shapes_panoptic_val (docs/results_shapes.md): every pixel "grass" (the majority class)
# gives mIoU 3.2, PQ 1.1; pixels drawn from the class frequencies mIoU 6.9, PQ 0.
# The full Mask2Former run (400 iterations) measured PQ 39.2 / mIoU 52.1 / mask AP 6.1 and a
# logged loss 38.2 (iter 19) -> 17.9 (iter 399); the thresholds leave a margin for thread-count
# and platform differences that change the trajectory.
SLOW_MIN_PQ = 30.0
SLOW_MIN_MIOU = 40.0


def _driver(out_json, specs):
    """Train each config (``path[:max_iter]``) then evaluate its ``model_final.pth``."""
    sys.path.insert(0, REPO)
    import train_net

    report = {}
    for spec in specs:
        cfg_file, _, max_iter = spec.partition(":")
        name = os.path.splitext(os.path.basename(cfg_file))[0]
        out_dir = os.path.join(os.path.dirname(out_json), name)
        opts = ["OUTPUT_DIR", out_dir]
        if max_iter:
            # A 3-iteration model has near-uniform scores: keep every panoptic segment, and every
            # (query, class) pair as an instance, since the top 20 may hold no thing class at all
            # (then there would be no instance predictions and no mask AP to check).
            cfg = train_net.build_cfg()
            cfg.merge_from_file(cfg_file)
            all_pairs = cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES * cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
            opts += ["SOLVER.MAX_ITER", max_iter, "SOLVER.IMS_PER_BATCH", "2",
                     "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0",
                     "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0",
                     "TEST.DETECTIONS_PER_IMAGE", str(all_pairs)]
        parser = train_net.default_argument_parser()
        train_net.main(parser.parse_args(
            ["--config-file", cfg_file] + opts + (["DATASETS.TEST", "()"] if max_iter else [])))
        with open(os.path.join(out_dir, "metrics.json")) as f:
            metrics = [json.loads(line) for line in f]
        losses = [m["total_loss"] for m in metrics if "total_loss" in m]
        # the evaluation at the end of training, as EvalHook logged it ("panoptic_seg/PQ", ...)
        train_res = {k: v for m in metrics for k, v in m.items()
                     if k.split("/")[0] in ("panoptic_seg", "sem_seg", "segm")}
        eval_res = train_net.main(parser.parse_args(
            ["--config-file", cfg_file, "--eval-only", "MODEL.WEIGHTS",
             os.path.join(out_dir, "model_final.pth")] + opts))
        report[name] = {"losses": losses, "train_results": train_res, "eval_results": eval_res}
    with open(out_json, "w") as f:
        json.dump(report, f, default=float)


def _run_driver(tmp_path, specs, num_train, num_val, timeout):
    env = dict(
        os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), SHAPES_NUM_TRAIN=str(num_train),
        SHAPES_NUM_VAL=str(num_val), PYTHONWARNINGS="ignore",
        # the driver below is this file run as a script: it imports tests.helpers from the repo
        PYTHONPATH=os.pathsep.join([REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        # one thread: on a loaded 2-core machine two OpenMP threads per process are ~10x slower
        OMP_NUM_THREADS="1",
    )
    out_json = str(tmp_path / "report.json")
    p = subprocess.run([sys.executable, os.path.abspath(__file__), out_json] + specs, cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    with open(out_json) as f:
        return json.load(f), p.stdout + p.stderr


def _cfg(name):
    return os.path.join(SHAPES_CONFIGS, name + ".yaml")


def test_shapes_configs_train_and_eval_tiny(tmp_path):
    names = ["mask2former_R18_panoptic", "maskformer_R18_panoptic", "mask2former_R18_semantic",
             "mask2former_R18_instance"]
    report, _ = _run_driver(tmp_path, [_cfg(n) + ":3" for n in names], num_train=8, num_val=4,
                              timeout=300)
    from segmentation_core.data.shapes import ShapesConfig
    from segmentation_core.data.shapes.cache import verify_shapes

    # the run generated the shapes data it was asked for (8 train / 4 val), manifest and all
    assert verify_shapes(str(tmp_path / "data" / "shapes"), ShapesConfig(num_train=8, num_val=4)) == []
    for name in names:
        r = report[name]
        assert len(r["losses"]) >= 1 and all(math.isfinite(x) for x in r["losses"]), (name, r["losses"])
        res = r["eval_results"]
        if name.endswith("panoptic"):
            # + "bbox": Mask2Former's instances carry boxes around their masks
            assert {"panoptic_seg", "sem_seg", "segm"} <= set(res) <= {"panoptic_seg", "sem_seg", "segm", "bbox"}, (name, res.keys())
            for k in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st"):
                assert 0.0 <= res["panoptic_seg"][k] <= 100.0, (name, k, res["panoptic_seg"])
        elif name.endswith("semantic"):
            assert set(res) == {"sem_seg"}, (name, res.keys())
        else:
            assert {"segm"} <= set(res) <= {"segm", "bbox"}, (name, res.keys())
        if "sem_seg" in res:
            assert 0.0 <= res["sem_seg"]["mIoU"] <= 100.0
            assert {f"IoU-{c}" for c in ("circle", "star", "sky", "wall")} <= set(res["sem_seg"])
        if "segm" in res:
            ap = res["segm"]["AP"]
            assert ap == ap and 0.0 <= ap <= 100.0, (name, res["segm"])  # not NaN: there were predictions
            assert {"AP50", "AP75", "AP-circle", "AP-star"} <= set(res["segm"])


@pytest.mark.slow
@pytest.mark.timeout(2400)  # pytest.ini's 600 s is for the fast suite
def test_mask2former_panoptic_learns_shapes(tmp_path):
    """Full CPU training: ~8 min alone on 2 busy cores, ~18 min beside another training."""
    name = "mask2former_R18_panoptic"
    report, _ = _run_driver(tmp_path, [_cfg(name)], num_train=200, num_val=50, timeout=1800)
    r = report[name]
    losses = r["losses"]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < 0.75 * sum(losses[:3]) / 3, losses  # the loss falls clearly
    res = r["eval_results"]
    assert res["panoptic_seg"]["PQ"] > SLOW_MIN_PQ, res["panoptic_seg"]
    assert res["sem_seg"]["mIoU"] > SLOW_MIN_MIOU, res["sem_seg"]
    assert res["segm"]["AP"] > 0.0, res["segm"]
    # the evaluation at the end of training and --eval-only of model_final.pth agree
    assert abs(r["train_results"]["panoptic_seg/PQ"] - res["panoptic_seg"]["PQ"]) < 1e-6


if __name__ == "__main__":
    _driver(sys.argv[1], sys.argv[2:])
