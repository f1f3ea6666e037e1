"""The offline search run incrementally: strain in, one second at a time; events out.

:class:`OnlineSearch` wraps a :class:`~aframe_lib.search.pipeline.Search` (the same object
``aframe-train search`` runs, built from the same ``model.json`` and
:class:`~aframe_lib.search.settings.SearchSettings`) and reuses its parts unchanged: the
:class:`~aframe_lib.search.whitening.StreamingWhitener` (PSD policy, whitening), the network
backend, :func:`~aframe_lib.search.events.integrate` and
:func:`~aframe_lib.search.events.peak_offsets`. Only the order of the work changes:

- A *segment* is a stretch of contiguous strain, the online twin of an offline span. Window
  ``k`` of a segment starts at its sample ``k * stride``, exactly as in a span, and is whitened
  with the PSD the offline search gives it (:meth:`StreamingWhitener.psd_of`). The first
  windows of a span are whitened with the PSD of the ``psd.length`` seconds that follow the
  span's start, so the first outputs of a segment come once ``psd.length`` seconds have
  arrived; after that every window is scored as soon as its samples are there.
- Clustering is :func:`~aframe_lib.search.events.find_events` made causal
  (:class:`Clusterer`): its kept set is the unique set in which a candidate is kept if and only
  if no kept candidate within ``cluster_window / 2`` is louder, so a candidate is decided as
  soon as every louder candidate near it is decided and no unseen sample can be a candidate
  within its window. The decisions equal the offline ones.
- A gap (a missing or late frame, NaNs, a not-ready state vector) ends the segment: its last
  candidates are decided as the offline search decides them at the end of a span, and the next
  data start a new segment. After a gap of at most ``psd.length`` seconds whitening carries
  over: the segment's last :attr:`Search.carry_size` samples are put before the new one (as
  :meth:`Search.link` does offline), so its first windows are scored as soon as their own
  samples are there. After a longer gap whitening restarts from a fresh PSD, as the offline
  search restarts at such a span, and the new segment's first outputs wait for ``psd.length``
  seconds of it. So on the same strain, split at the same gaps, the events are the offline
  search's (times to float rounding, stats to ~1e-6), which tests check for both gaps.

Memory is bounded: the strain kept is what the next window and its PSD need, the outputs kept
are those of the integration window and of the undecided candidates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from aframe_lib.search.events import Events, integrate, peak_offsets
from aframe_lib.search.pipeline import Search

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One online event: GPS time (s), statistic, timing uncertainty (s)."""

    time: float
    stat: float
    var: float


