"""A DistributedSampler that can start part-way through an epoch, for exact mid-epoch resumption.

The order of an epoch is a pure function of (seed, epoch) (DistributedSampler's seeded permutation); `set_start`
drops the samples of the batches a resumed run has already trained on.
"""
from __future__ import annotations

import itertools
from typing import Iterator

from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """DistributedSampler (works without a process group: rank and world size are explicit) plus a start offset."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int,
                 drop_last: bool) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_start(self, samples_done: int) -> None:
        """Skip the first `samples_done` samples of this process's share of the current epoch."""
        self.start = samples_done

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
