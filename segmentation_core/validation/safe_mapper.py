"""``SafeMapper``: applies ``DATALOADER.BAD_RECORD_POLICY`` to the records a mapper rejects.

``"fatal"`` (default): the mapper's :class:`BadRecordError` propagates (it names the file and
the reason). ``"skip"`` (training only): the record is counted per reason and the wrapper
returns None, on which detectron2's ``MapDataset`` and our ``ResumableTrainStream`` draw
another record. A summary line with the counts per reason is logged by
:class:`BadRecordSummaryHook` (every ``period`` iterations when it changed, and after
training) and, for anything not reported yet, at interpreter exit.

Evaluation is always "fatal": ``MapDataset`` would replace a skipped record by a random other
one, so an image would be evaluated twice and the metrics silently biased.
"""
import atexit
import logging
import weakref
from typing import Callable, Dict, Optional

from detectron2.data.detection_utils import SizeMismatchError
from detectron2.engine import HookBase

from .errors import BadRecordError
from .records import POLICIES
from .stats import BadRecordCounter

__all__ = ["SafeMapper", "BadRecordSummaryHook", "log_bad_record_summaries"]

logger = logging.getLogger(__name__)

_LIVE = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class SafeMapper:
    """Wraps ``mapper(record) -> dict``; see the module docstring.

    ``counter.counts()`` gives the skips per reason code, workers included (shared memory).
    """

    def __init__(
        self,
        mapper: Callable[[Dict], Optional[Dict]],
        policy: str = "fatal",
        *,
        is_train: bool = True,
        name: Optional[str] = None,
        max_consecutive: int = 100,
        log_first: int = 10,
    ):
        """
        Args:
            mapper: the dataset mapper.
            policy: "fatal" or "skip" (``DATALOADER.BAD_RECORD_POLICY``).
            is_train: False forces "fatal" (see the module docstring), logged.
            name: shown in the logs (default: the mapper's class name).
            max_consecutive: this many bad records in a row (in one process) mean a broken
                dataset or a wrong dataset root: raise instead of looping for ever.
            log_first: log every one of the first N skips, then at powers of two.
        """
        global _ATEXIT_REGISTERED
        if policy not in POLICIES:
            raise ValueError(f"DATALOADER.BAD_RECORD_POLICY={policy!r}; expected one of {POLICIES}")
        self.mapper = mapper
        self.name = name or type(mapper).__name__
        if policy == "skip" and not is_train:
            logger.info(
                "[SafeMapper] %s: evaluation treats bad records as fatal (a skipped record would be "
                "replaced by another and bias the metrics)", self.name,
            )
            policy = "fatal"
        self.policy = policy
        self.max_consecutive = int(max_consecutive)
        self.log_first = int(log_first)
        self.counter = BadRecordCounter(shared=True)
        self._consecutive = 0
        self._reported: Dict[str, int] = {}
        _LIVE.add(self)
        if policy == "skip" and not _ATEXIT_REGISTERED:
            atexit.register(log_bad_record_summaries, only_unreported=True)
            _ATEXIT_REGISTERED = True
        logger.info("[SafeMapper] %s: DATALOADER.BAD_RECORD_POLICY=%s", self.name, policy)

    def __call__(self, record: Dict) -> Optional[Dict]:
        try:
            out = self.mapper(record)
        except (BadRecordError, SizeMismatchError) as e:
            if self.policy == "fatal":
                raise
            return self._skip(record, e)
        self._consecutive = 0
        return out

    def _skip(self, record: Dict, error: Exception) -> None:
        reason = getattr(error, "reason", "size_mismatch")
        self.counter.add(reason)
        self._consecutive += 1
        total = self.counter.total()
        if total <= self.log_first or _is_power_of_two(total):
            logger.warning("[SafeMapper] skipping bad record #%d: %s", total, error)
        if self._consecutive >= self.max_consecutive:
            raise RuntimeError(
                f"{self._consecutive} bad records in a row (last: {error}); the dataset or its "
                f"root folder looks broken. {self.summary()}"
            ) from error
        return None

    def summary(self) -> str:
        return self.counter.summary(f"{self.name} (BAD_RECORD_POLICY={self.policy})")

    def log_summary(self, only_changed: bool = False) -> bool:
        """Log the summary line; with ``only_changed``, only if the counts changed since the
        last call. Returns whether a line was logged."""
        counts = self.counter.counts()
        if only_changed and counts == self._reported:
            return False
        self._reported = counts
        (logger.warning if counts else logger.info)(self.summary())
        return True

    def __getattr__(self, name):
        # mapper attributes (is_train, image_size, ...) stay reachable through the wrapper
        if name == "mapper":
            raise AttributeError(name)
        return getattr(self.mapper, name)


def log_bad_record_summaries(only_unreported: bool = False) -> int:
    """Log the summary of every live "skip" ``SafeMapper`` of this process; returns how many
    lines were logged."""
    n = 0
    for m in list(_LIVE):
        if m.policy == "skip":
            n += m.log_summary(only_changed=only_unreported)
    return n


class BadRecordSummaryHook(HookBase):
    """Logs the bad-record summaries every ``period`` iterations (when they changed) and after
    training."""

    def __init__(self, period: int = 1000):
        self.period = int(period)

    def after_step(self):
        if self.period > 0 and (self.trainer.iter + 1) % self.period == 0:
            log_bad_record_summaries(only_unreported=True)

    def after_train(self):
        log_bad_record_summaries()
