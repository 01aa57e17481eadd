"""Summary statistics of repeated timings."""
import math
from typing import Dict, Sequence

__all__ = ["percentile", "summarize"]


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
