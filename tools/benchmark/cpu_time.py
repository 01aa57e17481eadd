"""Thread CPU time of ours vs the peer (same weights), one thread, interleaved.

On a machine shared with other jobs, wall-clock ratios swing with the load (with 2 threads on a
busy 2-core VM, OpenMP threads wait for cores other processes hold). The CPU time of the one
compute thread (``time.thread_time``) leaves out the waiting, so its ratio stays close to what an
idle machine gives (cache and memory-bandwidth sharing still count). Same subjects and batches
as ``benchmark.py``; calls alternate A B / B A.

    python tools/benchmark/cpu_time.py --preset m2f_swin_t_panoptic --size 512 512 \\
        --network-reps 5 --train-reps 3 --json cpu.json
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from tools.benchmark.families import batch_for, build_subjects, cfg_for
from tools.benchmark.presets import get_preset
from tools.benchmark.stats import percentile

__all__ = ["cpu_time_pair", "main"]


def cpu_time_pair(preset_name: str, size=None, network_reps: int = 5, train_reps: int = 3,
                  train_batch: int = 2, seed: int = 0) -> Dict[str, Dict]:
    """{case: {impl: {"cpu_ms": [...], "wall_ms": [...]}, "speedup_cpu_median": x, ...}}."""
    torch.set_num_threads(1)
    preset = get_preset(preset_name)
    if not preset.peer:
        raise ValueError(f"preset {preset_name!r} has no peer to compare with")
    size = tuple(size or preset.size)
    cfg = cfg_for(preset)
    subjects = build_subjects(preset, cfg, seed=seed, with_peer=True)
    out = {}
    for case, method, batch, reps in (("network", "network", 1, network_reps),
                                      ("train", "train_step", train_batch, train_reps)):
        if reps <= 0:
            continue
        b = batch_for(preset, cfg, batch, size, seed)
        fns = {impl: getattr(s, method)(b) for impl, s in subjects.items()}
        for fn in fns.values():  # warm-up: first-call allocations, optimizer state
            fn()
        cpu = {k: [] for k in fns}
        wall = {k: [] for k in fns}
        for r in range(reps):
            for impl in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                c, w = time.thread_time(), time.perf_counter()
                fns[impl]()
                cpu[impl].append(1000 * (time.thread_time() - c))
                wall[impl].append(1000 * (time.perf_counter() - w))
        res = {impl: {"cpu_ms": cpu[impl], "wall_ms": wall[impl]} for impl in fns}
        res["speedup_cpu_median"] = percentile(cpu["peer"], 50) / percentile(cpu["ours"], 50)
        res["speedup_cpu_min"] = min(cpu["peer"]) / min(cpu["ours"])
        res["speedup_wall_median"] = percentile(wall["peer"], 50) / percentile(wall["ours"], 50)
        res["batch"] = batch
        out[case] = res
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="m2f_swin_t_panoptic")
    ap.add_argument("--size", type=int, nargs=2, default=None)
    ap.add_argument("--network-reps", type=int, default=5)
    ap.add_argument("--train-reps", type=int, default=3)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    res = cpu_time_pair(args.preset, args.size, args.network_reps, args.train_reps, args.train_batch)
    for case, r in res.items():
        print(f"{args.preset} {case} batch {r['batch']}, 1 thread: thread CPU time median "
              f"ours {percentile(r['ours']['cpu_ms'], 50):.0f} ms, peer {percentile(r['peer']['cpu_ms'], 50):.0f} ms: "
              f"speed-up {r['speedup_cpu_median']:.2f}x (min/min {r['speedup_cpu_min']:.2f}x; "
              f"wall-clock median {r['speedup_wall_median']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
