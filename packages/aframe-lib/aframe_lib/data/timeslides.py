"""Timeslides: shift the IFOs against each other to build background livetime.

A :class:`Timeslide` shifts IFO ``i`` of one segment by ``shifts[i]`` samples, so any
coincidence between IFOs in the shifted data is accidental: it is pure background. Shifting by
many different amounts turns a few hours of held-out strain into days of background livetime.

This module is the one definition of a timeslide, shared by validation and evaluation:
:func:`shift_schedule` (IFO ``i`` by ``i * k * step``, ``k = 1, -1, 2, -2, ...``),
:func:`overlap` (where every shifted IFO has data) and :func:`choose_timeslides` (which
timeslides, in which order, until a livetime is covered). Validation uses them through
:func:`make_timeslides` (livetime: the samples of overlap) and :class:`TimeslideWindows`, which
cuts the shifted segments into the batches of windows the model scores; the search
(:func:`aframe_lib.search.timeslides.timeslide_spans`) applies the same timeslides to spans of
strain, with the search's own livetime (its integrated outputs).

Indexing convention (samples). For a timeslide with shifts ``s`` of a segment of length ``N``:

- ``offset = -min(s)`` (``>= 0``, since ``s[0] == 0``),
- ``size = N - (max(s) - min(s))`` (the shifted overlap; ``N - max|s|`` because every non-zero
  shift of one timeslide has the same sign),
- sample ``t`` of the timeslide, ``0 <= t < size``, is ``background[j, offset + s[j] + t]`` for
  IFO ``j``. So a positive shift reads IFO ``j`` *later* than IFO 0; no index leaves ``[0, N)``
  and no data is wrapped around or invented.

Window ``w`` of a timeslide covers timeslide samples ``[w * stride, w * stride + window_size)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Timeslide:
    """One shifted copy of a validation segment.

    Args:
        segment: index of the validation segment (into the list of background segments).
        shifts: per-IFO shift in samples; ``shifts[0] == 0`` and at least one is non-zero.
        size: samples of overlap once shifted, the usable length (see the module docstring).
    """

    segment: int
    shifts: tuple[int, ...]
    size: int

    def __post_init__(self):
        if not self.shifts or self.shifts[0] != 0 or not any(self.shifts):
            raise ValueError(
                f"Timeslide shifts must start with 0 (IFO 0 is the reference) and not all be "
                f"zero, got shifts={self.shifts}"
            )
        if self.size < 0:
            raise ValueError(f"Timeslide size must be >= 0, got size={self.size}")

    @classmethod
    def of(cls, segment: int, segment_size: int, shifts: Sequence[int]) -> Timeslide | None:
        """The timeslide ``shifts`` of a segment of ``segment_size`` samples (``None``: no
        sample where every shifted IFO has data)."""
        size = overlap(segment_size, shifts)[1]
        return cls(segment, tuple(shifts), size) if size > 0 else None

    @property
    def offset(self) -> int:
        """Samples to add to every IFO's index so that negative shifts stay in bounds."""
        return overlap(self.size, self.shifts)[0]

    def livetime(self, sample_rate: float) -> float:
        """Background livetime of this timeslide in seconds, given the sample rate in Hz."""
        return self.size / sample_rate


def overlap(size: int, shifts: Sequence[int]) -> tuple[int, int]:
    """``(offset, length)`` of the stretch of a ``size``-sample segment where every IFO, IFO
    ``j`` read ``shifts[j]`` samples later than IFO 0, has data: IFO 0's sample ``offset`` is
    the first (``-min(shifts)`` when ``shifts[0] == 0``); ``length <= 0`` means none."""
    offset = -min(min(shifts), 0)
    return offset, size - (max(max(shifts), 0) + offset)


def _multipliers() -> Iterator[int]:
    """1, -1, 2, -2, 3, -3, ..."""
    for k in itertools.count(1):
        yield k
        yield -k


def shift_schedule(num_ifos: int, step_size: int) -> Iterator[tuple[int, ...]]:
    """Per-IFO shifts in samples, in the order timeslides are made: IFO ``i`` by
    ``i * k * step_size`` for ``k = 1, -1, 2, -2, ...`` (endless)."""
    for k in _multipliers():
        yield tuple(i * k * step_size for i in range(num_ifos))


