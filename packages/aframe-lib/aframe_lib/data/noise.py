"""Coloured Gaussian background from an analytic Advanced LIGO design PSD.

:func:`generate_background` writes the background files of the data contract (see
:mod:`aframe_lib.data.background`) and the PSD it used (``psd.hdf5``); :func:`colored_noise` is
the generator itself, usable on its own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from aframe_lib.utils import fs

logger = logging.getLogger(__name__)

PSD_FILE = "psd.hdf5"
PSD_DF = 1.0 / 16  # Hz, resolution of the stored PSD grid (noise interpolates from it)
_F_LOW, _F_FLOOR = 10.0, 2.0  # Hz: the fit holds above _F_LOW; the wall is flat below _F_FLOOR
T0, GAP = 1_000_000_000.0, 64.0  # GPS start of the first segment, seconds between segments
PSD_MODEL = "aligo_design_psd (Ajith 2011 fit)"  # the PSD's identity in psd.hdf5 and provenance
GENERATOR = "aframe_lib.data.noise.colored_noise"  # the noise generator, as provenance names it


def aligo_design_psd(frequencies: np.ndarray) -> np.ndarray:
    """One-sided PSD (strain^2/Hz) of Advanced LIGO at zero-detuned high-power design sensitivity.

    The analytic fit of Ajith, Phys. Rev. D 84, 084037 (2011), Eq. (4.7), to the design curve
    (LIGO-T0900288)::

        S(f) = 1e-48 * (0.0152 x^-4 + 0.2935 x^(9/4) + 2.7951 x^(3/2) - 6.5080 x^(3/4) + 17.7622)
        x = f / 245.4 Hz

    The fit holds from 10 Hz up. Below 10 Hz the seismic wall continues as
    ``S(10 Hz) * (10 Hz / f)^4`` and is held flat below 2 Hz (at 625 S(10 Hz)), so the value is
    finite and positive for every ``f >= 0`` and the noise stays representable in float32.

    Args:
        frequencies: Frequencies in Hz, any shape, all ``>= 0``.

    Returns:
        The PSD in strain^2/Hz, same shape as ``frequencies``, float64.
    """
    f = np.asarray(frequencies, dtype=np.float64)
    if not (np.isfinite(f).all() and (f >= 0).all()):
        raise ValueError("aligo_design_psd: frequencies must be finite and >= 0 (Hz)")
    x = np.maximum(f, _F_LOW) / 245.4
    fit = 1e-48 * (0.0152 * x**-4 + 0.2935 * x**2.25 + 2.7951 * x**1.5 - 6.5080 * x**0.75 + 17.7622)
    wall = (_F_LOW / np.clip(f, _F_FLOOR, _F_LOW)) ** 4
    return fit * wall


def colored_noise(
    psd: np.ndarray,
    frequencies: np.ndarray,
    duration: float,
    sample_rate: float,
    num_channels: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Stationary Gaussian noise with a given one-sided PSD, independent in each channel.

    The whole series is shaped at once in the frequency domain, so it has no seams. For ``N``
    samples at rate ``fs``, the one-sided periodogram ``2 |X_k|^2 / (N fs)`` must average to
    ``S(f_k)``, so each rfft bin is a complex normal with ``E|X_k|^2 = S(f_k) N fs / 2``: real
    and imaginary parts of standard deviation ``sqrt(S N fs / 4)``. The DC bin is zero and the
    Nyquist bin (even ``N``) is real with variance ``S N fs / 2``.

    Args:
        psd: One-sided PSD in strain^2/Hz, shape ``(F,)``, finite and ``>= 0``.
        frequencies: Frequencies of ``psd`` in Hz, shape ``(F,)``, increasing; the PSD is
            interpolated linearly onto the rfft grid and held constant beyond its ends.
        duration: Length in seconds.
        sample_rate: Sample rate in Hz.
        num_channels: Number of independent channels.
        rng: Source of randomness.

    Returns:
        float32 array of shape ``(num_channels, round(duration * sample_rate))``.
    """
    psd, frequencies = np.asarray(psd, np.float64), np.asarray(frequencies, np.float64)
    if psd.ndim != 1 or psd.shape != frequencies.shape or len(psd) < 2:
        raise ValueError(f"psd {psd.shape} and frequencies {frequencies.shape} must be equal 1-D")
    if not (np.isfinite(psd).all() and (psd >= 0).all() and (np.diff(frequencies) > 0).all()):
        raise ValueError("psd must be finite and >= 0, and frequencies strictly increasing")
    size = round(duration * sample_rate)
    if size < 2 or num_channels < 1:
        raise ValueError(f"need >= 2 samples and >= 1 channel, got {size} and {num_channels}")
    grid = np.fft.rfftfreq(size, d=1.0 / sample_rate)
    sigma = np.sqrt(np.interp(grid, frequencies, psd) * size * sample_rate / 4)
    sigma[0] = 0.0
    shape = (num_channels, len(grid))
    spectrum = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    if size % 2 == 0:
        spectrum[:, -1] = spectrum[:, -1].real * math.sqrt(2)
    spectrum *= sigma
    return np.fft.irfft(spectrum, n=size, axis=-1).astype(np.float32)


