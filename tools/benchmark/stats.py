"""Summary statistics of repeated timings."""
import math
from typing import Dict, Sequence

__all__ = ["paired_speedups", "percentile", "summarize"]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(seconds: Sequence[float]) -> Dict[str, float]:
    """Median, quartiles, IQR, p10/p90, min, mean of timings, in milliseconds."""
    ms = [1000.0 * s for s in seconds]
    q1, q3 = percentile(ms, 25), percentile(ms, 75)
    return {
        "n": len(ms),
        "median_ms": percentile(ms, 50),
        "q1_ms": q1,
        "q3_ms": q3,
        "iqr_ms": q3 - q1,
        "p10_ms": percentile(ms, 10),
        "p90_ms": percentile(ms, 90),
        "min_ms": min(ms),
        "mean_ms": sum(ms) / len(ms),
    }


def paired_speedups(ours_ms: Sequence[float], peer_ms: Sequence[float]) -> Dict[str, float]:
    """Statistics of the per-repetition speed-ups peer_r / ours_r. The two calls of a
    repetition ran back to back (``interleaved_timings``), so a load change on a shared host
    that lasts longer than one repetition moves both; the spread of these ratios says how
    far one run's speed-up can be trusted, which the ratio of the two medians does not."""
    if len(ours_ms) != len(peer_ms) or not ours_ms:
        raise ValueError(f"paired speed-ups need the same number (> 0) of repetitions of both: "
                         f"got {len(ours_ms)} and {len(peer_ms)}")
    r = [p / o for o, p in zip(ours_ms, peer_ms)]
    return {"pairs": len(r), "median": percentile(r, 50), "q1": percentile(r, 25),
            "q3": percentile(r, 75), "min": min(r), "max": max(r)}
