"""Peak resident memory (RSS) of one benchmark step, measured on Linux from /proc.

Method: right before the measured step the process's RSS high-water mark is reset by writing
"5" to ``/proc/self/clear_refs`` (Linux >= 4.0); after the step ``VmHWM`` from
``/proc/self/status`` is the peak RSS reached during the step. Where the reset is not allowed,
the fallback is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the peak since process start,
which is still the step's peak when the step is the largest allocation the process made; the
result records which method was used. Run one case per fresh process (see ``worker.py``) so that
memory cached by the allocator from another case cannot hide an allocation.
"""
import resource
from typing import Callable, Dict

__all__ = ["rss_mb", "hwm_mb", "reset_hwm", "measure_peak"]

_MB = 1024.0 * 1024.0


def _status_kb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_mb() -> float:
    """Current resident set size in MiB."""
    return _status_kb("VmRSS") / 1024.0


def hwm_mb() -> float:
    """RSS high-water mark in MiB (since start or the last reset)."""
    return _status_kb("VmHWM") / 1024.0


def reset_hwm() -> bool:
    """Reset the RSS high-water mark to the current RSS; False if the kernel refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return hwm_mb() <= rss_mb() + 1.0


def measure_peak(step: Callable[[], object]) -> Dict[str, object]:
    """Run `step` once and return RSS before it, peak RSS during it and the method used."""
    before = rss_mb()
    if reset_hwm():
        step()
        peak = hwm_mb()
        method = "VmHWM after /proc/self/clear_refs reset"
    else:
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        method = "ru_maxrss (peak since process start)"
    return {"rss_before_step_mb": before, "peak_rss_mb": peak,
            "step_delta_mb": max(0.0, peak - before), "method": method}