def _segment_durations(duration: float, segment_duration: float) -> list[float]:
    """Full segments of ``segment_duration`` s, plus the remainder (if any) as a last one."""
    if duration <= 0 or segment_duration <= 0:
        raise ValueError(f"duration={duration} and segment_duration={segment_duration} must be > 0")
    full, rest = divmod(duration, segment_duration)
    return [segment_duration] * int(full) + ([rest] if rest > 1e-9 else [])


def _planned_names(duration: float, segment_duration: float, t0: float, gap: float) -> list:
    """``(t0, duration, file name)`` of each background segment, in time order."""
    from .background import background_fname

    planned, start = [], t0
    for dur in _segment_durations(duration, segment_duration):
        planned.append((start, dur, background_fname(start, dur)))
        start += dur + gap
    return planned


def generate_background(
    out_dir: str,
    ifos: Sequence[str],
    duration: float,
    sample_rate: float,
    segment_duration: float = 1024.0,
    t0: float = T0,
    gap: float = GAP,
    seed: int = 0,
    stream: int = 0,
) -> list[str]:
    """Write independent coloured Gaussian noise for each IFO, and the PSD used.

    Args:
        out_dir: Directory (local or ``s3://``) for ``background-{t0}-{duration}.hdf5`` files
            and ``psd.hdf5``.
        ifos: IFO codes, one dataset (and one independent noise stream) each.
        duration: Total seconds of background, split into segments.
        sample_rate: Sample rate in Hz.
        segment_duration: Seconds per file; the last file holds any remainder.
        t0: GPS start (s) of the first segment.
        gap: Seconds between consecutive segments, so that each file is its own segment.
        seed: Seed; the same seed and stream write identical files.
        stream: Stream of ``seed`` (0: the training background, ``numpy``'s
            ``SeedSequence(seed)``; any other: ``SeedSequence(seed, spawn_key=(stream,))``,
            independent of every training background whatever its seed). Each file draws from
            its own child of that sequence; each file records ``(seed, stream)`` and its GPS
            span as provenance (:mod:`aframe_lib.data.provenance`).

    Returns:
        Paths of the background files, in time order.
    """
    import h5py

    from .background import write_background

    if not ifos:
        raise ValueError("generate_background: no IFOs given, e.g. ifos=['H1', 'L1']")
    frequencies = np.arange(0.0, sample_rate / 2 + PSD_DF / 2, PSD_DF)
    psd = aligo_design_psd(frequencies)
    with fs.atomic_local_path(fs.join(out_dir, PSD_FILE)) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("frequencies", data=frequencies)
        for ifo in ifos:
            f.create_dataset(ifo, data=psd)
        f.attrs.update(sample_rate=sample_rate, model=PSD_MODEL)

    planned = _planned_names(duration, segment_duration, t0, gap)
    from .provenance import synthetic

    key = (int(stream),) if stream else ()
    seeds = np.random.SeedSequence(seed, spawn_key=key).spawn(len(planned))
    paths = []
    for (start, dur, name), child in zip(planned, seeds, strict=True):
        noise = colored_noise(
            psd, frequencies, dur, sample_rate, len(ifos), np.random.default_rng(child)
        )
        path = fs.join(out_dir, name)
        record = synthetic(
            "background", GENERATOR, seed, stream, psd=PSD_MODEL,
            spans={ifo: [[start, start + dur]] for ifo in ifos},
        )  # fmt: skip
        write_background(
            path, dict(zip(ifos, noise, strict=True)), start, sample_rate, provenance=record
        )
        logger.info("wrote %s", path)
        paths.append(path)
    return paths
