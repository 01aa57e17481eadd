"""Run the benchmark cases of one preset and return a JSON-able report section.

Cases (each for "ours", an optional "variant" of ours (the same weights with extra config
options, e.g. ``MODEL.COMPILE.ENABLED True``) and, where the preset has one, the peer,
interleaved per repetition):

* `network` at batch 1 and batch N: normalise + pad + network forward (raw logits),
  `torch.inference_mode()`.
* `end_to_end` at batch 1: the user-facing inference call with post-processing.
* `train` at batch N: forward + matching + loss + backward + AdamW step.
* `memory`: peak RSS of one `network` (batch 1) and one `train` (batch N) step, each in a
  fresh subprocess (worker.py).
* FLOPs of our `network` (batch 1) by fvcore, and achieved GFLOP/s = FLOPs / median latency
  for each implementation (same FLOP count: both do the same work), as a fraction of this
  machine's dense-matmul GFLOP/s measured in the same run.
"""
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch

from .families import batch_for, build_subjects, cfg_for, pair_weights
from .flops import count_flops, count_flops_dispatch, flops_by_dtype
from .presets import get_preset
from .stats import paired_speedups, summarize
from .timing import interleaved_timings

logger = logging.getLogger(__name__)

__all__ = ["run_preset", "profile_top_ops", "MATMUL_CLASS_OPS", "REPO_ROOT"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Profiler ops whose self time is a matmul, convolution or attention kernel (the work a faster
# GEMM, e.g. native bf16, speeds up); every other op's is "other" (element-wise, layout,
# normalisation, gathers). The composites (linear, conv2d, einsum, ...) hold almost no self
# time; the oneDNN, slow-path (im2col + addmm_) and fused-attention kernels below hold it.
MATMUL_CLASS_OPS = frozenset(
    "aten::" + name for name in (
        "mm", "addmm", "addmm_", "bmm", "baddbmm", "addbmm", "matmul", "linear", "einsum",
        "conv2d", "convolution", "_convolution", "mkldnn_convolution", "convolution_backward",
        "_slow_conv2d_forward", "_slow_conv2d_backward", "mkldnn_linear",
        "scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention_for_cpu_backward"))


def profile_top_ops(fn, top: int = 15) -> Dict[str, object]:
    """Self-CPU time per operator of one call of `fn` (torch.profiler), largest first; and
    that time split into matmul-class ops (:data:`MATMUL_CLASS_OPS`) and the rest, with the
    rest's largest ops (``top_other_ops``)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows) or 1
    matmul = sum(e.self_cpu_time_total for e in rows if e.key in MATMUL_CLASS_OPS)

    def listed(events):
        return [{"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1000.0,
                 "pct": 100.0 * e.self_cpu_time_total / total} for e in events[:top]]

    return {
        "total_self_cpu_ms": total / 1000.0,
        "matmul_class_ms": matmul / 1000.0,
        "other_ms": (total - matmul) / 1000.0,
        "top_ops": listed(rows),
        "top_other_ops": listed([e for e in rows if e.key not in MATMUL_CLASS_OPS]),
    }


def _timing_rows(case: str, batch: int, size, timings: Dict[str, List[float]],
                 gflop: Optional[float], matmul: Optional[float]) -> List[Dict]:
    rows = []
    for impl, secs in timings.items():
        s = summarize(secs)
        row = {"case": case, "impl": impl, "batch": batch, "size": list(size), **s,
               "images_per_s": 1000.0 * batch / s["median_ms"],
               # in repetition order: repetition r of every impl ran back to back (a pair)
               "samples_ms": [1000.0 * x for x in secs]}
        if gflop is not None and case.startswith(("network", "end_to_end")):
            achieved = gflop * batch / (s["median_ms"] / 1000.0)
            row["achieved_gflops"] = achieved
            if matmul:
                row["fraction_of_matmul"] = achieved / matmul
        rows.append(row)
    return rows


def _rows_by_case(rows: List[Dict]) -> Dict:
    """{(case, batch): {impl: timing row}}."""
    by_case = {}
    for r in rows:
        by_case.setdefault((r["case"], r["batch"]), {})[r["impl"]] = r
    return by_case


def _ratio_rows(rows: List[Dict]) -> List[Dict]:
    out = []
    for (case, batch), impls in _rows_by_case(rows).items():
        if "ours" in impls and "peer" in impls:
            o, p = impls["ours"], impls["peer"]
            row = {"case": case, "batch": batch,
                   "latency_ours_over_peer": o["median_ms"] / p["median_ms"],
                   "speedup_ours_vs_peer": p["median_ms"] / o["median_ms"]}
            if "samples_ms" in o and "samples_ms" in p:
                row["paired_speedup"] = paired_speedups(o["samples_ms"], p["samples_ms"])
            out.append(row)
    return out


def _variant_ratio_rows(rows: List[Dict]) -> List[Dict]:
    out = []
    for (case, batch), impls in _rows_by_case(rows).items():
        if "variant" in impls and "ours" in impls:
            v = impls["variant"]["median_ms"]
            row = {"case": case, "batch": batch, "variant_over_ours_latency": v / impls["ours"]["median_ms"],
                   "speedup_variant_vs_ours": impls["ours"]["median_ms"] / v}
            if "peer" in impls:
                row["speedup_variant_vs_peer"] = impls["peer"]["median_ms"] / v
            out.append(row)
    return out


def _build_variant(preset, cfg_variant, ours, weights, seed: int):
    """Our model again, built from ``cfg_variant``, with exactly ``ours``' weights."""
    from .models import D2MaskFormerBench, task_of

    if preset.family == "maskformer":
        only_task = task_of(cfg_variant) if weights is not None else None
        bench = D2MaskFormerBench(cfg_variant, only_task=only_task)
    else:
        bench = build_subjects(preset, cfg_variant, seed=seed, with_peer=False)["ours"]
    bench.model.load_state_dict(ours.model.state_dict(), strict=True)
    return bench


def _preset_fields(preset) -> Dict:
    import dataclasses

    d = dataclasses.asdict(preset)
    d["size"] = list(d["size"])
    return d


def _run_worker(spec: Dict, timeout: float) -> Dict:
    with tempfile.TemporaryDirectory() as d:
        spec_path, out_path = os.path.join(d, "spec.json"), os.path.join(d, "out.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        proc = subprocess.run([sys.executable, "-m", "tools.benchmark.worker", spec_path, out_path],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"memory worker failed for {spec}:\n{proc.stderr[-3000:]}")
        with open(out_path) as f:
            return json.load(f)


def run_preset(name: str, *, size=None, batch: int = 2, reps: int = 10, warmup: int = 2,
               threads: int = 2, modes=("network", "end_to_end", "train", "memory", "flops"),
               with_peer: bool = True, extra_options=(), profile: bool = False,
               matmul_gflops: Optional[float] = None, seed: int = 0,
               worker_timeout: float = 1200.0, variant_options=()) -> Dict[str, object]:
    """Benchmark one preset; returns {"preset", "description", "rows", "ratios",
    "variant_ratios", "memory", "flops", "profile", "skipped"}.

    ``variant_options``: config overrides (KEY VALUE ...) of a second copy of our model with the
    same weights, timed interleaved with the others as impl "variant"."""
    torch.set_num_threads(threads)
    preset = get_preset(name)
    size = tuple(size or preset.size)
    cfg = cfg_for(preset, extra_options)
    t0 = time.perf_counter()
    weights = None
    if preset.peer and with_peer:
        weights = pair_weights(preset, cfg, seed)
    subjects = build_subjects(preset, cfg, seed=seed, with_peer=with_peer, weights=weights)
    variant_options = list(variant_options)
    if variant_options:
        variant = _build_variant(preset, cfg_for(preset, list(extra_options) + variant_options),
                                 subjects["ours"], weights, seed)
        subjects = {"ours": subjects["ours"], "variant": variant,
                    **{k: v for k, v in subjects.items() if k != "ours"}}
    logger.info("%s: built %s in %.1f s", name, "/".join(subjects), time.perf_counter() - t0)
    result = {"preset": name, "description": preset.description, "size": list(size),
              "batch": batch, "impls": list(subjects), "rows": [], "ratios": [], "memory": [],
              "variant_options": variant_options, "variant_ratios": [],
              "flops": None, "profile": {}, "skipped": []}
    b1 = batch_for(preset, cfg, 1, size, seed)
    bn = batch_for(preset, cfg, batch, size, seed)

    gflop = None
    if "flops" in modes:
        ours = subjects["ours"]
        try:
            if hasattr(ours, "network_module"):
                fl = count_flops(ours.network_module(), (b1.images,))
                method = "fvcore FlopCountAnalysis (x2: FLOPs = 2 x multiply-adds)"
            else:
                # string inputs (sentences) cannot be traced: count at the dispatcher instead
                fl = count_flops_dispatch(ours.network(b1))
                method = "torch.utils.flop_counter.FlopCounterMode (matmul, conv, SDPA)"
            gflop = fl["gflop"]
            result["flops"] = {"gflop_per_image": gflop, "method": method,
                               "top_operators": dict(list(fl["by_operator"].items())[:8]),
                               "uncounted_ops": fl["uncounted_ops"]}
        except Exception as e:  # report, do not hide: the figure is then absent
            result["skipped"].append(f"flops: counting failed: {type(e).__name__}: {e}")
        if "variant" in subjects and any(o == "MODEL.INFERENCE_DTYPE" for o in variant_options[::2]):
            # how much of the variant's matmul/conv/attention work autocast moved to bf16
            by_dtype = flops_by_dtype(subjects["variant"].network(b1, inference_mode=False))
            result["variant_gflop_by_dtype"] = by_dtype
            logger.info("%s: variant network FLOPs by dtype: %s", name,
                        ", ".join(f"{k} {v:.2f} GFLOP" for k, v in by_dtype.items()))

    def timed(case, bsz, b, method):
        fns = {impl: getattr(s, method)(b) for impl, s in subjects.items()}
        t = time.perf_counter()
        tim = interleaved_timings(fns, reps, warmup)
        logger.info("%s: %s batch %d: %s (%.0f s)", name, case, bsz,
                    ", ".join(f"{k} {1000 * sorted(v)[len(v) // 2]:.0f} ms" for k, v in tim.items()),
                    time.perf_counter() - t)
        result["rows"] += _timing_rows(case, bsz, size, tim, gflop, matmul_gflops)

    if "network" in modes:
        timed("network", 1, b1, "network")
        if batch > 1:
            timed("network", batch, bn, "network")
    if "end_to_end" in modes:
        timed("end_to_end", 1, b1, "end_to_end")
    if "train" in modes:
        timed("train", batch, bn, "train_step")
    result["ratios"] = _ratio_rows(result["rows"])
    result["variant_ratios"] = _variant_ratio_rows(result["rows"])

    if profile:
        for impl, s in subjects.items():
            result["profile"][f"network_b1_{impl}"] = profile_top_ops(s.network(b1))
            if "train" in modes:
                fn = s.train_step(bn)
                fn()
                result["profile"][f"train_b{batch}_{impl}"] = profile_top_ops(fn)

    if "memory" in modes:
        with tempfile.TemporaryDirectory() as d:
            wpath = None
            if weights is not None:
                from .worker import save_pair_weights

                wpath = os.path.join(d, "weights.pt")
                save_pair_weights(weights, wpath)
            mem_cases = [("network", 1)] + ([("train", batch)] if "train" in modes else [])
            for mode, bsz in mem_cases:
                for impl in subjects:
                    spec = {"preset": name, "preset_fields": _preset_fields(preset),
                            "extra_options": list(extra_options) + (variant_options if impl == "variant" else []),
                            "impl": "ours" if impl == "variant" else impl,
                            "mode": mode, "batch": bsz, "size": list(size), "threads": threads,
                            "seed": seed, "weights": wpath}
                    r = _run_worker(spec, worker_timeout)
                    logger.info("%s: memory %s %s batch %d: peak %.0f MiB, %.0f MiB over baseline",
                                name, mode, impl, bsz, r["peak_rss_mb"], r["peak_over_baseline_mb"])
                    result["memory"].append({"case": mode, "impl": impl, "batch": bsz,
                                             **{k: v for k, v in r.items() if k != "spec"}})
    return result


_DATA_OPTIONS = {
    # The official ADE20K semantic input pipeline (resize short side 256-1024, 512 crop with the
    # category-area constraint, SSD colour augmentation, flip, pad to 512) on shapes images.
    "data_shapes_semantic": ("m2f_ade20k_semantic_R50.yaml",
                             ["DATASETS.TRAIN", ("shapes_sem_seg_train",),
                              "INPUT.DATASET_MAPPER_NAME", "mask_former_semantic"]),
    "data_shapes_panoptic": ("m2f_ade20k_semantic_R50.yaml",
                             ["DATASETS.TRAIN", ("shapes_panoptic_train",),
                              "INPUT.DATASET_MAPPER_NAME", "mask_former_panoptic"]),
}


def run_data_preset(name: str, *, images: int = 50, warmup: int = 3, threads: int = 2,
                    seed: int = 0) -> Dict[str, object]:
    """Mapper throughput: per-record mapping latency over `images` training records of the
    shapes dataset (single process, as one data-loader worker), and images/s."""
    import random

    import numpy as np
    from detectron2.data import DatasetCatalog

    import segmentation_core.data.shapes  # noqa: F401  (registers the shapes datasets)
    import maskformer_d2  # noqa: F401  (registers the mappers)
    from segmentation_core.engine import build_dataset_mapper

    from .models import build_d2_cfg_for_preset
    from .presets import Preset

    torch.set_num_threads(threads)
    base, options = _DATA_OPTIONS[name]
    preset = get_preset(name)
    cfg = build_d2_cfg_for_preset(Preset(name, "maskformer", preset.description, base, options))
    t0 = time.perf_counter()
    records = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])
    load_s = time.perf_counter() - t0
    mapper = build_dataset_mapper(cfg, True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    n = min(images, len(records))
    for i in range(min(warmup, n)):
        mapper(dict(records[i]))
    secs = []
    for i in range(n):
        t = time.perf_counter()
        mapper(dict(records[i]))
        secs.append(time.perf_counter() - t)
    s = summarize(secs)
    row = {"case": "mapper", "impl": "ours", "batch": 1, "size": [0, 0], **s,
           "images_per_s": n / sum(secs)}
    return {"preset": name, "description": preset.description, "size": [0, 0], "batch": 1,
            "impls": ["ours"], "rows": [row], "ratios": [], "memory": [], "flops": None,
            "profile": {}, "skipped": [],
            "data": {"dataset": cfg.DATASETS.TRAIN[0], "records": len(records),
                     "dataset_load_s": load_s, "mapper": cfg.INPUT.DATASET_MAPPER_NAME}}
