"""Wall-clock timing of callables, interleaving implementations so that machine-load drift
(other processes on shared cores) hits every implementation alike."""
import time
from typing import Callable, Dict, List

__all__ = ["time_calls", "interleaved_timings"]


def time_calls(fn: Callable[[], object], reps: int, warmup: int = 1) -> List[float]:
    """Seconds per call of `fn` for `reps` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def interleaved_timings(fns: Dict[str, Callable[[], object]], reps: int,
                        warmup: int = 1) -> Dict[str, List[float]]:
    """Seconds per call for each named callable, measured round-robin: repetition r runs every
    callable once, in an order that rotates with r (A B, B A, ...), so neither always runs
    first after the other's cache/allocator effects."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[name]()
            out[name].append(time.perf_counter() - t0)
    return out
