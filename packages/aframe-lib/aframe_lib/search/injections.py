"""Foreground data: a population of waveforms injected into background strain.

:func:`inject_population` copies each background file of a directory with waveforms added at
regular times (``spacing`` seconds apart, the first ``start_pad`` seconds after the file starts,
the last ending before it does), projected onto the IFOs at random sky positions with ml4gw
(:class:`~aframe_lib.data.injection.Injector`) and kept at their physical amplitude (their
distance is the one they were generated at). The result is a directory in the background
layout (so the search reads it like any other) and ``injections.hdf5`` beside it:

- ``time``: GPS time of coalescence at the geocentre (s);
- ``snr``: network optimal SNR (against ``psd.hdf5`` when the background directory has one,
  else the median Welch PSD of the file it was injected into), ``ifo_snr`` ``(N, num_ifos)``;
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

from aframe_lib.data.background import (
    background_fname,
    list_segments,
    read_segment,
    write_background,
)
from aframe_lib.data.injection import Injector
from aframe_lib.data.waveforms import WaveformSet
from aframe_lib.utils.fs import atomic_local_path

logger = logging.getLogger(__name__)

INJECTIONS_FILE = "injections.hdf5"


def _psd_of(data_dir: str, ifos: Sequence[str], strain: np.ndarray, sample_rate: float):
    """``(num_ifos, freqs)`` float64 PSD from 0 Hz to Nyquist for the SNRs."""
    path = Path(data_dir, "psd.hdf5")
    if path.exists():
        with h5py.File(path, "r") as f:
            if all(ifo in f for ifo in ifos):
                return torch.as_tensor(np.stack([f[ifo][:] for ifo in ifos]), dtype=torch.float64)
    from ml4gw.transforms import SpectralDensity

    sd = SpectralDensity(sample_rate, 4.0, average="median")
    return sd(torch.as_tensor(strain, dtype=torch.float64))


def inject_population(
    data_dir: str,
    out_dir: str,
    waveforms: WaveformSet,
    ifos: Sequence[str],
    spacing: float,
    start_pad: float,
    highpass: float | None = None,
    distance_range: tuple[float, float] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write ``out_dir``: the background of ``data_dir`` plus injections, and their table.

    Args:
        data_dir: background directory (the project's layout) to inject into.
        out_dir: local directory for the injected files and ``injections.hdf5``.
        waveforms: the population, used in order (at most one injection per waveform).
        ifos: IFOs to project onto, in channel order.
        spacing: seconds between consecutive injections (more than the search's cluster
            window, so each injection is its own event).
        start_pad: seconds from a file's start to its first injection (at least the search's
            warm-up, ``Search.min_duration``, or early injections are never searched).
        highpass: Hz below which nothing counts towards the SNRs.
        distance_range: ``(min, max)`` Mpc the distances were drawn from, stored for volumes.
        seed: seed of the sky positions.

    Returns:
        The injection table (also written to ``out_dir/injections.hdf5``).
    """
    segments = list_segments(data_dir, ifos)
    rate = segments[0].sample_rate
    if not np.isclose(waveforms.sample_rate, rate):
        raise ValueError(
            f"waveforms are sampled at {waveforms.sample_rate} Hz but {data_dir} at {rate} Hz"
        )
    injector = Injector(ifos, rate, highpass)
    index = round(waveforms.coalescence_time * rate)
    after = waveforms.duration - waveforms.coalescence_time
    used, table = 0, []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for seg in segments:
            times = np.arange(seg.t0 + start_pad, seg.t0 + seg.duration - after, spacing)
            times = times[: len(waveforms.plus) - used]
            strain = read_segment(seg, ifos).astype(np.float64)
            if len(times):
                rows = slice(used, used + len(times))
                cross = torch.as_tensor(waveforms.cross[rows], dtype=torch.float32)
                plus = torch.as_tensor(waveforms.plus[rows], dtype=torch.float32)
                sky = injector.sample_sky(len(times))
                responses = injector.project(cross, plus, sky)
                psd = _psd_of(data_dir, ifos, strain, rate)
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
            f"no injection fits {data_dir}: files must be longer than start_pad ({start_pad} s) "
            f"+ {after} s after coalescence"
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