def choose_timeslides(
    segment_sizes: Sequence[int],
    num_ifos: int,
    step_size: int,
    livetime: float,
    livetime_of: Callable[[Timeslide], float],
    max_shifts: int | None = None,
) -> tuple[list[Timeslide], float]:
    """Timeslides of the segments, in order, until their livetime first reaches ``livetime``.

    For each shift of :func:`shift_schedule`, every segment is used in turn; a timeslide with
    no overlap or no livetime (``livetime_of(ts) <= 0``) is skipped. It stops once ``livetime``
    is covered (the last timeslide is needed), after the first shift that gives no timeslide
    at all (larger shifts only shorten the overlaps further), or after ``max_shifts`` shifts.

    Returns:
        The timeslides and their summed livetime (less than ``livetime`` when it ran out).
    """
    chosen: list[Timeslide] = []
    covered = 0.0
    for n, shifts in enumerate(shift_schedule(num_ifos, step_size)):
        if max_shifts is not None and n >= max_shifts:
            break
        added = False
        for segment, size in enumerate(segment_sizes):
            timeslide = Timeslide.of(segment, size, shifts)
            if timeslide is None or (live := livetime_of(timeslide)) <= 0:
                continue
            chosen.append(timeslide)
            covered += live
            added = True
            if covered >= livetime:
                return chosen, covered
        if not added:
            break
    return chosen, covered


def make_timeslides(
    segment_sizes: Sequence[int],
    num_ifos: int,
    sample_rate: float,
    livetime: float,
    step: float,
    min_size: int,
) -> list[Timeslide]:
    """Choose timeslides of the validation segments until they cover ``livetime``.

    IFO ``i`` is shifted by ``i * k * step`` with ``k = 1, -1, 2, -2, ...``; for each ``k`` every
    segment is used in turn (:func:`choose_timeslides`). A shift shortens the usable overlap of a
    segment (the shifts are not circular), and timeslides shorter than ``min_size`` samples are
    skipped. A timeslide's livetime is its overlap in seconds. Timeslides are added until their
    summed livetime first reaches ``livetime``, so the last one is needed.

    Callers should choose ``step`` larger than the light travel time between the IFOs plus the
    kernel length, so that a real signal can never line up with itself in two shifted IFOs
    within one window.

    Args:
        segment_sizes: length in samples of each validation segment.
        num_ifos: number of interferometers (at least 2: one IFO cannot be shifted).
        sample_rate: sample rate in Hz.
        livetime: background livetime to cover, in seconds (``valid_livetime``).
        step: shift step in seconds; must be > 0 and at least one sample.
        min_size: shortest usable timeslide in samples (e.g. one validation window).

    Returns:
        The timeslides, in the order they were chosen.

    Raises:
        ValueError: on invalid arguments, or when even every usable shift of every segment
            cannot cover ``livetime``.
    """
    if num_ifos < 2:
        raise ValueError(f"Timeslides need at least 2 IFOs, got num_ifos={num_ifos}")
    if not segment_sizes:
        raise ValueError("Timeslides need at least one validation segment, got none")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0 Hz, got {sample_rate}")
    if livetime <= 0:
        raise ValueError(f"valid_livetime must be > 0 seconds, got {livetime}")
    step_size = round(step * sample_rate)
    if step <= 0 or step_size < 1:
        raise ValueError(
            f"Timeslide step must be > 0 and at least one sample (1/{sample_rate} s), got "
            f"step={step}; choose step > light travel time + kernel length"
        )
    min_size = max(int(min_size), 1)

    def livetime_of(timeslide: Timeslide) -> float:
        return timeslide.livetime(sample_rate) if timeslide.size >= min_size else 0.0

    timeslides, covered = choose_timeslides(
        segment_sizes, num_ifos, step_size, livetime, livetime_of
    )
    if covered >= livetime:
        return timeslides
    raise ValueError(
        f"valid_livetime={livetime} s cannot be reached: every timeslide of the "
        f"{len(segment_sizes)} validation segment(s) ({sum(segment_sizes) / sample_rate:.1f} s) "
        f"with step={step} s and windows of at least {min_size} samples gives only "
        f"{covered:.1f} s. Lower valid_livetime to at most {math.floor(covered)}, use a smaller "
        f"step, or hold out more (or longer) validation background."
    )


