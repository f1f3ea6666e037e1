"""From network outputs to events: integrate, find local maxima, cluster; the events file.

Events are written in the mock-data-challenge output convention: one HDF5 file with 1-D
datasets ``time`` (GPS s), ``stat`` (larger = more signal-like) and ``var`` (timing uncertainty,
s: an injection at ``t`` is found by an event when ``|time - t| <= var``). Timeslide searches
add ``shift`` ``(N, num_ifos)`` (s each IFO was shifted); the file's attributes record the
livetime and the search settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Events:
    """A set of events (columns of equal length).

    Args:
        time: GPS time (s) of each event (IFO 0's clock for timeslides).
        stat: detection statistic (larger = more signal-like).
        var: timing uncertainty (s).
        shift: ``(N, num_ifos)`` seconds each IFO was shifted; ``None`` for unshifted data.
    """

    time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stat: np.ndarray = field(default_factory=lambda: np.zeros(0))
    var: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shift: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def concatenate(cls, parts: list[Events]) -> Events:
        """One set holding every event of ``parts``, sorted by time."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        cat = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("time", "stat", "var")}
        shifts = [p.shift for p in parts]
        shift = None if any(s is None for s in shifts) else np.concatenate(shifts)
        order = np.argsort(cat["time"], kind="stable")
        return cls(
            **{k: v[order] for k, v in cat.items()},
            shift=None if shift is None else shift[order],
        )


def integrate(y: np.ndarray, size: int) -> np.ndarray:
    """Causal boxcar average: ``out[i] = mean(y[i : i + size])``, aligned to ``y[i + size - 1]``.

    Only full windows are returned (``len(y) - size + 1`` values), so no output averages in
    data that do not exist.
    """
    if size < 1:
        raise ValueError(f"integration window must be >= 1 sample, got {size}")
    if len(y) < size:
        return np.zeros(0)
    csum = np.concatenate([[0.0], np.cumsum(y, dtype=np.float64)])
    return (csum[size:] - csum[:-size]) / size


def find_events(stat: np.ndarray, threshold: float | None, cluster_size: int) -> np.ndarray:
    """Indices of clustered local maxima of ``stat`` above ``threshold``.

    A sample is a candidate when it exceeds ``threshold`` and is a local maximum (``>=`` its
    left neighbour, ``>`` its right one, so a plateau gives one candidate). Candidates are
    taken loudest first; each suppresses every other candidate less than ``cluster_size / 2``
    samples away, so every event is the loudest within a window of ``cluster_size`` samples
    centred on it.

    Args:
        stat: the integrated output, one value per inference step.
        threshold: ``None`` keeps every local maximum.
        cluster_size: cluster window in samples.

    Returns:
        Sorted indices of the events.
    """
    if len(stat) == 0:
        return np.zeros(0, dtype=np.int64)
    padded = np.r_[-np.inf, stat, -np.inf]
    peak = (stat >= padded[:-2]) & (stat > padded[2:])
    if threshold is not None:
        peak &= stat > threshold
    candidates = np.flatnonzero(peak)
    candidates = candidates[np.argsort(-stat[candidates], kind="stable")]
    radius = cluster_size / 2
    kept: list[int] = []
    taken = np.zeros(len(stat), dtype=bool)
    for i in candidates:
        if taken[i]:
            continue
        kept.append(int(i))
        lo, hi = int(np.floor(i - radius)) + 1, int(np.ceil(i + radius))
        taken[max(lo, 0) : hi] = True
    return np.sort(np.asarray(kept, dtype=np.int64))


def peak_offsets(stat: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Where between inference steps each peak ``stat[idx]`` lies: parabolic interpolation.

    The parabola through ``stat[i - 1], stat[i], stat[i + 1]`` peaks at
    ``i + (stat[i-1] - stat[i+1]) / (2 (stat[i-1] - 2 stat[i] + stat[i+1]))``. A peak at either
    end of ``stat``, or on a flat top (no downward curvature), keeps its sample time.

    Args:
        stat: the integrated output, one value per inference step.
        idx: indices of its peaks (e.g. from :func:`find_events`).

    Returns:
        Offsets in steps, in ``[-0.5, 0.5]``, one per peak (add ``offset / rate`` seconds).
    """
    idx = np.asarray(idx, dtype=np.int64)
    out = np.zeros(len(idx))
    inner = (idx > 0) & (idx < len(stat) - 1)
    i = idx[inner]
    left, mid, right = (np.asarray(stat, np.float64)[j] for j in (i - 1, i, i + 1))
    curvature = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
    out[inner] = np.clip(delta, -0.5, 0.5)
    return out


def write_events(
    path: str,
    events: Events,
    attrs: Mapping[str, Any] | None = None,
    columns: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write ``events`` atomically to ``path``.

    Args:
        path: local HDF5 file.
        events: the events (``shift`` is written when not ``None``).
        attrs: file attributes (``None`` values are written as ``"None"``).
        columns: extra per-event datasets (e.g. ``far``), each of length ``len(events)``.
    """
    import h5py

    from aframe_lib.utils.fs import atomic_local_path

    with atomic_local_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("time", data=np.asarray(events.time, np.float64))
        f.create_dataset("stat", data=np.asarray(events.stat, np.float64))
        f.create_dataset("var", data=np.asarray(events.var, np.float64))
        if events.shift is not None:
            f.create_dataset("shift", data=np.asarray(events.shift, np.float64))
        for key, value in (columns or {}).items():
            f.create_dataset(key, data=np.asarray(value))
        for key, value in (attrs or {}).items():
            f.attrs[key] = value if value is not None else "None"


def read_events(path: str) -> tuple[Events, dict[str, Any]]:
    """Events and attributes of a file written by :func:`write_events` (or any MDC output)."""
    import h5py

    with h5py.File(path, "r") as f:
        events = Events(
            f["time"][:],
            f["stat"][:],
            f["var"][:],
            f["shift"][:] if "shift" in f else None,
        )
        attrs = dict(f.attrs)
    return events, attrs