class Clusterer:
    """:func:`~aframe_lib.search.events.find_events`, decided as the statistic streams in.

    Feed the integrated statistic with :meth:`extend`; :meth:`finish` marks the end of the
    data (the right edge :func:`find_events` pads with ``-inf``). Each returns the newly kept
    events as ``(index, stat, offset)``: the index in the segment's statistic, its value and
    the interpolated offset (:func:`~aframe_lib.search.events.peak_offsets`, in steps), in
    time order per call.

    Args:
        threshold: ``None`` keeps every local maximum.
        cluster_size: window in samples (every kept event is the loudest within
            ``cluster_size / 2`` samples either side).
    """

    def __init__(self, threshold: float | None, cluster_size: int) -> None:
        self.threshold = threshold
        self.radius = cluster_size / 2
        self.stats = np.zeros(0)  # stat[base:known]
        self.base = 0
        self.known = 0
        self.undecided: list[int] = []
        self.kept: list[tuple[int, float]] = []  # recent kept (index, stat), for suppression
        self.ended = False

    def _stat(self, i: int) -> float:
        return float(self.stats[i - self.base])

    def extend(self, values: np.ndarray) -> list[tuple[int, float, float]]:
        values = np.asarray(values, np.float64)
        if not len(values):
            return []
        old = self.known
        self.stats = np.concatenate([self.stats, values])
        self.known += len(values)
        # candidates whose right neighbour is now known: indices [old - 1, known - 2]
        for i in range(max(old - 1, 0), self.known - 1):
            self._consider(i, right=self._stat(i + 1))
        return self._decide()

    def finish(self) -> list[tuple[int, float, float]]:
        """End of the data: the last sample may be a peak; every candidate is decided."""
        if self.known and not self.ended:
            self._consider(self.known - 1, right=-math.inf)
        self.ended = True
        return self._decide()

    def _consider(self, i: int, right: float) -> None:
        s = self._stat(i)
        left = self._stat(i - 1) if i > 0 else -math.inf
        if s >= left and s > right and (self.threshold is None or s > self.threshold):
            self.undecided.append(i)

    def _louder(self, j: int, sj: float, i: int, si: float) -> bool:
        return sj > si or (sj == si and j < i)  # find_events' stable loudest-first order

    def _decide(self) -> list[tuple[int, float, float]]:
        new: list[int] = []
        changed = True
        while changed and self.undecided:
            changed = False
            order = sorted(self.undecided, key=lambda i: (-self._stat(i), i))
            for i in order:
                si = self._stat(i)
                r = self.radius
                if any(abs(j - i) < r and self._louder(j, sj, i, si) for j, sj in self.kept):
                    self.undecided.remove(i)  # suppressed by a louder kept event
                    changed = True
                    continue
                if any(
                    abs(j - i) < r and self._louder(j, self._stat(j), i, si) for j in self.undecided
                ):
                    continue  # waits for that louder candidate's fate
                # every candidate that could lie within the window has been seen?
                if self.ended or self.known >= math.ceil(i + self.radius) + 1:
                    self.undecided.remove(i)
                    self.kept.append((i, si))
                    new.append(i)
                    changed = True
        new.sort()
        out = [(i, self._stat(i), self._offset(i)) for i in new]
        self._trim()
        return out

    def _offset(self, i: int) -> float:
        lo = max(i - 1, self.base)  # peak_offsets keeps the sample time at either end
        window = self.stats[lo - self.base : i + 2 - self.base]
        return float(peak_offsets(window, np.array([i - lo]))[0])

    def _trim(self) -> None:
        keep_from = min([*self.undecided, self.known - 1]) - 1
        keep_from = max(keep_from, self.base)
        if keep_from > self.base:
            self.stats = self.stats[keep_from - self.base :]
            self.base = keep_from
        horizon = min([*self.undecided, self.known]) - self.radius - 1
        self.kept = [(j, s) for j, s in self.kept if j >= horizon]