class TimeslideWindows(torch.utils.data.Dataset):
    """Map-style dataset of validation batches: batch ``i`` -> ``(X, shift_id, index)``.

    Every window of every timeslide is enumerated in order (timeslide, then window). The flat
    list is cut into ``world_size`` contiguous blocks of equal length, the last one padded with
    copies of windows marked ``shift_id = -1`` (the metric drops them), so every rank has the
    same number of equally sized batches (no DDP hang) and no window is lost or scored twice.
    Only the last batch of a rank may be shorter than ``batch_size``, and it is equally short
    on every rank.

    Items are whole batches and each rank is already given its own share: load it with
    ``DataLoader(RankBatches(dataset), batch_size=None)`` (:mod:`~aframe_lib.data.loaders`), an
    iterable dataset, so that no Trainer adds a ``DistributedSampler`` (which would split the
    batches again and pad by duplicating them), whatever its ``use_distributed_sampler``.

    Args:
        background: validation segments, each of shape ``(num_ifos, N_segment)``, in strain
            units; converted to float32 tensors (no copy when they already are).
        timeslides: the timeslides to enumerate (from :func:`make_timeslides`).
        window_size: window length in samples.
        stride: samples between the starts of consecutive windows of one timeslide.
        batch_size: windows per batch.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of processes sharing the validation set.

    Each item is a tuple of:

    - ``X``: float32 ``(B, num_ifos, window_size)``, the windows;
    - ``shift_id``: int64 ``(B,)``, the index of the window's timeslide in ``timeslides``
      (``-1`` for padding);
    - ``index``: int64 ``(B,)``, the window's index ``w`` within its timeslide (``-1`` for
      padding).
    """

    def __init__(
        self,
        background: Sequence[torch.Tensor | np.ndarray],
        timeslides: Sequence[Timeslide],
        window_size: int,
        stride: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        for name, value in [("window_size", window_size), ("stride", stride)]:
            if value < 1:
                raise ValueError(f"{name} must be >= 1 sample, got {value}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"Need 0 <= rank < world_size, got rank={rank}, {world_size=}")
        self.background = [torch.as_tensor(x).to(torch.float32) for x in background]
        self.timeslides = list(timeslides)
        self.window_size, self.stride, self.batch_size = window_size, stride, batch_size
        self.rank, self.world_size = rank, world_size
        if len({len(ts.shifts) for ts in self.timeslides}) > 1:
            raise ValueError("All timeslides must shift the same number of IFOs")
        for i, ts in enumerate(self.timeslides):
            self._check(i, ts)

        counts = [max(ts.size - window_size, -1) // stride + 1 for ts in self.timeslides]
        if sum(counts) == 0:
            raise ValueError(
                f"No timeslide is long enough for one window of {window_size} samples; "
                f"pass min_size >= window_size to make_timeslides"
            )
        # first flat window id of each timeslide, and the total
        self._starts = torch.tensor(np.cumsum([0] + counts), dtype=torch.int64)
        self.num_windows = int(self._starts[-1])
        self.windows_per_rank = math.ceil(self.num_windows / world_size)
        self.num_batches = math.ceil(self.windows_per_rank / batch_size)

    def _check(self, i: int, ts: Timeslide) -> None:
        if not 0 <= ts.segment < len(self.background):
            raise ValueError(
                f"timeslides[{i}].segment={ts.segment} but there are "
                f"{len(self.background)} background segments"
            )
        x = self.background[ts.segment]
        span = max(ts.shifts) - min(ts.shifts)
        if x.ndim != 2 or x.shape[0] != len(ts.shifts) or ts.size + span > x.shape[1]:
            raise ValueError(
                f"timeslides[{i}] (shifts={ts.shifts}, size={ts.size}) does not fit background "
                f"segment {ts.segment} of shape {tuple(x.shape)}: need (num_ifos, N) with "
                f"num_ifos={len(ts.shifts)} and N >= {ts.size + span}"
            )

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.num_batches:
            raise IndexError(f"batch {i} out of range for {self.num_batches} batches")
        first = self.rank * self.windows_per_rank + i * self.batch_size
        last = min(first + self.batch_size, (self.rank + 1) * self.windows_per_rank)
        flat = torch.arange(first, last)
        padding = flat >= self.num_windows
        flat = flat % self.num_windows  # padding copies real windows from the start

        shift_id = torch.searchsorted(self._starts, flat, right=True) - 1
        index = flat - self._starts[shift_id]
        device = self.background[0].device
        X = torch.empty((len(flat), *self._shape), dtype=torch.float32, device=device)
        # one vectorised gather per (timeslide in this batch, IFO): never a loop over samples
        for t in torch.unique(shift_id).tolist():
            rows = (shift_id == t).nonzero().squeeze(1)
            X[rows] = self._windows(self.timeslides[t], index[rows])
        shift_id[padding], index[padding] = -1, -1
        return X, shift_id, index

    @property
    def _shape(self) -> tuple[int, int]:
        return (len(self.timeslides[0].shifts), self.window_size)

    def _windows(self, ts: Timeslide, index: torch.Tensor) -> torch.Tensor:
        """Windows ``index`` of timeslide ``ts``, shape ``(len(index), num_ifos, window_size)``."""
        x = self.background[ts.segment]
        ifos = []
        for j, shift in enumerate(ts.shifts):
            start = ts.offset + shift
            # a strided view of all windows of this IFO; indexing copies only the ones needed
            unfolded = x[j, start : start + ts.size].unfold(0, self.window_size, self.stride)
            ifos.append(unfolded[index])
        return torch.stack(ifos, dim=1)
