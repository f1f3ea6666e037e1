"""Synthetic data, the offline default: coloured Gaussian background and IMRPhenomD waveforms.

:func:`ensure_synthetic_dataset` fills a data directory (local or ``s3://``) laid out as the
training Dataset reads it::

    background-{t0}-{duration}.hdf5   one file per segment, one dataset per IFO (see .background)
    psd.hdf5                          ``frequencies`` and one dataset per IFO: the PSD used
    waveforms.hdf5, val_waveforms.hdf5  (see .waveforms)
    synthetic.json                    the arguments, written last: present means complete

Noise comes from :func:`aligo_design_psd`; waveforms from ml4gw's IMRPhenomD. Nothing needs the
network, and the same arguments (seed included) give the same files.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aframe_lib.utils import fs
from aframe_lib.utils.errors import DataError, console_main

from .noise import (  # noqa: F401 - re-exported: the synthetic data API in one place
    GAP,
    PSD_FILE,
    T0,
    _planned_names,
    aligo_design_psd,
    colored_noise,
    generate_background,
)
from .waveforms import WaveformSet, write_waveforms

logger = logging.getLogger(__name__)

MANIFEST = "synthetic.json"
SPIN_RANGE = (-0.9, 0.9)  # aligned spins chi1, chi2 (IMRPhenomD is calibrated to |chi| < ~0.9)


class SyntheticDataError(DataError, ValueError):
    """A data directory that already holds a different dataset (the message names the fields)."""


F_MIN = 20.0  # Hz, where the synthetic waveforms start (generate_waveforms' default)


def check_synthetic_args(config: dict[str, Any], name: Any = None) -> None:
    """Check every argument of :func:`ensure_synthetic_dataset` before anything is written.

    Args:
        config: the arguments (``ifos``, ``sample_rate``, durations, counts, ``seed``).
        name: ``name(argument) -> str``, how the user wrote each argument (e.g. ``--sample-rate``
            on the command line); the argument's own name by default.

    Raises:
        SyntheticDataError: naming the argument, its value and the fix.
    """
    from .config import KNOWN_IFOS

    name = name or (lambda key: key)

    def fail(key: str, why: str) -> None:
        raise SyntheticDataError(f"{name(key)}={config[key]!r}: {why}")

    ifos = config["ifos"]
    if isinstance(ifos, str) or not ifos:
        fail("ifos", "give one or more detector codes, e.g. H1 L1")
    if unknown := [i for i in ifos if i not in KNOWN_IFOS]:
        fail("ifos", f"unknown detector(s) {unknown}; use codes out of {list(KNOWN_IFOS)}")
    if len(set(ifos)) != len(ifos):
        fail("ifos", "each detector may appear only once")
    for key in ("sample_rate", "background_duration", "segment_duration", "waveform_duration"):
        if not (math.isfinite(config[key]) and config[key] > 0):
            fail(key, "must be a positive number")
    if config["sample_rate"] <= 2 * F_MIN:
        fail("sample_rate", f"must exceed {2 * F_MIN:g} Hz: the waveforms start at {F_MIN:g} Hz")
    if config["segment_duration"] * config["sample_rate"] < 2:
        fail("segment_duration", "must hold at least 2 samples at the sample rate")
    for key in ("num_waveforms", "num_val_waveforms"):
        if int(config[key]) != config[key] or config[key] < 1:
            fail(key, "must be a positive integer")
    if not 0 < config["coalescence_time"] < config["waveform_duration"]:
        fail(
            "coalescence_time",
            f"must lie inside the waveform: between 0 and {name('waveform_duration')}="
            f"{config['waveform_duration']!r} s",
        )
    if int(config["seed"]) != config["seed"] or config["seed"] < 0:
        fail("seed", "must be a non-negative integer")


def _peak_align(plus: np.ndarray, cross: np.ndarray, index: int) -> tuple[np.ndarray, ...]:
    """Shift each row (zero fill, no wrap) so its amplitude envelope peaks at sample ``index``.

    The envelope is that of the analytic signals, ``sqrt(|A(plus)|^2 + |A(cross)|^2)``, so it
    peaks at merger even for edge-on sources whose cross polarisation vanishes.
    """
    size = plus.shape[-1]
    weights = np.zeros(size)
    weights[0], weights[1 : (size + 1) // 2] = 1.0, 2.0
    if size % 2 == 0:
        weights[size // 2] = 1.0
    envelope = sum(
        np.abs(np.fft.ifft(np.fft.fft(x, axis=-1) * weights, axis=-1)) ** 2 for x in (plus, cross)
    )
    shifts = index - envelope.argmax(axis=-1)
    source = np.arange(size)[None] - shifts[:, None]
    valid = (source >= 0) & (source < size)
    source = np.clip(source, 0, size - 1)
    return tuple(np.where(valid, np.take_along_axis(x, source, -1), 0.0) for x in (plus, cross))


def generate_waveforms(
    path: str,
    num_waveforms: int,
    sample_rate: float,
    duration: float = 8.0,
    coalescence_time: float = 6.0,
    f_min: float = 20.0,
    f_ref: float = 20.0,
    seed: int = 0,
    mass_range: tuple[float, float] = (10.0, 80.0),
    distance_range: tuple[float, float] = (100.0, 3000.0),
    batch_size: int = 256,
) -> WaveformSet:
    """Draw binary black holes, generate IMRPhenomD polarisations and write them to ``path``.

    Component masses are uniform in ``mass_range`` (``mass_1 >= mass_2``, solar masses), aligned
    spins ``chi1, chi2`` uniform in :data:`SPIN_RANGE`, distance uniform in Euclidean volume
    (ml4gw ``PowerLaw`` index 2, Mpc), inclination ``Sine`` and ``phic`` uniform in [0, 2 pi).
    ml4gw's :class:`TimeDomainCBCWaveformGenerator` places IMRPhenomD's reference time at
    ``coalescence_time``, but the amplitude peak lands up to ~30 ms away for heavy, spinning
    systems; each row is therefore shifted (zero fill) so its envelope peaks exactly at
    ``coalescence_time``, and its start is tapered over one cycle at ``f_min`` because long
    inspirals are cut by the row's left edge.

    Args:
        path: Output file (local or ``s3://``).
        num_waveforms: Number of rows N.
        sample_rate: Sample rate in Hz.
        duration: Row length in seconds.
        coalescence_time: Seconds from the start of a row to the amplitude peak.
        f_min: Lowest frequency of the waveforms (Hz).
        f_ref: Reference frequency of the phase (Hz).
        seed: Seed of the parameter draws (torch's generator, forked so global state is kept).
        mass_range: ``(min, max)`` component mass in solar masses.
        distance_range: ``(min, max)`` luminosity distance in Mpc.
        batch_size: Waveforms generated at once (bounds memory). ml4gw picks the FFT length
            per batch, so rows differ at the ~1e-3 level between batch sizes.

    Returns:
        The set written, plus/cross of shape ``(N, round(duration * sample_rate))``.
    """
    import torch
    from ml4gw.distributions import PowerLaw, Sine
    from ml4gw.waveforms import IMRPhenomD
    from ml4gw.waveforms.generator import TimeDomainCBCWaveformGenerator

    if num_waveforms < 1 or not 0 < coalescence_time < duration:
        raise ValueError(
            f"need num_waveforms >= 1 (got {num_waveforms}) and 0 < coalescence_time "
            f"({coalescence_time}) < duration ({duration})"
        )
    uniform = lambda low, high: torch.distributions.Uniform(
        torch.tensor(float(low), dtype=torch.float64),
        torch.tensor(float(high), dtype=torch.float64),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        masses = uniform(*mass_range).sample((2, num_waveforms)).double()
        drawn = {
            "mass_1": masses.max(0).values,
            "mass_2": masses.min(0).values,
            "chi1": uniform(*SPIN_RANGE).sample((num_waveforms,)),
            "chi2": uniform(*SPIN_RANGE).sample((num_waveforms,)),
            "distance": PowerLaw(*distance_range, index=2).sample((num_waveforms,)),
            "inclination": Sine().sample((num_waveforms,)),
            "phic": uniform(0, 2 * math.pi).sample((num_waveforms,)),
        }
    params = {k: v.double() for k, v in drawn.items()}
    m1, m2 = params["mass_1"], params["mass_2"]
    params["mass_ratio"] = m2 / m1  # ml4gw's convention: q = m2 / m1 <= 1
    params["chirp_mass"] = (m1 * m2) ** 0.6 / (m1 + m2) ** 0.2

    generator = TimeDomainCBCWaveformGenerator(
        IMRPhenomD(), sample_rate, duration, f_min, f_ref, right_pad=duration - coalescence_time
    )
    size = round(duration * sample_rate)
    taper = np.ones(size)  # half-Hann over one cycle at f_min: rows may start mid-inspiral
    taper_len = max(4, round(sample_rate / f_min))
    taper[:taper_len] = 0.5 - 0.5 * np.cos(np.pi * np.arange(taper_len) / taper_len)
    plus = np.empty((num_waveforms, size), np.float32)
    cross = np.empty((num_waveforms, size), np.float32)
    for i in range(0, num_waveforms, batch_size):
        batch = {k: v[i : i + batch_size] for k, v in params.items()}
        with torch.no_grad():
            hc, hp = generator(**batch, s1z=batch["chi1"], s2z=batch["chi2"])  # (cross, plus)
        hp, hc = _peak_align(hp.numpy(), hc.numpy(), round(coalescence_time * sample_rate))
        plus[i : i + batch_size], cross[i : i + batch_size] = hp * taper, hc * taper
    waveforms = WaveformSet(
        plus=plus,
        cross=cross,
        parameters={k: v.numpy() for k, v in params.items()},
        sample_rate=sample_rate,
        duration=duration,
        coalescence_time=coalescence_time,
    )
    write_waveforms(path, waveforms)
    logger.info("wrote %d waveforms to %s", num_waveforms, path)
    return waveforms


def _seed(seed: int, stream: int) -> int:
    """An independent seed for each of background (0), train (1) and validation (2) waveforms."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def ensure_synthetic_dataset(
    data_dir: str,
    ifos: Sequence[str] = ("H1", "L1"),
    sample_rate: float = 2048.0,
    background_duration: float = 4096.0,
    segment_duration: float = 1024.0,
    num_waveforms: int = 2000,
    num_val_waveforms: int = 500,
    waveform_duration: float = 8.0,
    coalescence_time: float = 6.0,
    seed: int = 0,
) -> str:
    """Generate a synthetic dataset in ``data_dir`` unless that exact dataset is already there.

    The manifest ``synthetic.json`` (these arguments) is written last, so it marks a complete
    dataset: with a matching manifest (and every file present) nothing is done; without one
    (e.g. after a kill midway) everything is written again, atomically file by file.

    Args:
        data_dir: Local directory or ``s3://bucket/prefix``.
        ifos: IFO codes of the background.
        sample_rate: Sample rate (Hz) of background and waveforms.
        background_duration: Total seconds of background.
        segment_duration: Seconds per background file.
        num_waveforms: Rows of ``waveforms.hdf5``.
        num_val_waveforms: Rows of ``val_waveforms.hdf5`` (drawn with another seed).
        waveform_duration: Seconds per waveform row.
        coalescence_time: Seconds from the start of a row to its merger.
        seed: Seed of everything; each file gets its own stream.

    Returns:
        ``data_dir``.

    Raises:
        SyntheticDataError: when ``data_dir`` holds a manifest with other arguments, or
            background files that this dataset would not write.
    """
    config: dict[str, Any] = dict(
        ifos=list(ifos),
        sample_rate=float(sample_rate),
        background_duration=float(background_duration),
        segment_duration=float(segment_duration),
        num_waveforms=int(num_waveforms),
        num_val_waveforms=int(num_val_waveforms),
        waveform_duration=float(waveform_duration),
        coalescence_time=float(coalescence_time),
        seed=int(seed),
    )
    check_synthetic_args({**config, "seed": seed})  # before anything is written
    filesystem, inner = fs.filesystem(data_dir)
    manifest = f"{inner.rstrip('/')}/{MANIFEST}"
    planned = [n for *_, n in _planned_names(background_duration, segment_duration, T0, GAP)]
    outputs = [*planned, PSD_FILE, "waveforms.hdf5", "val_waveforms.hdf5"]
    if filesystem.exists(manifest):
        found = json.loads(filesystem.cat_file(manifest))
        diff = sorted(k for k in config.keys() | found.keys() if config.get(k) != found.get(k))
        if diff:
            details = ", ".join(
                f"{k}: {found.get(k)!r} there, {config.get(k)!r} asked" for k in diff
            )
            raise SyntheticDataError(
                f"{data_dir} already holds a synthetic dataset made with other arguments "
                f"({details}); use another data directory or delete {MANIFEST} and the data"
            )
        if all(filesystem.exists(f"{inner.rstrip('/')}/{n}") for n in outputs):
            logger.info("synthetic dataset in %s is complete, nothing to do", data_dir)
            return data_dir
        filesystem.rm_file(manifest)
    elif filesystem.exists(inner):
        present = {p.rsplit("/", 1)[-1] for p in filesystem.glob(f"{inner}/background-*.hdf5")}
        if stray := sorted(present - set(planned)):
            raise SyntheticDataError(
                f"{data_dir} holds background files this synthetic dataset would not write "
                f"({', '.join(stray[:5])}): remove them or pick another data directory"
            )

    generate_background(
        data_dir, ifos, background_duration, sample_rate, segment_duration, seed=_seed(seed, 0)
    )
    for name, num, stream in (
        ("waveforms.hdf5", num_waveforms, 1),
        ("val_waveforms.hdf5", num_val_waveforms, 2),
    ):
        generate_waveforms(
            fs.join(data_dir, name),
            num,
            sample_rate,
            waveform_duration,
            coalescence_time,
            seed=_seed(seed, stream),
        )
    fs.write_bytes_atomic(fs.join(data_dir, MANIFEST), json.dumps(config, indent=2).encode())
    return data_dir


_FLAGS = {"background_duration": "--duration"}


@console_main("aframe-synthetic")
def main(argv: list[str] | None = None) -> None:
    """``aframe-synthetic``: write (or find) a synthetic dataset and say what is there.

    Every argument is checked before anything is written; errors (exit status 2) name the
    option, the value and the fix (see :mod:`aframe_lib.utils.errors` for the boundary).
    """
    parser = argparse.ArgumentParser(prog="aframe-synthetic", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--out", required=True, help="data directory, local or s3://bucket/prefix")
    add("--ifos", nargs="+", default=["H1", "L1"], help="IFO codes (default: H1 L1)")
    add("--sample-rate", type=float, default=2048.0, help="Hz (default: 2048)")
    add("--duration", type=float, default=4096.0, dest="background_duration", metavar="SECONDS",
        help="seconds of background (default: 4096)")  # fmt: skip
    add("--segment-duration", type=float, default=1024.0, help="seconds per background file")
    add("--num-waveforms", type=int, default=2000, help="training waveforms (default: 2000)")
    add("--num-val-waveforms", type=int, default=500, help="validation waveforms (default: 500)")
    add("--waveform-duration", type=float, default=8.0, help="seconds per waveform (default: 8)")
    add("--coalescence-time", type=float, default=6.0, help="s from row start to merger")
    add("--seed", type=int, default=0, help="seed of everything (default: 0)")
    add("--debug", action="store_true", help="show tracebacks (also AFRAME_DEBUG=1)")
    kwargs = vars(parser.parse_args(argv))
    kwargs.pop("debug")  # taken off by the error boundary already; listed for --help
    out = kwargs.pop("out")
    check_synthetic_args(kwargs, lambda k: _FLAGS.get(k, "--" + k.replace("_", "-")))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in ..."
    with fs.explain_storage_errors(out, "--out"):
        ensure_synthetic_dataset(out, **kwargs)
        filesystem, inner = fs.filesystem(out)
        for path in sorted(filesystem.ls(inner, detail=False)):
            print(f"{path.rsplit('/', 1)[-1]:48s} {filesystem.size(path) / 2**20:9.1f} MiB")
    print(f"synthetic dataset ready in {out}")


if __name__ == "__main__":
    main()
