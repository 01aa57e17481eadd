"""Training sampler that visits every referred object once per epoch with one of its sentences.

RefCOCO has 1-3+ sentences per ref; a plain TrainingSampler over the per-sentence records
visits objects with more sentences more often. Use instead, in ``build_train_loader``::

    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN)
    sampler = OneSentencePerRefSampler.from_dataset_dicts(dicts, seed=cfg.SEED)
    build_detection_train_loader(cfg, mapper=mapper, dataset=dicts, sampler=sampler)

Records are grouped by ``(image_id, ref_id)``; a ref's sentences are one group. (``ref_id``
alone is unique within one REFER dataset; pairing it with ``image_id`` keeps refs of two
concatenated datasets apart in practice.)
"""
import itertools
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
from torch.utils.data.sampler import Sampler

from detectron2.utils import comm


class OneSentencePerRefSampler(Sampler):
    """Infinite stream of record indices: each epoch is a random permutation of the refs, and
    each ref contributes one of its records chosen at random. Sharded across ranks like
    detectron2's ``TrainingSampler``."""

    def __init__(self, groups: Sequence[Sequence[int]], shuffle: bool = True,
                 seed: Optional[int] = None):
        """
        Args:
            groups: for each ref, the indices of its records (non-empty lists).
            shuffle: permute refs and pick sentences at random; otherwise refs in order with
                their sentences taken in turn, epoch after epoch.
            seed: shared by all ranks; None draws a shared random seed.
        """
        if not groups or any(len(g) == 0 for g in groups):
            raise ValueError("OneSentencePerRefSampler needs at least one ref, each with >= 1 record")
        self._groups = [list(g) for g in groups]
        self._shuffle = shuffle
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank, self._world_size = comm.get_rank(), comm.get_world_size()

    @staticmethod
    def group_records(dataset_dicts: Sequence[Dict]) -> List[List[int]]:
        """Indices of the records of each ref, refs in order of first appearance."""
        groups: "OrderedDict[tuple, List[int]]" = OrderedDict()
        for i, d in enumerate(dataset_dicts):
            if "ref_id" not in d:
                raise KeyError(f"Record {i} ({d.get('file_name')}) has no 'ref_id'; "
                               "OneSentencePerRefSampler needs referring records")
            groups.setdefault((d.get("image_id"), d["ref_id"]), []).append(i)
        return list(groups.values())

    @classmethod
    def from_dataset_dicts(cls, dataset_dicts: Sequence[Dict], shuffle: bool = True,
                           seed: Optional[int] = None) -> "OneSentencePerRefSampler":
        return cls(cls.group_records(dataset_dicts), shuffle=shuffle, seed=seed)

    def __len__(self) -> int:
        """Number of refs, i.e. samples per epoch (the stream itself is infinite)."""
        return len(self._groups)

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self):
        g = torch.Generator()
        g.manual_seed(self._seed)
        for epoch in itertools.count():
            if self._shuffle:
                order = torch.randperm(len(self._groups), generator=g).tolist()
                picks = torch.randint(0, 1 << 30, (len(self._groups),), generator=g).tolist()
                for r in order:
                    grp = self._groups[r]
                    yield grp[picks[r] % len(grp)]
            else:
                for grp in self._groups:
                    yield grp[epoch % len(grp)]
