"""Foreground data: a population of waveforms injected into background strain, or a table of
injections already in the strain (:func:`read_injection_table`).

:func:`inject_population` copies each span of strain (any layout the search reads, resampled
to the search's rate when faster) with waveforms added at regular times (``spacing`` seconds
apart, the first ``start_pad`` seconds after the span starts, the last ending before it
does; each moved later by a random fraction of ``jitter`` seconds) to the strain as recorded
(resampled with it, as a real signal is), projected onto the IFOs at random sky positions
with ml4gw (:class:`~aframe_lib.data.injection.Injector`) and kept at their physical
amplitude (their distance is the one they were generated at). The result is a directory in
the background layout (so the search reads it like any other) and ``injections.hdf5``
beside it:

- ``time``: GPS time of coalescence at the geocentre (s);
- ``snr``: network optimal SNR in the strain as recorded (against ``psd.hdf5`` beside the
  strain files when it is at their rate, else the median Welch PSD of the recorded samples of
  the span it was injected into), ``ifo_snr`` ``(N, num_ifos)``;
- ``dec``, ``psi``, ``phi`` (rad) and every source parameter of the waveform file;
- attributes: ``ifos``, ``sample_rate`` (of the written strain), ``waveform_sample_rate``
  (of the recorded strain and the waveforms), ``spacing``, ``jitter``, ``distance_range``
  (when given).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from aframe_lib.data.background import background_fname, write_background
from aframe_lib.data.injection import Injector
from aframe_lib.data.waveforms import WaveformSet
from aframe_lib.utils.fs import atomic_local_path

from .strain import Span, find_spans

logger = logging.getLogger(__name__)

INJECTIONS_FILE = "injections.hdf5"


def _psd_of(
    psd_dir: str | None,
    ifos: Sequence[str],
    strain: Callable[[], np.ndarray],
    sample_rate: float,
):
    """``(num_ifos, freqs)`` float64 PSD from 0 Hz to Nyquist for the SNRs: ``psd.hdf5`` in
    ``psd_dir`` when it holds every IFO at ``sample_rate``, else the median Welch PSD of
    ``strain()`` (sampled at ``sample_rate``; only read then)."""
    path = Path(psd_dir, "psd.hdf5") if psd_dir else None
    if path is not None and path.exists():
        with h5py.File(path, "r") as f:
            rate = f.attrs.get("sample_rate")
            if all(ifo in f for ifo in ifos) and rate is not None and np.isclose(rate, sample_rate):
                return torch.as_tensor(np.stack([f[ifo][:] for ifo in ifos]), dtype=torch.float64)
    from ml4gw.transforms import SpectralDensity

    sd = SpectralDensity(sample_rate, 4.0, average="median")
    return sd(torch.as_tensor(strain(), dtype=torch.float64))


def _stored(span: Span) -> np.ndarray:
    """The samples a span is read from, at their recorded rate: float64 ``(num_ifos, size *
    factor)`` (for a resampled span, the stretch its resampler reads, without margins)."""
    q = span.factor
    if q == 1:
        return span.read().astype(np.float64)
    out = np.empty((len(span.channels), span.size * q))
    for row, c in enumerate(span.channels):
        first = c.origin + c.start * q
        with h5py.File(c.path, "r") as f:
            out[row] = f[c.dataset][first : first + span.size * q]
    return out


def _add(strain: np.ndarray, responses: np.ndarray, starts: np.ndarray, factor: int) -> None:
    """Add each response (at ``factor`` times the rate of ``strain``), starting at recorded
    sample ``starts[i]``, to ``strain`` as the search's resampler would pass it.

    Resampling is linear, so resampling the recorded strain with a response added equals the
    resampled strain plus the resampled response placed on the same polyphase grid: each
    response is zero-padded by the filter's reach on both sides, aligned to a multiple of
    ``factor``, and decimated by :func:`.resample.decimate` (the search's filter).
    """
    size = strain.shape[-1]
    if factor == 1:
        width = responses.shape[-1]
        for response, start in zip(responses, starts, strict=True):
            lo, hi = max(start, 0), min(start + width, size)
            if hi > lo:
                strain[:, lo:hi] += response[:, lo - start : hi - start]
        return
    from .resample import decimate, margin

    pad = margin(factor)
    for response, start in zip(responses, starts, strict=True):
        first = (start // factor) * factor - pad  # recorded index of the buffer's sample 0
        stop = -(-(start + response.shape[-1] + pad) // factor) * factor
        buffer = np.zeros((len(response), stop - first))
        buffer[:, start - first : start - first + response.shape[-1]] = response
        added = decimate(torch.from_numpy(buffer), factor).numpy()
        at = first // factor  # span sample of the decimated buffer's sample 0
        lo, hi = max(at, 0), min(at + added.shape[-1], size)
        if hi > lo:
            strain[:, lo:hi] += added[:, lo - at : hi - at]


def injection_times(
    t0: float, duration: float, start_pad: float, after: float, spacing: float, jitter: float = 0.0
) -> np.ndarray:
    """The slots of a span's injections before their jitter: ``spacing`` s apart from
    ``start_pad`` s after ``t0``, each leaving ``after`` s (the waveform past coalescence) plus
    ``jitter`` before the span ends. :func:`inject_population` uses the first of them that its
    waveforms fill; :func:`num_injection_slots` counts them."""
    return np.arange(t0 + start_pad, t0 + duration - after - jitter, spacing)


def num_injection_slots(
    spans: Sequence[Span], start_pad: float, after: float, spacing: float, jitter: float = 0.0
) -> int:
    """How many injections :func:`inject_population` can place in ``spans`` (with as many
    waveforms)."""
    return sum(
        len(injection_times(s.t0, s.duration, start_pad, after, spacing, jitter)) for s in spans
    )


def inject_population(
    data: str | Sequence[Span],
    out_dir: str,
    waveforms: WaveformSet,
    ifos: Sequence[str],
    spacing: float,
    start_pad: float,
    highpass: float | None = None,
    distance_range: tuple[float, float] | None = None,
    seed: int = 0,
    sample_rate: float | None = None,
    jitter: float = 0.0,
) -> dict[str, np.ndarray]:
    """Write ``out_dir``: the strain of ``data`` plus injections, and their table.

    The waveforms are added to the strain as recorded: at the rate it is stored at, which must
    be the waveforms' rate. Where the strain is resampled (spans slower than their files), the
    injected responses pass through the search's resampler with the noise, as a signal in real
    strain does. (A waveform added after resampling would keep the power the resampler's
    low-pass removes from the noise above ~0.95 of the new Nyquist; whitening then amplifies
    it by the filter's stopband, up to 1e5.)

    Args:
        data: strain to inject into: spans (:func:`.strain.find_spans`, resampled views
            included), or a path :func:`.strain.find_spans` reads (a background directory or
            file, or a mock-data-challenge file) at ``sample_rate``.
        out_dir: local directory for the injected files (one background file per span, at
            the spans' rate) and ``injections.hdf5``.
        waveforms: the population, used in order (at most one injection per waveform), at
            the rate the strain is recorded at.
        ifos: IFOs to project onto, in channel order.
        spacing: seconds between consecutive injections (more than the search's cluster
            window, so each injection is its own event).
        start_pad: seconds from a span's start to its first injection (at least the search's
            warm-up, ``Search.min_duration``, or early injections are never searched).
        highpass: Hz below which nothing counts towards the SNRs.
        distance_range: ``(min, max)`` Mpc the distances were drawn from, stored for volumes.
        seed: seed of the sky positions and of the jitter.
        sample_rate: rate of the written strain when ``data`` is a path (``None``: the
            waveforms' rate); spans keep their own.
        jitter: seconds; each injection moves later by a time drawn uniformly from
            ``[0, jitter)``. Pass the search's output step (``1 / inference_sampling_rate``)
            so that injections fall at every phase of its output grid, as real signals do: at
            ``0`` every injection of a span whose ``start_pad`` and ``spacing`` are whole steps
            sits at the same phase, and timing and efficiency are measured at that phase only.

    Returns:
        The injection table (also written to ``out_dir/injections.hdf5``).
    """
    rate = waveforms.sample_rate
    if isinstance(data, str | Path):
        spans = find_spans(str(data), ifos, sample_rate or rate)
    else:
        spans = list(data)
    for span in spans:
        if not np.isclose(span.sample_rate * span.factor, rate):
            raise ValueError(
                f"waveforms are sampled at {rate} Hz but the strain of {span.channels[0].path} "
                f"is stored at {span.sample_rate * span.factor} Hz: generate the waveforms at "
                "the strain's stored rate (they are resampled with it)"
            )
    injector = Injector(ifos, rate, highpass)
    index = round(waveforms.coalescence_time * rate)
    after = waveforms.duration - waveforms.coalescence_time
    used, table = 0, []
    out_rate = spans[0].sample_rate if spans else rate
    if not 0 <= jitter < spacing:
        raise ValueError(f"jitter={jitter}: must be >= 0 and less than spacing ({spacing} s)")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # the jitter has its own stream, so the sky positions do not depend on it
    shifts = np.random.default_rng([seed, 1]) if jitter else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for seg in spans:
            q = seg.factor
            times = injection_times(seg.t0, seg.duration, start_pad, after, spacing, jitter)
            times = times[: len(waveforms.plus) - used]
            if shifts is not None:
                times = times + shifts.uniform(0.0, jitter, len(times))
            strain = seg.read().astype(np.float64)
            if len(times):
                rows = slice(used, used + len(times))
                cross = torch.as_tensor(waveforms.cross[rows], dtype=torch.float32)
                plus = torch.as_tensor(waveforms.plus[rows], dtype=torch.float32)
                sky = injector.sample_sky(len(times))
                responses = injector.project(cross, plus, sky)
                # SNRs in the strain as recorded: the generator's PSD beside the files (at
                # their rate), else the PSD of the recorded samples themselves
                psd_dir = str(Path(seg.channels[0].path).parent)
                recorded = (lambda x=strain: x) if q == 1 else (lambda s=seg: _stored(s))
                psd = _psd_of(psd_dir, ifos, recorded, rate)
                ifo_snr = torch.stack(
                    [
                        injector.snr(responses[:, i : i + 1], psd[i : i + 1])
                        for i in range(len(ifos))
                    ],
                    1,
                )
                # coalescence on the span's grid: recorded sample peaks[i], a multiple of q
                peaks = np.round((times - seg.t0) * seg.sample_rate).astype(int) * q
                _add(strain, responses.double().numpy(), peaks - index, q)
                exact = seg.t0 + peaks / rate
                params = {k: v[rows] for k, v in waveforms.parameters.items()}
                table.append(
                    {
                        "time": exact,
                        "snr": ifo_snr.square().sum(1).sqrt().numpy(),
                        "ifo_snr": ifo_snr.numpy(),
                        "dec": sky[0].numpy(),
                        "psi": sky[1].numpy(),
                        "phi": sky[2].numpy(),
                        **params,
                    }
                )
                used += len(times)
            path = str(Path(out_dir, background_fname(seg.t0, seg.duration)))
            write_background(path, dict(zip(ifos, strain, strict=True)), seg.t0, seg.sample_rate)
    if not table:
        raise ValueError(
            f"no injection fits {data if isinstance(data, str | Path) else 'the spans'}: they "
            f"must be longer than start_pad ({start_pad} s) + {after} s after coalescence"
        )
    injections = {k: np.concatenate([t[k] for t in table]) for k in table[0]}
    with atomic_local_path(Path(out_dir, INJECTIONS_FILE)) as tmp, h5py.File(tmp, "w") as f:
        for key, value in injections.items():
            f.create_dataset(key, data=value)
        f.attrs.update(
            ifos=",".join(ifos),
            sample_rate=out_rate,
            waveform_sample_rate=rate,
            spacing=spacing,
            jitter=jitter,
        )
        if distance_range is not None:
            f.attrs["distance_range"] = np.asarray(distance_range, np.float64)
    logger.info("injected %d waveforms into %s", len(injections["time"]), out_dir)
    return injections


def read_injections(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """The table and attributes written by :func:`inject_population`."""
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in f}, dict(f.attrs)


class InjectionTableError(ValueError):
    """An external injection table that cannot be read (the message says how to fix it)."""


def read_injection_table(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """An external injection table: injections already in some strain, to match events to.

    Formats (one row per injection; columns of equal length):

    - HDF5: 1-D datasets at the file's root (or in a group ``injections``), file attributes
      kept (e.g. ``distance_range``); the table :func:`inject_population` writes qualifies;
    - CSV: a header line of column names, then numbers (non-numeric columns are dropped).

    Columns: ``gps_time`` (GPS s of coalescence at the geocentre; ``time`` is accepted too)
    is required; ``snr`` (network optimal SNR: efficiency per SNR bin) and ``distance``
    (luminosity distance, Mpc: sensitive volume) are used when present; every other numeric
    column is carried along.

    Returns:
        The columns (``gps_time`` renamed ``time``) and the attributes.
    """
    p = Path(path)
    if not p.is_file():
        raise InjectionTableError(f"{path}: no such injection table (HDF5 or CSV file)")
    if p.suffix.lower() == ".csv":
        columns, attrs = _read_csv(path), {}
    else:
        try:
            with h5py.File(path, "r") as f:
                group = f["injections"] if isinstance(f.get("injections"), h5py.Group) else f
                columns = {
                    k: v[:] for k, v in group.items() if isinstance(v, h5py.Dataset) and v.ndim
                }
                attrs = dict(f.attrs)
        except OSError as exc:
            raise InjectionTableError(
                f"{path}: cannot be read as HDF5 ({exc}); give an HDF5 table, or a CSV file "
                "named *.csv"
            ) from exc
    key = "gps_time" if "gps_time" in columns else "time" if "time" in columns else None
    if key is None:
        raise InjectionTableError(
            f"{path}: no 'gps_time' column (found {sorted(columns)}); the table needs each "
            "injection's GPS time of coalescence as 'gps_time'"
        )
    columns["time"] = np.asarray(columns.pop(key), np.float64)
    sizes = {k: len(v) for k, v in columns.items()}
    bad = {k: n for k, n in sizes.items() if n != len(columns["time"])}
    if bad:
        raise InjectionTableError(
            f"{path}: columns {bad} have lengths other than gps_time's {len(columns['time'])}"
        )
    if not np.isfinite(columns["time"]).all():
        raise InjectionTableError(f"{path}: gps_time holds NaN or inf values")
    return columns, attrs


def _read_csv(path: str) -> dict[str, np.ndarray]:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(line for line in f if line.strip() and not line.startswith("#")))
    if not rows:
        raise InjectionTableError(f"{path}: empty CSV (expected a header line of column names)")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    columns = {}
    for j, name in enumerate(header):
        try:
            columns[name] = np.array([float(r[j]) for r in body], np.float64)
        except (ValueError, IndexError) as exc:
            if name in ("gps_time", "time"):
                raise InjectionTableError(
                    f"{path}: column {name!r} must hold one number per row ({exc})"
                ) from exc
            continue  # non-numeric (or ragged) column: not used
    return columns
