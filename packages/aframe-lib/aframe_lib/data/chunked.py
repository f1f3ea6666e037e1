"""Chunked training data: host memory per rank bounded by ``data.max_memory``, not by the data.

``max_memory`` holds everything the Dataset keeps in host memory: the validation (or test) set,
held for the whole run, is set aside first, and the chunk buffers and training waveforms fit in
what is left.

Each background segment is tiled into chunks of ``chunk_length`` seconds that overlap by one
window minus a sample, so every window start belongs to exactly one chunk. Every epoch, all ranks
draw the same set of chunks (seeded by ``data.seed`` and the epoch) and deal it out, so each rank
reads a disjoint share. A rank reads its share in *loads* of a few chunks: a background thread
reads the next load from HDF5 into (pinned, on GPU) host memory while the current one, copied to
the training device, serves its batches. At most two loads are held in host memory.

Uniformity: chunks are drawn by systematic sampling with inclusion probability proportional to
their number of window starts (:func:`select_chunks`); a window then picks one of the loaded
chunks uniformly and a start uniformly inside it (:class:`~aframe_lib.data.sampling.ChunkSampler`).
So every start of every segment is equally likely, and a segment's share of windows is
proportional to its usable length, as in the in-memory path. IFOs are drawn independently.

Training waveforms larger than a quarter of ``max_memory`` are read the same way: each load
carries a fresh random subset (contiguous runs of rows, which are i.i.d. draws of the prior).

Why not ``ml4gw.dataloading`` as is: ``Hdf5TimeSeriesDataset`` reads every window of every batch
from disk (one h5py read per window and IFO), weights files by length rather than by usable
length, and has no notion of DDP ranks; ``ChunkedTimeSeriesDataset`` samples rows of equal length
with a start drawn from ``[0, size - kernel)`` (never the last start), so segments shorter than a
chunk, or the remainder of a segment, cannot be rows without biasing the draw. Its iterator
pattern (a chunk iterator feeding on-device window sampling) is the one used here.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..utils.fs import filesystem, is_remote
from .background import BackgroundSegment, _check_rows, _open
from .config import DataConfigError
from .sampling import ChunkSampler
from .waveforms import read_waveforms

logger = logging.getLogger(__name__)

GiB = 2**30
_BYTES = 4  # float32
_WAVEFORM_SHARE = 0.25  # of max_memory, for training waveforms in the chunked path
_RUNS = 8  # contiguous runs of rows per waveform subset


@dataclass(frozen=True)
class ChunkTable:
    """Chunks of every segment: chunk ``i`` of segment ``segment[i]`` holds the window starts
    ``[first[i], first[i] + starts[i])`` and so samples ``[first[i], first[i] + starts[i] +
    sample_size - 1)``.
    """

    segment: np.ndarray
    first: np.ndarray
    starts: np.ndarray

    @classmethod
    def tile(cls, sizes: Sequence[int], sample_size: int, chunk_size: int) -> ChunkTable:
        """Tile segments of ``sizes`` samples into chunks of at most ``chunk_size`` samples."""
        stride = chunk_size - sample_size + 1
        if stride < 1:
            raise ValueError(f"chunks of {chunk_size} samples hold no {sample_size}-sample window")
        segment, first, starts = [], [], []
        for k, n in enumerate(sizes):
            total = n - sample_size + 1
            if total < 1:
                raise ValueError(f"segment {k} ({n} samples) is shorter than one window")
            lo = np.arange(0, total, stride)
            segment.append(np.full(len(lo), k))
            first.append(lo)
            starts.append(np.minimum(stride, total - lo))
        return cls(*(np.concatenate(a).astype(np.int64) for a in (segment, first, starts)))

    def __len__(self) -> int:
        return len(self.starts)


def select_chunks(starts: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``num`` distinct chunks, chunk ``i`` with probability exactly ``num * starts[i] / N``.

    Systematic sampling with probability proportional to size: lay the chunks out in random
    order as intervals of their lengths on ``[0, N)`` and take the ones hit by ``num`` points
    spaced ``N / num`` apart from a uniform offset. Needs ``num * max(starts) <= N``, so that no
    interval is hit twice.
    """
    total = int(starts.sum())
    if num < 1 or num * int(starts.max()) > total:
        raise ValueError(f"cannot draw {num} distinct chunks in proportion to {starts}")
    order = rng.permutation(len(starts))
    edges = np.cumsum(starts[order])
    step = total / num
    points = rng.uniform(0, step) + step * np.arange(num)
    return order[np.searchsorted(edges, points, side="right")]


