"""Loaders whose split across DDP ranks does not depend on how the Trainer is configured.

Lightning's ``Trainer(use_distributed_sampler=True)`` (its default) replaces the sampler of every
map-style DataLoader by a ``DistributedSampler`` under DDP. Aframe's datasets are already split
by rank when they are built (each rank's validation dataset is its own share of the
timeslides; each training "batch" is drawn on the device), so a second split would silently
drop half of each rank's share (and pad by repeating batches): a different validation score
from the same checkpoint. Iterable datasets are never given a sampler, so
:class:`RankBatches` wraps the per-rank map-style datasets and the split stays the Dataset's,
under any Trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


class RankBatches(torch.utils.data.IterableDataset):
    """Yield the items of a map-style dataset of whole batches, in order, exactly once.

    Load it with ``DataLoader(RankBatches(batches), batch_size=None)``. With DataLoader workers,
    worker ``k`` of ``n`` yields items ``k, k + n, ...``, so every item is still yielded once
    (in a different order; aframe's metric does not depend on the order).

    Args:
        batches: A map-style dataset (``__len__`` and ``__getitem__``) whose items are this
            rank's batches, e.g. :class:`~aframe_lib.data.timeslides.TimeslideWindows`.
    """

    def __init__(self, batches: Any) -> None:
        super().__init__()
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        first, step = (0, 1) if info is None else (info.id, info.num_workers)
        for i in range(first, len(self.batches), step):
            yield self.batches[i]
