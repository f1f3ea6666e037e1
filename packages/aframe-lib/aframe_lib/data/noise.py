"""Coloured Gaussian background from an analytic Advanced LIGO design PSD.

:func:`generate_background` writes the background files of the data contract (see
:mod:`aframe_lib.data.background`) and the PSD it used (``psd.hdf5``); :func:`colored_noise` is
the generator itself, usable on its own.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from aframe_lib.utils import fs

if TYPE_CHECKING:
    from .glitches import NoiseModel

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
        psd: One-sided PSD in strain^2/Hz, shape ``(F,)`` (every channel) or
            ``(num_channels, F)`` (one per channel; the random draws are the same), finite and
            ``>= 0``.
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
    rows = psd if psd.ndim == 2 and len(psd) == num_channels else psd[None]
    if rows.ndim != 2 or rows.shape[-1] != len(frequencies) or frequencies.ndim != 1:
        raise ValueError(
            f"psd {psd.shape} and frequencies {frequencies.shape} must be equal 1-D "
            "(or psd (num_channels, F))"
        )
    if len(frequencies) < 2:
        raise ValueError("psd and frequencies need at least 2 points")
    if not (np.isfinite(psd).all() and (psd >= 0).all() and (np.diff(frequencies) > 0).all()):
        raise ValueError("psd must be finite and >= 0, and frequencies strictly increasing")
    size = round(duration * sample_rate)
    if size < 2 or num_channels < 1:
        raise ValueError(f"need >= 2 samples and >= 1 channel, got {size} and {num_channels}")
    grid = np.fft.rfftfreq(size, d=1.0 / sample_rate)
    sigma = np.stack(
        [np.sqrt(np.interp(grid, frequencies, r) * size * sample_rate / 4) for r in rows]
    )
    sigma[:, 0] = 0.0
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
    noise: NoiseModel | dict | None = None,
) -> list[str]:
    """Write independent coloured Gaussian noise for each IFO, and the PSD used.

    Args:
        out_dir: Directory (local or ``s3://``) for ``background-{t0}-{duration}.hdf5`` files
            and ``psd.hdf5`` (and ``glitches.hdf5`` when the noise model has glitches).
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
        noise: The noise model (:class:`~aframe_lib.data.glitches.NoiseModel`: PSDs varying
            per segment and drifting within one, glitches); ``None``: stationary Gaussian noise
            from the design PSD. Its Gaussian draws are those of the default, whatever it adds.

    Returns:
        Paths of the background files, in time order.
    """
    import h5py

    from . import glitches as gl
    from .background import write_background
    from .provenance import synthetic

    if not ifos:
        raise ValueError("generate_background: no IFOs given, e.g. ifos=['H1', 'L1']")
    model = gl.NoiseModel.coerce(noise).check(ifos)
    frequencies = np.arange(0.0, sample_rate / 2 + PSD_DF / 2, PSD_DF)
    reference = aligo_design_psd(frequencies)
    bases = [np.stack([reference] * len(ifos))]  # the base PSD(s) a segment draws from
    if model.psd_files:
        bases = [
            np.stack([np.interp(frequencies, *gl.read_psd_file(p, ifo)) for ifo in ifos])
            for p in model.psd_files
        ]
    psd_name = PSD_MODEL
    if model.psd_files:
        psd_name = "psd_files: " + ", ".join(p.rsplit("/", 1)[-1] for p in model.psd_files)

    planned = _planned_names(duration, segment_duration, t0, gap)
    key = (int(stream),) if stream else ()
    seeds = np.random.SeedSequence(seed, spawn_key=key).spawn(len(planned))
    psd_seeds, glitch_seeds = gl.glitch_sequences(seed, stream, len(planned))
    described = model.describe()
    blips = gl._Blips()
    paths, log, chosen, factors = [], [], [], []
    average = np.zeros((len(ifos), len(frequencies)))
    for i, ((start, dur, name), child) in enumerate(zip(planned, seeds, strict=True)):
        psd_rng = np.random.default_rng(psd_seeds[i])
        which = int(psd_rng.integers(len(bases))) if len(bases) > 1 else 0
        scales = gl.draw_scales(model, psd_rng, len(ifos))
        base = bases[which]
        data = colored_noise(
            base if model.psd_files else reference, frequencies, dur, sample_rate, len(ifos),
            np.random.default_rng(child),
        )  # fmt: skip
        if model.varies_psd:
            fraction = (np.arange(data.shape[-1]) + 0.5) / data.shape[-1]
            for j in range(len(ifos)):
                data[j] *= np.sqrt(gl.scale_at(scales[j], fraction)).astype(np.float32)
        log_ratio = np.log(scales[:, 1] / scales[:, 0])  # the factor's mean over the segment
        flat = np.abs(log_ratio) < 1e-12
        mean = np.where(
            flat, scales[:, 0], np.diff(scales, axis=1)[:, 0] / np.where(flat, 1, log_ratio)
        )
        average += dur * mean[:, None] * base
        chosen.append(which)
        factors.append(scales)
        if model.has_glitches:
            for j, (ifo, ifo_seed) in enumerate(
                zip(ifos, glitch_seeds[i].spawn(len(ifos)), strict=True)
            ):
                found = gl.segment_glitches(
                    model, ifo, dur, sample_rate, frequencies, base[j], scales[j],
                    np.random.default_rng(ifo_seed), blips,
                )  # fmt: skip
                for g in found:
                    data[j, g["start"] : g["start"] + len(g["strain"])] += g["strain"]
                    row = {k: v for k, v in g.items() if k not in ("strain", "start")}
                    log.append({**row, "ifo": ifo, "time": start + g["time"]})  # no strain kept
        path = fs.join(out_dir, name)
        record = synthetic(
            "background", GENERATOR, seed, stream, psd=psd_name,
            spans={ifo: [[start, start + dur]] for ifo in ifos}, noise=described or None,
        )  # fmt: skip
        write_background(
            path, dict(zip(ifos, data, strict=True)), start, sample_rate, provenance=record
        )
        logger.info("wrote %s", path)
        paths.append(path)

    average /= sum(dur for _, dur, _ in planned)
    with fs.atomic_local_path(fs.join(out_dir, PSD_FILE)) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("frequencies", data=frequencies)
        for j, ifo in enumerate(ifos):
            f.create_dataset(ifo, data=average[j] if model.varies_psd else reference)
        f.attrs.update(sample_rate=sample_rate, model=psd_name)
        if model.varies_psd:  # each segment's PSD: scale(t) * base PSD `file`
            f.attrs["noise"] = json.dumps(described, sort_keys=True)
            seg = f.create_group("segments")
            seg.create_dataset("t0", data=np.array([p[0] for p in planned]))
            seg.create_dataset("duration", data=np.array([p[1] for p in planned]))
            seg.create_dataset("file", data=np.array(chosen, np.int64))
            for j, ifo in enumerate(ifos):
                seg.create_dataset(f"scale/{ifo}", data=np.stack([s[j] for s in factors]))
    if model.has_glitches:
        bank = gl.glitch_bank_record(model.glitch_bank) if model.glitch_bank else None
        record = synthetic(
            "glitches", GENERATOR, seed, stream, psd=psd_name, noise=model.to_dict(),
            spans={ifo: [[p[0], p[0] + p[1]] for p in planned] for ifo in ifos},
            versions=gl.generator_versions(model), glitch_bank=bank,
        )  # fmt: skip
        gl.write_glitches(fs.join(out_dir, gl.GLITCH_FILE), log, model, record)
    return paths
