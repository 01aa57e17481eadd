"""Counters of skipped records (per reason) and of repairs, with the one-line summary the
loaders log."""
import multiprocessing
from collections import Counter
from typing import Dict, Mapping, Optional

from .errors import REASONS

__all__ = ["BadRecordCounter", "format_summary"]


class BadRecordCounter:
    """Skips per reason code, shared between a process and the data-loader workers it forks.

    The counts live in a ``multiprocessing.Array`` created in the constructor, so a counter
    built in the main process (before the loader starts its workers) sees the workers'
    increments. Repairs (clipped boxes, dropped polygons) are counted per process only: they
    are counted at dataset level, in the main process.
    """

    def __init__(self, shared: bool = True):
        self._shared = multiprocessing.Array("q", len(REASONS)) if shared else None
        self._local = [0] * len(REASONS)
        self.repairs: Counter = Counter()

    def add(self, reason: str, n: int = 1) -> None:
        i = REASONS.index(reason) if reason in REASONS else REASONS.index("other")
        if self._shared is not None:
            with self._shared.get_lock():
                self._shared[i] += n
        else:
            self._local[i] += n

    def counts(self) -> Dict[str, int]:
        values = list(self._shared[:]) if self._shared is not None else self._local
        return {r: int(v) for r, v in zip(REASONS, values) if v}

    def total(self) -> int:
        return sum(self.counts().values())

    def summary(self, what: str, num_records: Optional[int] = None) -> str:
        return format_summary(what, self.counts(), self.repairs, num_records)


def format_summary(what: str, skipped: Mapping[str, int], repairs: Mapping[str, int],
                   num_records: Optional[int] = None) -> str:
    """``"<what>: 3 bad records skipped (category_out_of_range: 2, unreadable_image: 1);
    repaired: box_clipped: 4"`` (``num_records`` adds "of N")."""
    total = sum(skipped.values())
    of = f" of {num_records}" if num_records is not None else ""
    parts = [f"{what}: {total} bad record{'s' if total != 1 else ''}{of} skipped"]
    if skipped:
        parts[0] += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) + ")"
    if repairs:
        parts.append("repaired: " + ", ".join(f"{k}: {v}" for k, v in sorted(repairs.items())))
    return "; ".join(parts)
