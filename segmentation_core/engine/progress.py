"""Progress lines suited to the run's length.

detectron2 writes metrics (the progress line with loss, time and ETA) every 20 iterations: on
a CPU a short run at several seconds per iteration shows one line in two minutes.
:class:`ProgressWriter` writes every ``period`` iterations *or* once ``max_seconds`` have passed
since the last write, and :func:`progress_period` shortens the period of short runs.
"""
import logging
import time

from detectron2.engine.hooks import PeriodicWriter

__all__ = ["ProgressWriter", "progress_period", "use_progress_writer", "PROGRESS_MAX_SECONDS"]

logger = logging.getLogger(__name__)

# at most this long between two progress lines (and metrics.json records)
PROGRESS_MAX_SECONDS = 30.0


def progress_period(max_iter: int, default: int = 20) -> int:
    """detectron2's 20 iterations, or fewer for runs shorter than 400 iterations (about 20
    lines per run, at least one every iteration for runs of <= 20)."""
    return max(1, min(default, int(max_iter) // 20))


class ProgressWriter(PeriodicWriter):
    """``PeriodicWriter`` that also writes when ``max_seconds`` passed since its last write."""

    def __init__(self, writers, period=20, max_seconds=PROGRESS_MAX_SECONDS):
        super().__init__(writers, period=period)
        self._max_seconds = float(max_seconds)
        self._last_write = None

    def before_train(self):
        self._last_write = time.perf_counter()

    def after_step(self):
        it = self.trainer.iter
        now = time.perf_counter()
        due = (it + 1) % self._period == 0 or it == self.trainer.max_iter - 1
        if due or (self._last_write is not None and now - self._last_write >= self._max_seconds):
            for writer in self._writers:
                writer.write()
            self._last_write = now


def use_progress_writer(hooks, max_iter: int):
    """Replace detectron2's ``PeriodicWriter`` in ``hooks`` (a list) by a :class:`ProgressWriter`
    with :func:`progress_period`; logs the choice."""
    out = []
    for h in hooks:
        if type(h) is PeriodicWriter:
            period = progress_period(max_iter, h._period)
            h = ProgressWriter(h._writers, period=period)
            logger.info(f"progress line every {period} iterations or {PROGRESS_MAX_SECONDS:g} s "
                        f"(SOLVER.MAX_ITER={max_iter})")
        out.append(h)
    return out