class OnlineSearch:
    """A :class:`Search` fed contiguous strain as it arrives (see the module docstring).

    Args:
        search: the search (its network, whitener and settings are used as they are).

    Attributes:
        livetime: seconds searched so far (the offline search's livetime of the same segments).
    """

    def __init__(self, search: Search) -> None:
        self.search = search
        self.livetime = 0.0
        self.segments = 0
        self.t0: float | None = None
        # the last segment's end time, rate and last carry_size samples (model rate)
        self.carry: tuple[float, float, np.ndarray] | None = None

    @property
    def expected(self) -> float | None:
        """GPS time of the next sample the current segment wants (``None``: no segment)."""
        if self.t0 is None:
            return None
        return self.end_time

    def _start(self, t0: float, rate: float) -> None:
        s = self.search
        self.t0 = self.end_time = t0
        self.rate_in = rate
        self.factor = 1
        if not math.isclose(rate, s.sample_rate):
            from aframe_lib.search.strain import resample_factor

            self.factor = resample_factor(f"strain at GPS {t0}", rate, s.sample_rate)
        # stored samples (at rate_in) not yet resampled: raw[:, i] is stored sample raw0 + i
        self.raw = np.zeros((len(s.ifos), 0), np.float32)
        self.raw0 = self.raw_size = self.resampled = 0
        self.size = 0
        self.offset = 0  # stream index of self.buffer's first sample
        self.buffer = np.zeros((len(s.ifos), 0), np.float32)
        self.next_window = 0
        self.carried = 0  # samples of the previous segment put before this one (its prior)
        if self.carry is not None:
            end, carry_rate, prior = self.carry
            tol = 0.5 / rate
            if math.isclose(rate, carry_rate) and -tol <= t0 - end <= s.psd_length + tol:
                self._append(prior)
                self.carried = prior.shape[1]
                self.next_window = self.carried // s.whitener.stride
        self.carry = None
        self.tail = np.zeros(0, np.float32)  # the last integration_size - 1 scores
        self.clusterer = Clusterer(s.threshold, s.cluster_size)
        self.outputs = 0
        self.segments += 1

    def push(self, t0: float, strain: np.ndarray, rate: float | None = None) -> list[Event]:
        """Add strain ``(num_ifos, n)`` starting at GPS ``t0``; return the events now decided.

        Strain that does not continue the current segment (a gap, or another sample rate)
        ends it first (:meth:`end_segment`) and starts a new one. ``rate`` (Hz; ``None``: the
        model's) may be an integer multiple of the model's: the strain is then resampled as
        the offline search resamples a span (:mod:`aframe_lib.search.resample`: the same
        filter, each output computed once the stored samples its filter spans are there, the
        segment's ends zero-padded as a span's are), which delays the search by the filter's
        half-width (~64 model samples).

        Raises:
            aframe_lib.search.strain.StrainError: a rate the model's cannot be reached from.
        """
        s = self.search
        rate = s.sample_rate if rate is None else float(rate)
        strain = np.asarray(strain, np.float32)
        out: list[Event] = []
        if self.t0 is not None:
            if abs(t0 - self.expected) > 0.5 / rate or not math.isclose(rate, self.rate_in):
                out += self.end_segment()
        if self.t0 is None:
            self._start(t0, rate)
        self.end_time = t0 + strain.shape[1] / rate
        if self.factor == 1:
            self._append(strain)
        else:
            self.raw = np.concatenate([self.raw, strain], axis=1)
            self.raw_size += strain.shape[1]
            self._resample(final=False)
        out += self._advance()
        return out

    def _append(self, x: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, x], axis=1)
        self.size += x.shape[1]

    def _resample(self, final: bool) -> None:
        """Resample the stored samples whose outputs are complete (all of them at the end)."""
        from aframe_lib.search.resample import decimate, margin

        q, pad = self.factor, margin(self.factor)
        last = self.raw_size // q if final else max(0, (self.raw_size - pad) // q)
        first = self.resampled
        if last <= first:
            return
        lo = max(0, first * q - pad)
        hi = min(self.raw_size, last * q + pad)
        if final:
            hi = (self.raw_size // q) * q  # a span resamples whole model samples only
        x = torch.from_numpy(self.raw[:, lo - self.raw0 : hi - self.raw0]).to(torch.float64)
        y = decimate(x, q)
        skip = first - lo // q
        self._append(y[:, skip : skip + last - first].float().numpy())
        self.resampled = last
        keep = max(0, last * q - pad)
        if keep > self.raw0:
            self.raw = self.raw[:, keep - self.raw0 :]
            self.raw0 = keep

    def end_segment(self) -> list[Event]:
        """The data stop here (a gap): decide the segment's last candidates, as offline."""
        if self.t0 is None:
            return []
        events = []
        if self.factor != 1:
            self._resample(final=True)
            events += self._advance()
        events += self._events(self.clusterer.finish())
        self.livetime += self.outputs / self.search.rate
        e = self.search.carry_size
        own = self.size - self.carried
        if own >= e and self.buffer.shape[1] >= e:
            self.carry = (self.end_time, self.rate_in, self.buffer[:, -e:].copy())
        self.t0 = None
        return events

    @torch.no_grad()
    def _advance(self) -> list[Event]:
        s, w = self.search, self.search.whitener
        last = w.num_windows(self.size)
        first = self.next_window
        if last <= first:
            return []
        X = torch.from_numpy(self.buffer).to(s.device)
        scores = []
        with s.network.scoring():
            pending = []
            for batch in w.batches(X, s.batch_size, first, last, self.offset):
                pending.append(s.network.submit(batch))
                while len(pending) > s.network.max_pending:
                    scores.append(pending.pop(0)())
            scores += [result() for result in pending]
        self.next_window = last
        # drop the samples no later window (or its PSD) needs
        start = w.psd_of(last) * w.cadence
        if start > self.offset:
            self.buffer = self.buffer[:, start - self.offset :]
            self.offset = start
        y = np.concatenate([self.tail, *scores]).astype(np.float32)
        n = s.integration_size
        stat = integrate(y, n)
        self.tail = y[len(y) - (n - 1) :] if n > 1 else y[:0]
        self.outputs += len(stat)
        return self._events(self.clusterer.extend(stat))

    def _events(self, found: list[tuple[int, float, float]]) -> list[Event]:
        s, w = self.search, self.search.whitener
        out = []
        for j, stat, offset in found:
            k = j + s.integration_size - 1  # the output window an integrated value ends on
            t = self.t0 + (w.kernel_end + k * w.stride) / s.sample_rate
            out.append(Event(t + offset / s.rate - s.time_offset, stat, s.var))
        return out


def as_events(events: list[Event]) -> Events:
    """A list of online events as the offline :class:`Events` columns."""
    return Events(
        np.array([e.time for e in events], np.float64),
        np.array([e.stat for e in events], np.float64),
        np.array([e.var for e in events], np.float64),
    )