def plan_epoch(
    starts: np.ndarray, num: int, seed: int, epoch: int, rank: int, world_size: int
) -> np.ndarray:
    """This rank's ``num`` chunks of ``epoch``: one draw shared by all ranks, dealt out."""
    rng = np.random.default_rng([seed, epoch])
    picked = select_chunks(starts, num * world_size, rng)
    rng.shuffle(picked)
    return picked[rank::world_size]


@dataclass(frozen=True)
class ChunkBudget:
    """How many chunks a rank holds (per load) and reads (loads per epoch), and how many
    training waveforms per load (``None``: all of them, held once)."""

    chunks_per_load: int
    loads_per_epoch: int
    waveform_rows: int | None

    @classmethod
    def plan(
        cls,
        *,
        max_memory: float,
        chunk_size: int,
        num_ifos: int,
        table: ChunkTable,
        chunks_per_epoch: int | None,
        world_size: int,
        batches_per_rank: int,
        num_waveforms: int,
        waveform_size: int,
        reserved_bytes: int = 0,
    ) -> ChunkBudget:
        """Fit two loads (the one in use and the next) and the waveforms into ``max_memory`` GiB
        less ``reserved_bytes`` (the validation data, held for the whole run).

        Raises:
            DataConfigError: naming ``max_memory`` or ``chunk_length`` when nothing fits.
        """
        budget = max_memory * GiB - reserved_bytes
        if budget <= 0:
            raise DataConfigError(
                f"data.max_memory={max_memory!r}: the validation data alone hold "
                f"{reserved_bytes / GiB:.3g} GiB; raise max_memory or lower data.valid_livetime"
                " (or data.max_valid_waveforms)"
            )
        row = 2 * waveform_size * _BYTES
        rows: int | None = None
        waveform_bytes = num_waveforms * row
        if waveform_bytes > _WAVEFORM_SHARE * budget:
            rows = min(num_waveforms, int(_WAVEFORM_SHARE * budget // (2 * row)))
            if rows < 1:
                raise DataConfigError(
                    f"data.max_memory={max_memory!r}: a quarter of it holds no training "
                    f"waveform ({row / GiB:.3g} GiB each); raise max_memory"
                )
            waveform_bytes = 2 * rows * row
        chunk_bytes = num_ifos * chunk_size * _BYTES
        per_load = int((budget - waveform_bytes) // (2 * chunk_bytes))
        if per_load < 1:
            raise DataConfigError(
                f"data.max_memory={max_memory!r}: holds no two background chunks of "
                f"{chunk_bytes / GiB:.3g} GiB besides {waveform_bytes / GiB:.3g} GiB of "
                "waveforms; raise max_memory or lower data.chunk_length"
            )
        # distinct chunks drawn in proportion to their length (select_chunks): at most N / stride
        stride = int(table.starts.max())
        per_rank_cap = int(table.starts.sum()) // stride // world_size
        if per_rank_cap < 1:
            raise DataConfigError(
                f"data.chunk_length: the training background holds fewer than {world_size} "
                "full chunks (one per rank); lower chunk_length or set "
                "data.background_loading: memory"
            )
        wanted = min(chunks_per_epoch or per_load, per_rank_cap)
        loads = min(math.ceil(wanted / per_load), batches_per_rank)
        return cls(min(per_load, wanted // loads), loads, rows)


class Load(NamedTuple):
    """One load: chunks ``(M, num_ifos, chunk_size)``, their start counts ``(M,)``, and the
    waveform subset ``(rows, 2, T)`` (cross, plus) or ``None``."""

    chunks: Tensor
    counts: Tensor
    waveforms: Tensor | None


def read_chunks(
    segments: Sequence[BackgroundSegment],
    ifos: Sequence[str],
    table: ChunkTable,
    ids: np.ndarray,
    sample_size: int,
    chunk_size: int,
    pin: bool = False,
) -> tuple[Tensor, Tensor]:
    """Read chunks ``ids`` of ``table`` into one float32 tensor (zero-padded, pinned if asked).

    Only these chunks' samples are read, so an ``s3://`` file is streamed (ranged reads through
    s3fs), never copied whole. Raises naming the file, IFO and GPS time of a non-finite sample.
    """
    # filled through numpy: no torch kernel runs in the reader thread (a second OpenMP team
    # beside the training thread's would compete with it for the cores)
    out = torch.empty((len(ids), len(ifos), chunk_size), dtype=torch.float32, pin_memory=pin)
    view = out.numpy()
    order = sorted(range(len(ids)), key=lambda i: (table.segment[ids[i]], table.first[ids[i]]))
    remote = [s.path for s in segments if is_remote(s.path)]
    fs = filesystem(remote[0])[0] if remote else None  # one S3 client per load
    for k, rows in itertools.groupby(order, key=lambda i: table.segment[ids[i]]):
        segment = segments[k]
        with _open(segment.path, fs) as f:  # one open per segment
            for i in rows:
                lo = int(table.first[ids[i]])
                hi = lo + int(table.starts[ids[i]]) + sample_size - 1
                for j, ifo in enumerate(ifos):
                    f[ifo].read_direct(view[i, j], np.s_[lo:hi], np.s_[0 : hi - lo])
                _check_rows(segment.path, ifos, view[i, :, : hi - lo], segment.t0,
                            segment.sample_rate, lo)  # fmt: skip
                view[i, :, hi - lo :] = 0.0  # padding, never sampled
    return out, torch.as_tensor(table.starts[ids])


def waveform_shape(path: str, sample_rate: float) -> tuple[int, int, float]:
    """``(rows, samples per row, coalescence_time)`` of a waveform file, reading one row.

    The file is checked as :func:`~aframe_lib.data.waveforms.read_waveforms` checks it.
    """
    from .waveforms import _open as open_waveforms

    first = read_waveforms(path, 0, 1, sample_rate=sample_rate)
    with open_waveforms(path) as f:
        num, size = f["waveforms/plus"].shape
    return int(num), int(size), first.coalescence_time


def read_waveform_subset(
    path: str, num_waveforms: int, rows: int, sample_rate: float, rng: np.random.Generator
) -> Tensor:
    """``rows`` training waveforms ``(rows, 2, T)`` (cross, plus) from random contiguous runs."""
    run = math.ceil(rows / _RUNS)
    parts = []
    for lo in rng.integers(0, num_waveforms - run + 1, size=math.ceil(rows / run)):
        w = read_waveforms(path, int(lo), int(lo) + run, sample_rate=sample_rate)
        parts.append(np.stack([w.cross, w.plus], 1))
    return torch.as_tensor(np.concatenate(parts)[:rows])


class ChunkedTrainingData(torch.utils.data.IterableDataset):
    """This rank's training batches of raw background windows, sampled on ``device``.

    Yields ``(X, waveforms)`` per batch: ``X`` ``(batch_size, num_ifos, sample_size)`` on
    ``device`` and the current waveform subset on ``device`` (``None`` when all waveforms are
    held in memory by the Dataset). Load it with ``DataLoader(data, batch_size=None)``.

    Args:
        segments: Training segments (validated).
        ifos: Rows to read, in channel order.
        sample_size: Window length (samples).
        chunk_size: Chunk length (samples).
        budget: Chunks per load, loads per epoch, waveform rows per load.
        batch_size: Windows per batch.
        batches: Batches per epoch on this rank.
        rank: This rank; ranks read disjoint chunks.
        world_size: Number of ranks.
        seed: Seed of the chunk draw (the same on every rank).
        waveform_file: ``waveforms.hdf5``, read per load when ``budget.waveform_rows`` is set.
        num_waveforms: Rows of ``waveform_file``.
        sample_rate: Hz.
        epoch_fn: Returns the current epoch (e.g. the trainer's); ``None`` counts iterations.
    """

    def __init__(
        self,
        segments: Sequence[BackgroundSegment],
        ifos: Sequence[str],
        sample_size: int,
        chunk_size: int,
        table: ChunkTable,
        budget: ChunkBudget,
        batch_size: int,
        batches: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        waveform_file: str | None = None,
        num_waveforms: int = 0,
        sample_rate: float = 2048.0,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        self.segments, self.ifos = list(segments), list(ifos)
        self.sample_size, self.chunk_size, self.table, self.budget = (
            sample_size,
            chunk_size,
            table,
            budget,
        )
        self.batch_size, self.batches = batch_size, batches
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.waveform_file, self.num_waveforms, self.sample_rate = (
            waveform_file,
            num_waveforms,
            sample_rate,
        )
        self.epoch_fn = epoch_fn
        self.device = torch.device("cpu")
        self.sampler: ChunkSampler | None = None  # the load in use, on self.device
        self._iterations = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[tuple[int, int], Future] | None = None

    def __len__(self) -> int:
        return self.batches

    def chunk_ids(self, epoch: int) -> np.ndarray:
        """This rank's chunks of ``epoch``, ``(loads_per_epoch, chunks_per_load)``."""
        b = self.budget
        num = b.chunks_per_load * b.loads_per_epoch
        ids = plan_epoch(self.table.starts, num, self.seed, epoch, self.rank, self.world_size)
        return ids.reshape(b.loads_per_epoch, b.chunks_per_load)

    def read(self, epoch: int, load: int) -> Load:
        """Read one load into host memory (pinned when the device is a GPU)."""
        pin = self.device.type == "cuda"
        ids = self.chunk_ids(epoch)[load]
        chunks, counts = read_chunks(
            self.segments, self.ifos, self.table, ids, self.sample_size, self.chunk_size, pin
        )
        waveforms = None
        if self.budget.waveform_rows:
            subset = self.waveform_subset(epoch, load)
            waveforms = torch.empty(subset.shape, dtype=subset.dtype, pin_memory=pin)
            waveforms.numpy()[:] = subset.numpy()
        return Load(chunks, counts, waveforms)

    def waveform_subset(self, epoch: int, load: int) -> Tensor:
        """The training waveforms of one load, ``(waveform_rows, 2, T)`` (cross, plus)."""
        rng = np.random.default_rng([self.seed, epoch, load, self.rank])
        rows = self.budget.waveform_rows or self.num_waveforms
        return read_waveform_subset(
            self.waveform_file, self.num_waveforms, rows, self.sample_rate, rng
        )

    def _prefetch(self, key: tuple[int, int]) -> None:
        if self._pending is not None and self._pending[0] == key:
            return
        self._drop_pending()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="aframe-chunks")
        self._pending = (key, self._pool.submit(self.read, *key))

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None

    def _take(self, key: tuple[int, int]) -> Load:
        self._prefetch(key)
        _, future = self._pending
        self._pending = None
        return future.result()

    def close(self) -> None:
        """Stop the background reader (a later iteration starts a new one)."""
        self._drop_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _activate(self, load: Load) -> Tensor | None:
        chunks = load.chunks.to(self.device, non_blocking=True)
        self.sampler = ChunkSampler(chunks, load.counts.to(self.device), self.sample_size)
        if load.waveforms is None:
            return None
        return load.waveforms.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else self._iterations
        self._iterations += 1
        loads = self.budget.loads_per_epoch
        current = -1
        waveforms = None
        for b in range(self.batches):
            j = b * loads // self.batches
            if j != current:
                load = self._take((epoch, j))
                # read the next load (this epoch's next, or the next epoch's first) meanwhile
                self._prefetch((epoch, j + 1) if j + 1 < loads else (epoch + 1, 0))
                waveforms, current = self._activate(load), j
                del load
            yield self.sampler(self.batch_size), waveforms

    def example_sampler(self, device: torch.device) -> ChunkSampler:
        """The sampler of the load in use on ``device``, or of the first load of epoch 0."""
        if self.sampler is None or self.sampler.chunks.device != device:
            chunks, counts, _ = self.read(0, 0)
            return ChunkSampler(chunks.to(device), counts.to(device), self.sample_size)
        return self.sampler
