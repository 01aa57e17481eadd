import contextlib
import logging
import random

import numpy as np
import torch
import torch.utils.data as torchdata
from detectron2.utils import comm

logger = logging.getLogger(__name__)

_MAX_RETRIES = 16


@contextlib.contextmanager
def _seeded_global_rngs(seed):
    """Seed python/NumPy/torch RNGs for one sample, then put the previous states back, so that
    augmentations are a function of the sample's position and never disturb the model's RNG."""
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(th)


class ResumableTrainStream(torchdata.IterableDataset):
    """Infinite stream of mapped training batches that can start at any iteration.

    Sample ``k`` of the global stream is ``dataset[perm_e[k % N]]`` with ``e = k // N`` and
    ``perm_e`` a permutation drawn from ``(seed, e)``, mapped with every global RNG seeded from
    ``(seed, k)``. The stream is therefore a pure function of the seed: the same whatever the
    number of workers or processes, and resuming at iteration ``i`` (``start_iter=i``) yields
    exactly the batches an uninterrupted run would have seen from ``i`` on.

    Yields lists of ``batch_size`` mapped dicts (the per-process share of one global batch).
    """

    def __init__(self, dataset, mapper, *, seed, batch_size, start_iter=0, shuffle=True,
                 rank=None, world_size=None):
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty: check DATASETS.TRAIN and its files")
        self.dataset = dataset
        self.mapper = mapper
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.start_iter = int(start_iter)
        self.shuffle = shuffle
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size
        self._perm_cache = {}

    def _index(self, k):
        n = len(self.dataset)
        epoch, j = divmod(k, n)
        if not self.shuffle:
            return j
        if epoch not in self._perm_cache:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm_cache = {epoch: torch.randperm(n, generator=g).tolist()}
        return self._perm_cache[epoch][j]

    def _sample(self, k):
        for attempt in range(_MAX_RETRIES):
            idx = self._index(k + attempt * 7919)
            with _seeded_global_rngs(self.seed * 7_777_777 + k * _MAX_RETRIES + attempt):
                out = self.mapper(self.dataset[idx])
            if out is not None:
                return out
            logger.warning(f"mapper returned None for dataset record {idx}; drawing another")
        raise RuntimeError(f"the mapper rejected {_MAX_RETRIES} records in a row at stream "
                           f"position {k}: check the dataset and the mapper's filters")

    def __iter__(self):
        info = torchdata.get_worker_info()
        num_workers, worker = (info.num_workers, info.id) if info else (1, 0)
        global_batch = self.batch_size * self.world_size
        b = self.start_iter + worker
        while True:
            first = b * global_batch + self.rank * self.batch_size
            yield [self._sample(first + i) for i in range(self.batch_size)]
            b += num_workers


def _batch_as_is(batch):
    return batch


def build_resumable_train_loader(dataset, mapper, *, total_batch_size, seed, start_iter=0,
                                 num_workers=0, shuffle=True):
    """A train loader over :class:`ResumableTrainStream`. Workers take whole batches in turn and
    the DataLoader returns them in order, so the batch sequence is worker-count independent."""
    world_size = comm.get_world_size()
    if total_batch_size % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={total_batch_size} is not divisible by the "
                         f"number of processes ({world_size})")
    stream = ResumableTrainStream(dataset, mapper, seed=seed,
                                  batch_size=total_batch_size // world_size,
                                  start_iter=start_iter, shuffle=shuffle)
    return torchdata.DataLoader(stream, batch_size=None, num_workers=num_workers,
                                collate_fn=_batch_as_is,
                                persistent_workers=num_workers > 0)
