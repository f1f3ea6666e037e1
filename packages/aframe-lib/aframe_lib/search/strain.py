"""Long strain for the search: spans of coincident, finite data for every IFO.

Two layouts are read:

- the project's background contract: a directory of ``background-{t0}-{duration}.hdf5`` files
  (or one such file), one dataset per IFO with gwpy's ``x0``/``dx`` attributes (see
  :mod:`aframe_lib.data.background`); every file is its own span;
- the mock-data-challenge layout: one HDF5 file, a group per detector (``H1``, ``L1``), a dataset
  per contiguous segment with attributes ``start_time`` (GPS s) and ``delta_t`` (s). A span is
  each stretch where every IFO has data.

Strain recorded faster than the model's rate is resampled as it streams (:meth:`Span.load`):
an integer factor ``q = data rate / model rate`` is required (2048 Hz data for a 512 Hz model,
16384 Hz for 2048 Hz, ...), and every span is low-passed and decimated with the filter of
torchaudio's Kaiser-windowed sinc resampler (``kaiser_best``: 64 zero crossings, rolloff 0.9476,
beta 14.77; :mod:`.resample`),
on the search's device, chunk by chunk. Each chunk is read with a margin longer than the filter,
so the result equals resampling the whole span at once (zero-padded beyond its ends, as
torchaudio and ``scipy.signal.resample_poly`` do; that edge ringing lasts ``64 / 0.95`` model
samples, inside the PSD data and the whitening padding the search never scores). Data slower than
the model, or at a non-integer multiple of its rate, raise :class:`StrainError`.

Nothing is ever invented: gaps between files or segments, and any stretch where an IFO holds a
NaN or inf, split the data into separate spans (the non-finite stretch is skipped with a
warning), and spans too short for one output are skipped with a warning. A missing IFO, a
sample rate the model's cannot be reached from, or IFO samples that do not line up in time raise
:class:`StrainError` naming the file, the value and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from aframe_lib.utils.errors import DataError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class StrainError(DataError, ValueError):
    """Strain that the search cannot analyse (the message names the file, the value, the fix)."""


@dataclass(frozen=True)
class Channel:
    """Where one IFO's samples of a span are stored.

    Args:
        path: HDF5 file (local path).
        dataset: dataset name inside the file (e.g. ``"H1"`` or ``"H1/1238166018"``).
        start: index of the span's first sample: in the dataset when ``factor`` is 1, else
            on the resampled grid (see below).
        origin: dataset index of sample 0 of the resampled grid (resampled channels only).
        factor: dataset samples per span sample (``data rate / span rate``; 1: as stored).
            Span sample ``i`` is then the resampled value at dataset index
            ``origin + (start + i) * factor``.
    """

    path: str
    dataset: str
    start: int
    origin: int = 0
    factor: int = 1


@dataclass(frozen=True)
class Span:
    """A stretch of strain that every IFO covers without gaps or non-finite samples.

    Sample ``i`` of IFO ``j`` is ``channels[j].dataset[channels[j].start + i]``. For data as
    recorded that sample is at GPS ``t0 + i / sample_rate`` in every IFO; a timeslide reads IFO
    ``j`` ``shifts[j]`` seconds later than IFO 0 (times always refer to IFO 0).

    Args:
        t0: GPS time (s) of sample 0 of IFO 0.
        size: samples per IFO.
        sample_rate: Hz.
        ifos: IFO codes, in channel order.
        channels: one :class:`Channel` per IFO.
        shifts: seconds each IFO is read later than IFO 0 (zeros for unshifted data).
        prior: the strain just before this span when a gap no longer than the PSD length
            separates them (:meth:`~aframe_lib.search.pipeline.Search.link`): its samples
            estimate the PSDs of the span's first windows, so whitening carries over a short
            gap rather than restarting. ``None``: whitening starts afresh.
    """

    t0: float
    size: int
    sample_rate: float
    ifos: tuple[str, ...]
    channels: tuple[Channel, ...]
    shifts: tuple[float, ...] = ()
    prior: Span | None = None

    def __post_init__(self):
        if not self.shifts:
            object.__setattr__(self, "shifts", (0.0,) * len(self.ifos))

    @property
    def duration(self) -> float:
        """Seconds of strain per IFO."""
        return self.size / self.sample_rate

    def sub(self, start: int, stop: int) -> Span:
        """Samples ``[start, stop)`` of this span, as a span (its ``prior`` kept only if
        ``start`` is 0: the prior precedes the span's first sample)."""
        channels = tuple(dataclasses.replace(c, start=c.start + start) for c in self.channels)
        return dataclasses.replace(
            self, t0=self.t0 + start / self.sample_rate, size=stop - start, channels=channels,
            prior=self.prior if start == 0 else None,
        )  # fmt: skip

    @property
    def factor(self) -> int:
        """Stored samples per span sample (1 unless the span is resampled)."""
        return self.channels[0].factor if self.channels else 1

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` of every IFO, float32 of shape ``(num_ifos, stop - start)``."""
        if self.factor != 1:
            return self.load(start, stop).numpy()
        start, stop = self._bounds(start, stop)
        out = np.empty((len(self.channels), stop - start), np.float32)
        for row, c in enumerate(self.channels):
            with h5py.File(c.path, "r") as f:
                out[row] = f[c.dataset][c.start + start : c.start + stop]
        return out

    def load(
        self, start: int = 0, stop: int | None = None, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """:meth:`read` as a float32 tensor on ``device`` (where any resampling runs)."""
        import torch

        if self.factor == 1:
            return torch.from_numpy(self.read(start, stop)).to(device)
        from .resample import resample_channels

        start, stop = self._bounds(start, stop)
        return resample_channels(self, start, stop, device)

    def _bounds(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.size if stop is None else stop
        if not 0 <= start <= stop <= self.size:
            raise IndexError(f"samples [{start}, {stop}) outside the span's [0, {self.size})")
        return start, stop


def _rate(dt: float) -> float:
    rate = 1.0 / float(dt)
    return float(round(rate)) if np.isclose(rate, round(rate), rtol=1e-9) else rate


def resample_factor(where: str, rate: float, sample_rate: float | None) -> int:
    """Stored samples per model sample (1: the model's rate); raise if it cannot be reached."""
    if sample_rate is None or np.isclose(rate, sample_rate, rtol=1e-9, atol=0):
        return 1
    ratio = rate / sample_rate
    if ratio < 1:
        raise StrainError(
            f"{where}: sample rate is {rate:g} Hz, below the {sample_rate:g} Hz the model was "
            f"trained at; upsampling cannot restore the missing band above {rate / 2:g} Hz: "
            f"search data sampled at {sample_rate:g} Hz or a multiple of it"
        )
    if not np.isclose(ratio, round(ratio), rtol=0, atol=1e-9):
        raise StrainError(
            f"{where}: sample rate is {rate:g} Hz, not an integer multiple of the model's "
            f"{sample_rate:g} Hz, which the search cannot resample to on the fly; resample the "
            f"strain to {sample_rate:g} Hz first (e.g. gwpy TimeSeries.resample)"
        )
    return int(round(ratio))


def resampled(span: Span, sample_rate: float | None) -> Span:
    """``span`` on the model's grid: itself at that rate, else a view read through the resampler.

    The view keeps ``t0`` (its sample 0 is the stored sample 0, low-passed) and holds
    ``size // factor`` samples; see :meth:`Span.load`.
    """
    where = f"{span.channels[0].path}:{span.channels[0].dataset}"
    factor = resample_factor(where, span.sample_rate, sample_rate)
    if factor == 1:
        return span
    channels = tuple(
        Channel(c.path, c.dataset, 0, origin=c.start, factor=factor) for c in span.channels
    )
    return dataclasses.replace(
        span, size=span.size // factor, sample_rate=float(sample_rate), channels=channels
    )


def _background_spans(path: str, ifos: Sequence[str], sample_rate: float | None) -> list[Span]:
    from aframe_lib.data.background import BackgroundError, list_segments

    try:
        if Path(path).is_dir():
            segments = list_segments(path, ifos)
        else:  # one background file: list its directory, keep it alone
            segments = [
                s
                for s in list_segments(str(Path(path).parent), ifos)
                if Path(s.path).resolve() == Path(path).resolve()
            ]
    except BackgroundError as exc:
        raise StrainError(str(exc)) from exc
    for s in segments[:1]:  # list_segments checked that every file shares this rate
        resample_factor(s.path, s.sample_rate, sample_rate)
    return [
        Span(
            s.t0,
            s.size,
            s.sample_rate,
            tuple(ifos),
            tuple(Channel(s.path, ifo, 0) for ifo in ifos),
        )
        for s in segments
    ]


def _mdc_segments(f: h5py.File, path: str, ifo: str, sample_rate: float | None) -> list:
    """``(t0, rate, size, dataset)`` of each segment of one IFO's group, sorted by time."""
    group = f[ifo]
    out = []
    for name, ds in group.items():
        where = f"{path}:{ifo}/{name}"
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            raise StrainError(f"{where}: expected 1-D strain datasets in group {ifo!r}")
        missing = [a for a in ("start_time", "delta_t") if a not in ds.attrs]
        if missing:
            raise StrainError(
                f"{where}: lacks the attribute(s) {missing} (start_time: GPS s of the first "
                "sample, delta_t: sample spacing in s) of the mock-data-challenge layout"
            )
        rate = _rate(ds.attrs["delta_t"])
        resample_factor(where, rate, sample_rate)
        out.append((float(ds.attrs["start_time"]), rate, len(ds), f"{ifo}/{name}"))
    return sorted(out)


def _mdc_spans(path: str, ifos: Sequence[str], sample_rate: float | None) -> list[Span]:
    with h5py.File(path, "r") as f:
        groups = sorted(k for k in f if isinstance(f[k], h5py.Group))
        missing = [ifo for ifo in ifos if ifo not in groups]
        if missing:
            raise StrainError(
                f"{path}: no group for IFO(s) {missing} (the model needs {list(ifos)}); the file "
                f"has groups {groups}; search data that include every IFO the model was "
                "trained on"
            )
        per_ifo = [_mdc_segments(f, path, ifo, sample_rate) for ifo in ifos]
    rates = {seg[1] for segs in per_ifo for seg in segs}
    if len(rates) > 1:
        raise StrainError(f"{path}: segments have different sample rates {sorted(rates)} Hz")
    if not rates:
        return []
    rate = rates.pop()
    # intersect the IFOs' segments (two pointers per pair, folded over the IFOs)
    pieces = [[(t0, t0 + n / rate, [(path, ds, t0)]) for t0, _, n, ds in per_ifo[0]]]
    for segs in per_ifo[1:]:
        merged = []
        for a0, a1, chans in pieces[-1]:
            for t0, _, n, ds in segs:
                lo, hi = max(a0, t0), min(a1, t0 + n / rate)
                if hi > lo:
                    merged.append((lo, hi, [*chans, (path, ds, t0)]))
        pieces.append(merged)
    spans = []
    for lo, hi, chans in pieces[-1]:
        channels = []
        for file, ds, t0 in chans:
            offset = (lo - t0) * rate
            if abs(offset - round(offset)) > 1e-3:
                raise StrainError(
                    f"{file}:{ds}: its samples do not line up with the other IFOs' (offset "
                    f"{offset:.4f} samples); resample every IFO onto one time grid"
                )
            channels.append(Channel(file, ds, int(round(offset))))
        size = int(round((hi - lo) * rate))
        spans.append(Span(lo, size, rate, tuple(ifos), tuple(channels)))
    return spans


def _nonfinite_runs(span: Span, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` sample runs where any IFO is NaN or inf."""
    runs: list[list[int]] = []
    for start in range(0, span.size, chunk):
        bad = ~np.isfinite(span.read(start, min(start + chunk, span.size))).all(0)
        if not bad.any():
            continue
        edges = np.flatnonzero(np.diff(np.r_[0, bad.astype(np.int8), 0]))
        for a, b in zip(edges[::2] + start, edges[1::2] + start, strict=True):
            if runs and runs[-1][1] == a:  # continues a run from the previous chunk
                runs[-1][1] = int(b)
            else:
                runs.append([int(a), int(b)])
    return [(a, b) for a, b in runs]


def split_nonfinite(span: Span, chunk: int = 2**22) -> list[Span]:
    """Cut ``span`` around every stretch where an IFO is NaN or inf (warning for each).

    Args:
        span: the span to scan (read ``chunk`` samples at a time).
        chunk: samples read at a time.

    Returns:
        The finite sub-spans, in time order.
    """
    runs = _nonfinite_runs(span, chunk)
    out, start = [], 0
    for a, b in runs:
        t = span.t0 + a / span.sample_rate
        warnings.warn(
            f"{span.channels[0].path}: non-finite strain in {list(span.ifos)} for "
            f"{(b - a) / span.sample_rate:g} s from GPS {t:.3f}: skipped, and the search "
            "restarts after it (its PSD needs psd_length s of finite data)",
            RuntimeWarning,
            stacklevel=3,
        )
        if a > start:
            out.append(span.sub(start, a))
        start = b
    if start < span.size:
        out.append(span.sub(start, span.size))
    return out


def find_spans(
    path: str,
    ifos: Sequence[str],
    sample_rate: float | None = None,
    min_duration: float = 0.0,
    min_duration_desc: str = "",
) -> list[Span]:
    """Every span of coincident, finite strain in ``path`` (see the module docstring).

    Args:
        path: a background directory, one background file, or one mock-data-challenge file.
        ifos: IFOs the model needs, in its channel order.
        sample_rate: the model's rate (Hz): data at an integer multiple of it come back as
            resampled views (see the module docstring); ``None`` accepts the data's rate.
        min_duration: shorter spans are skipped with a warning (s).
        min_duration_desc: what ``min_duration`` is made of, for the warning.

    Returns:
        The spans in time order.
    """
    p = Path(path)
    if not p.exists():
        raise StrainError(
            f"{path}: no such file or directory; pass --data a background "
            "directory or a mock-data-challenge HDF5 file"
        )
    if p.is_dir():
        spans = _background_spans(path, ifos, sample_rate)
    else:
        try:
            with h5py.File(path, "r") as f:
                mdc = any(isinstance(f[k], h5py.Group) for k in f)
        except OSError as exc:
            raise StrainError(f"{path}: cannot be read as HDF5 ({exc})") from exc
        spans = (_mdc_spans if mdc else _background_spans)(path, ifos, sample_rate)
    finite = [resampled(s, sample_rate) for span in spans for s in split_nonfinite(span)]
    if finite and finite[0].factor != 1:
        logger.info(
            "%s: resampling %s from %g Hz to the model's %g Hz as the search streams (torchaudio "
            "Kaiser-windowed sinc, on the search's device)",
            path,
            ",".join(ifos),
            finite[0].sample_rate * finite[0].factor,
            finite[0].sample_rate,
        )
    kept = []
    for span in finite:
        if span.duration < min_duration:
            warnings.warn(
                f"{span.channels[0].path}: {span.duration:g} s of strain from GPS "
                f"{span.t0:.3f} is shorter than the {min_duration:g} s one search output "
                f"needs ({min_duration_desc or 'min_duration'}): skipped",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            kept.append(span)
    if not kept:
        raise StrainError(
            f"{path}: no stretch of strain in {list(ifos)} lasts the {min_duration:g} s one "
            f"search output needs ({min_duration_desc or 'min_duration'}); use longer data or "
            "a shorter psd_length"
        )
    logger.info("%s: %d span(s), %.1f s", path, len(kept), sum(s.duration for s in kept))
    return sorted(kept, key=lambda s: s.t0)


def write_mdc(path: str, strain: dict[str, list[tuple[float, np.ndarray]]], sample_rate: float):
    """Write strain in the mock-data-challenge layout (atomically): for tests and conversions.

    Args:
        path: output file.
        strain: IFO -> list of ``(start_time, samples)`` segments.
        sample_rate: Hz (stored as ``delta_t = 1 / sample_rate``).
    """
    from aframe_lib.utils.fs import atomic_local_path

    with atomic_local_path(path) as tmp, h5py.File(tmp, "w") as f:
        for ifo, segments in strain.items():
            group = f.create_group(ifo)
            for t0, x in segments:
                ds = group.create_dataset(f"{int(round(t0))}", data=np.asarray(x, np.float32))
                ds.attrs.update(start_time=float(t0), delta_t=1.0 / sample_rate)


def materialize(spans: Sequence[Span], where: str, chunk_length: float = 4096.0) -> list[Span]:
    """Resampled spans written once at the model's rate; other spans come back as they are.

    Timeslides read every stretch of the data many times over (a month of background from three
    days of strain: ten times); reading a resampled view (:func:`resampled`) pays for the
    low-pass filter each time. Here each resampled span is filtered once, chunk by chunk
    (bounded memory, the same samples as resampling it whole), into a file of the background
    layout in ``where`` (``background-{t0}-{duration}.hdf5``, one float32 dataset per IFO with
    ``x0``/``dx``; written atomically) and read back as a span at the model's rate. A shifted
    copy of such a span is then the resampled data shifted: its ends hold the filtered data
    beyond them rather than the zero-padding ringing a shifted view would have.

    A file whose ``source`` attribute matches the span (its channels, size, rate and the stored
    files' sizes and modification times) is reused.
    """
    from aframe_lib.data.background import background_fname, dataset_attrs
    from aframe_lib.utils.fs import atomic_local_path

    out = []
    for span in spans:
        if span.factor == 1:
            out.append(span)
            continue
        stats = [Path(c.path).stat() for c in span.channels]
        source = repr(
            (span.t0, span.size, span.sample_rate, span.channels,
             [(st.st_size, st.st_mtime_ns) for st in stats])
        )  # fmt: skip
        path = Path(where) / background_fname(span.t0, span.duration)
        current = False
        if path.exists():
            with contextlib.suppress(OSError), h5py.File(path, "r") as f:
                current = f.attrs.get("source") == source
        if not current:
            step = max(1, int(chunk_length * span.sample_rate))
            with atomic_local_path(path) as tmp, h5py.File(tmp, "w") as f:
                f.attrs["source"] = source
                datasets = [f.create_dataset(ifo, (span.size,), np.float32) for ifo in span.ifos]
                for ifo, ds in zip(span.ifos, datasets, strict=True):
                    ds.attrs.update(dataset_attrs(ifo, span.t0, span.sample_rate))
                for start in range(0, span.size, step):
                    stop = min(span.size, start + step)
                    x = span.load(start, stop).numpy()
                    for row, ds in enumerate(datasets):
                        ds[start:stop] = x[row]
            logger.info("%s: %s resampled to %g Hz", path, span.channels[0].path, span.sample_rate)
        channels = tuple(Channel(str(path), ifo, 0) for ifo in span.ifos)
        out.append(dataclasses.replace(span, channels=channels))
    return out
