"""Peak memory of MaskFormer / Mask2Former inference vs the image side (bounded post-processing).

    python -m tools.benchmark.postprocess_memory \\
        --config configs/shapes/mask2former_R18_panoptic.yaml \\
        --config configs/mask2former/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml \\
        --sides 1000 2000 4000 8000 --paths network old new compact --limit-gb 16 --worst-case --out peaks.json

Each case runs in a fresh process (``--worker``): it builds the model from the config with random
weights (``build_model``, no checkpoint: the memory does not depend on the values), makes a
random square BGR uint8 image of the given side, records the RSS (``baseline``: interpreter,
libraries, model, the input image), then runs one inference exactly as detectron2's
``DefaultPredictor`` does (``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``,
``INPUT.FORMAT``, ``height``/``width`` = the image size, ``torch.no_grad``) with semantic,
panoptic and instance inference on, and reports the peak RSS during that call (``VmHWM`` after a
``/proc/self/clear_refs`` reset, see ``memory.py``) minus the baseline. Paths:

* ``old``: ``MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB 0`` (whole-image post-processing: the
  (Q, H, W) masks at the output resolution);
* ``new``: the default banded post-processing (same outputs);
* ``compact``: banded with ``COMPACT_OUTPUTS True`` (``sem_seg_labels``, bit-packed instance masks);
* ``network``: only backbone + head on the resized input (the network's share of the peak).

``--worst-case`` (memory-wise) keeps every query and every instance whatever the random weights
predict: ``OBJECT_MASK_THRESHOLD 0`` and every class a thing class (without it, random weights
give few panoptic segments and, instance inference keeping only thing classes, often no
instance at all, so the instance masks would not be measured): ``TEST.DETECTIONS_PER_IMAGE``
instances, all queries competing in the panoptic argmax.

The parent watches each worker's RSS (every 0.05 s) and kills it above ``--limit-gb`` (so the
machine is never pushed into the OOM killer) or after ``--timeout`` seconds; such a case is
reported as ``killed above X GB`` / ``timed out``.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO_ROOT = Path(__file__).resolve().parents[2]
PATHS = ("network", "old", "new", "compact")


def _path_opts(path: str) -> List[str]:
    if path == "old":
        return ["MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB", "0.0"]
    if path == "compact":
        return ["MODEL.MASK_FORMER.TEST.COMPACT_OUTPUTS", "True"]
    return []


def run_worker(config: str, side: int, path: str, threads: int, seed: int, worst_case: bool = False) -> Dict:
    """One case in this process; returns the measurement (see the module docstring)."""
    import numpy as np
    import torch
    from detectron2.data import transforms as T
    from detectron2.modeling import build_model

    from segmentation_core.config import build_cfg
    from tools.benchmark.memory import measure_peak, rss_mb

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    opts = [
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "True",
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "True",
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True",
    ] + _path_opts(path)
    if worst_case:
        opts += ["MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0"]
    cfg = build_cfg(config, opts)
    model = build_model(cfg).eval()
    if worst_case:
        from types import SimpleNamespace

        classes = range(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        model.metadata = SimpleNamespace(thing_dataset_id_to_contiguous_id={c: c for c in classes})
    image = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)  # BGR
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)
    baseline = rss_mb()
    shapes = {}

    def predict():
        # detectron2's DefaultPredictor.__call__, step by step
        with torch.no_grad():
            original = image[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else image
            height, width = original.shape[:2]
            resized = resize.get_transform(original).apply_image(original)
            tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
            shapes["network_input"] = list(tensor.shape[-2:])
            if path == "network":
                images = model.preprocess_images([{"image": tensor}])
                outputs = model.sem_seg_head(model.backbone(images.tensor))
                shapes["pred_masks"] = list(outputs["pred_masks"].shape)
                return outputs
            result = model([{"image": tensor, "height": height, "width": width}])[0]
            shapes["outputs"] = {k: _describe(v) for k, v in result.items()}
            return result

    stats = measure_peak(predict)
    return {
        "config": config, "side": side, "path": path, "threads": threads, "worst_case": worst_case,
        "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(stats["peak_rss_mb"], 1),
        "peak_over_baseline_mb": round(stats["peak_rss_mb"] - baseline, 1), "method": stats["method"],
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST, "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        "band_mb": cfg.MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB, **shapes,
    }


def _describe(value):
    import torch

    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {value.dtype}"
    if isinstance(value, tuple):
        return f"{tuple(value[0].shape)} {value[0].dtype}, {len(value[1])} segments"
    fields = value.get_fields()
    return f"{len(value)} instances: " + ", ".join(
        f"{k} {tuple(v.shape)} {v.dtype}" for k, v in fields.items() if isinstance(v, torch.Tensor)
    )


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_case(config: str, side: int, path: str, *, threads: int, seed: int, limit_gb: float, timeout: float,
             worst_case: bool = False) -> Dict:
    """One case in a fresh, RSS-guarded subprocess."""
    command = [sys.executable, "-m", "tools.benchmark.postprocess_memory", "--worker", "--config", config,
               "--sides", str(side), "--paths", path, "--threads", str(threads), "--seed", str(seed)]
    command += ["--worst-case"] if worst_case else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    max_rss_kb, outcome = 0, None
    limit_kb = limit_gb * 1024 * 1024
    while proc.poll() is None:
        rss = _rss_kb(proc.pid)
        max_rss_kb = max(max_rss_kb, rss)
        if rss > limit_kb:
            outcome = f"killed above {limit_gb:g} GB (RSS {rss / 2**20:.1f} GiB)"
        elif time.perf_counter() - start > timeout:
            outcome = f"timed out after {timeout:g} s"
        if outcome:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    seconds = round(time.perf_counter() - start, 1)
    if outcome:
        return {"config": config, "side": side, "path": path, "outcome": outcome,
                "max_rss_seen_mb": round(max_rss_kb / 1024, 1), "seconds": seconds}
    if proc.returncode != 0:
        return {"config": config, "side": side, "path": path, "outcome": f"failed (exit {proc.returncode})",
                "error": stderr.strip().splitlines()[-3:], "seconds": seconds}
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(outcome="ok", seconds=seconds)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, help="config file (repeatable)")
    parser.add_argument("--sides", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-gb", type=float, default=16.0, help="kill a case whose RSS exceeds this")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--skip", nargs="*", default=[], metavar="PATH@SIDE",
                        help="cases not to run, e.g. old@8000 (reported as skipped)")
    parser.add_argument("--worst-case", action="store_true",
                        help="keep every query and DETECTIONS_PER_IMAGE instances (see above)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.config[0], args.sides[0], args.paths[0], args.threads, args.seed,
                                    args.worst_case)))
        return
    results = []
    for config in args.config:
        for side in args.sides:
            for path in args.paths:
                if f"{path}@{side}" in args.skip:
                    result = {"config": config, "side": side, "path": path, "outcome": "skipped (--skip)"}
                else:
                    result = run_case(config, side, path, threads=args.threads, seed=args.seed,
                                      limit_gb=args.limit_gb, timeout=args.timeout, worst_case=args.worst_case)
                results.append(result)
                print(_line(result), flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps(results, indent=1))


def _line(r: Dict) -> str:
    name = Path(r["config"]).stem
    if r["outcome"] != "ok":
        extra = f", max RSS seen {r['max_rss_seen_mb'] / 1024:.1f} GiB" if "max_rss_seen_mb" in r else ""
        extra += f": {r['error'][-1][:160]}" if r.get("error") else ""
        return f"{name:40s} {r['side']:5d} {r['path']:8s} {r['outcome']}{extra} ({r.get('seconds', 0)} s)"
    return (f"{name:40s} {r['side']:5d} {r['path']:8s} peak over baseline {r['peak_over_baseline_mb'] / 1024:6.2f} GiB "
            f"(baseline {r['baseline_rss_mb'] / 1024:.2f} GiB, network input {r['network_input']}, {r['seconds']} s)")


if __name__ == "__main__":
    main()
