"""Foreground data: a population of waveforms injected into background strain, or a table of
injections already in the strain (:func:`read_injection_table`).

:func:`inject_population` copies each span of strain (any layout the search reads, resampled
to the waveforms' rate when faster) with waveforms added at regular times (``spacing`` seconds
apart, the first ``start_pad`` seconds after the span starts, the last ending before it
does), projected onto the IFOs at random sky positions with ml4gw
(:class:`~aframe_lib.data.injection.Injector`) and kept at their physical amplitude (their
distance is the one they were generated at). The result is a directory in the background
layout (so the search reads it like any other) and ``injections.hdf5`` beside it:

- ``time``: GPS time of coalescence at the geocentre (s);
- ``snr``: network optimal SNR (against ``psd.hdf5`` when the background directory has one,
  else the median Welch PSD of the span it was injected into), ``ifo_snr`` ``(N, num_ifos)``;
- ``dec``, ``psi``, ``phi`` (rad) and every source parameter of the waveform file;
- attributes: ``ifos``, ``sample_rate``, ``spacing``, ``distance_range`` (when given).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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


def _psd_of(psd_dir: str | None, ifos: Sequence[str], strain: np.ndarray, sample_rate: float):
    """``(num_ifos, freqs)`` float64 PSD from 0 Hz to Nyquist for the SNRs."""
    path = Path(psd_dir, "psd.hdf5") if psd_dir else None
    if path is not None and path.exists():
        with h5py.File(path, "r") as f:
            if all(ifo in f for ifo in ifos):
                return torch.as_tensor(np.stack([f[ifo][:] for ifo in ifos]), dtype=torch.float64)
    from ml4gw.transforms import SpectralDensity

    sd = SpectralDensity(sample_rate, 4.0, average="median")
    return sd(torch.as_tensor(strain, dtype=torch.float64))


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
) -> dict[str, np.ndarray]:
    """Write ``out_dir``: the strain of ``data`` plus injections, and their table.

    Args:
        data: strain to inject into: spans (:func:`.strain.find_spans`, at the waveforms'
            rate, resampled views included), or a path :func:`.strain.find_spans` reads (a
            background directory or file, or a mock-data-challenge file).
        out_dir: local directory for the injected files (one background file per span, at
            the waveforms' rate) and ``injections.hdf5``.
        waveforms: the population, used in order (at most one injection per waveform).
        ifos: IFOs to project onto, in channel order.
        spacing: seconds between consecutive injections (more than the search's cluster
            window, so each injection is its own event).
        start_pad: seconds from a span's start to its first injection (at least the search's
            warm-up, ``Search.min_duration``, or early injections are never searched).
        highpass: Hz below which nothing counts towards the SNRs.
        distance_range: ``(min, max)`` Mpc the distances were drawn from, stored for volumes.
        seed: seed of the sky positions.

    Returns:
        The injection table (also written to ``out_dir/injections.hdf5``).
    """
    rate = waveforms.sample_rate
    psd_dir = None
    if isinstance(data, str | Path):
        psd_dir = str(data) if Path(data).is_dir() else None
        spans = find_spans(str(data), ifos, rate)
    else:
        spans = list(data)
    for span in spans:
        if not np.isclose(span.sample_rate, rate):
            raise ValueError(
                f"waveforms are sampled at {rate} Hz but the strain of {span.channels[0].path} "
                f"at {span.sample_rate} Hz"
            )
    injector = Injector(ifos, rate, highpass)
    index = round(waveforms.coalescence_time * rate)
    after = waveforms.duration - waveforms.coalescence_time
    used, table = 0, []
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for seg in spans:
            times = np.arange(seg.t0 + start_pad, seg.t0 + seg.duration - after, spacing)
            times = times[: len(waveforms.plus) - used]
            strain = seg.read().astype(np.float64)
            if len(times):
                rows = slice(used, used + len(times))
                cross = torch.as_tensor(waveforms.cross[rows], dtype=torch.float32)
                plus = torch.as_tensor(waveforms.plus[rows], dtype=torch.float32)
                sky = injector.sample_sky(len(times))
                responses = injector.project(cross, plus, sky)
                # the generator's PSD only where the strain is as stored (not resampled)
                psd = _psd_of(psd_dir if seg.factor == 1 else None, ifos, strain, rate)
                ifo_snr = torch.stack(
                    [
                        injector.snr(responses[:, i : i + 1], psd[i : i + 1])
                        for i in range(len(ifos))
                    ],
                    1,
                )
                starts = np.round((times - seg.t0) * rate).astype(int) - index
                size = responses.shape[-1]
                for response, start in zip(responses.numpy(), starts, strict=True):
                    lo, hi = max(start, 0), min(start + size, seg.size)
                    strain[:, lo:hi] += response[:, lo - start : hi - start]
                exact = seg.t0 + (starts + index) / rate  # on the sample grid
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
            write_background(path, dict(zip(ifos, strain, strict=True)), seg.t0, rate)
    if not table:
        raise ValueError(
            f"no injection fits {data if isinstance(data, str | Path) else 'the spans'}: they "
            f"must be longer than start_pad ({start_pad} s) + {after} s after coalescence"
        )
    injections = {k: np.concatenate([t[k] for t in table]) for k in table[0]}
    with atomic_local_path(Path(out_dir, INJECTIONS_FILE)) as tmp, h5py.File(tmp, "w") as f:
        for key, value in injections.items():
            f.create_dataset(key, data=value)
        f.attrs.update(ifos=",".join(ifos), sample_rate=rate, spacing=spacing)
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
