"""Synthetic data, the offline default: coloured Gaussian background and IMRPhenomD waveforms.

:func:`ensure_synthetic_dataset` fills a data directory (local or ``s3://``) laid out as the
training Dataset reads it::

    background-{t0}-{duration}.hdf5   one file per segment, one dataset per IFO (see .background)
    psd.hdf5                          ``frequencies`` and one dataset per IFO: the PSD used
    waveforms.hdf5, val_waveforms.hdf5  (see .waveforms; absent when asked for 0 of them)
    synthetic.json                    the arguments, written last: present means complete

Noise comes from :func:`aligo_design_psd`; waveforms from ml4gw's IMRPhenomD, their binaries from
a :class:`WaveformPopulation` (torch/ml4gw distributions). Nothing needs the network, and the same
arguments (seed included) give the same files; each file has its own seed stream
(:func:`stream_seed`). ``aframe-data synthetic`` (:mod:`aframe_lib.data.cli`) is this function.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.distributions import Distribution

from aframe_lib.utils import fs
from aframe_lib.utils.errors import DataError

from .glitches import GLITCH_FILE, NoiseModel
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


class SyntheticDataError(DataError, ValueError):
    """A data directory that already holds a different dataset (the message names the fields)."""


F_MIN = 20.0  # Hz, where the synthetic waveforms start (generate_waveforms' default)
WAVEFORM_GENERATOR = "aframe_lib.data.synthetic.generate_waveforms"  # as provenance names it


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
    for key in ("num_waveforms", "num_val_waveforms", "num_test_waveforms"):
        if config.get(key) is None:  # num_test_waveforms: None is num_val_waveforms
            continue
        if int(config[key]) != config[key] or config[key] < 0:
            fail(key, "must be a non-negative integer (0: no such file)")
    if not 0 < config["coalescence_time"] < config["waveform_duration"]:
        fail(
            "coalescence_time",
            f"must lie inside the waveform: between 0 and {name('waveform_duration')}="
            f"{config['waveform_duration']!r} s",
        )
    if int(config["seed"]) != config["seed"] or config["seed"] < 0:
        fail("seed", "must be a non-negative integer")
    if config.get("noise") is not None:
        from .glitches import NoiseModelError

        try:
            NoiseModel.coerce(config["noise"], name("noise")).check(ifos, name("noise"))
        except NoiseModelError as exc:
            raise SyntheticDataError(str(exc)) from exc


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


# The seed streams of one ``seed``: the training background uses the seed itself, every other
# stream ``seed * 1000 + stream`` (so no stream of a seed >= 0 is the seed itself). aframe-flow
# computes the same numbers (it cannot import this module on a login node; a test compares).
# Background noise of a stream other than BACKGROUND is drawn from numpy's
# ``SeedSequence(seed, spawn_key=(stream,))`` (:func:`~aframe_lib.data.noise.generate_background`),
# which no training background (spawn key ``()``) of any seed shares.
BACKGROUND, TRAIN_WAVEFORMS, VAL_WAVEFORMS, HELDOUT_BACKGROUND, TEST_WAVEFORMS = 0, 1, 2, 3, 4
EVALUATE = 10
#: the waveform file of each waveform stream of a synthetic dataset
WAVEFORM_FILES = {
    TRAIN_WAVEFORMS: "waveforms.hdf5",
    VAL_WAVEFORMS: "val_waveforms.hdf5",
    TEST_WAVEFORMS: "test_waveforms.hdf5",
}


def stream_seed(seed: int, stream: int) -> int:
    """The seed of one stream of ``seed``: ``seed`` for :data:`BACKGROUND`, else
    ``seed * 1000 + stream`` (training/validation/test waveforms 1/2/4, ``aframe-train
    evaluate``'s injections 11, 12). The backgrounds of other streams (held-out 3, evaluate's
    own noise 10) are not drawn from this number but from numpy's ``SeedSequence(seed,
    spawn_key=(stream,))`` (:func:`~aframe_lib.data.noise.generate_background`), so no
    training background of any seed is one of them."""
    return int(seed) if stream == BACKGROUND else int(seed) * 1000 + int(stream)


# the default population, as a config would write it (instantiated the same way as a user's)
_UNIFORM = "torch.distributions.Uniform"
DEFAULT_POPULATION: dict[str, dict[str, Any] | None] = {
    "masses": {"class_path": _UNIFORM, "init_args": {"low": 10.0, "high": 80.0}},
    "mass_ratio": None,
    "spins": {"class_path": _UNIFORM, "init_args": {"low": -0.9, "high": 0.9}},
    "distance": {
        "class_path": "ml4gw.distributions.PowerLaw",
        "init_args": {"minimum": 100.0, "maximum": 3000.0, "index": 2.0},
    },
    "inclination": {"class_path": "ml4gw.distributions.Sine"},
    "phase": {"class_path": _UNIFORM, "init_args": {"low": 0.0, "high": 2 * math.pi}},
}


@dataclass(frozen=True)
class WaveformPopulation:
    """The binary black holes the synthetic waveforms are drawn from.

    Each field is a torch or ml4gw distribution (in a config: ``class_path`` + ``init_args``,
    instantiated by jsonargparse); ``None`` is its default (:data:`DEFAULT_POPULATION`).

    Args:
        masses: Component masses (solar masses). Without ``mass_ratio`` both are drawn from it
            and ``mass_1`` is the larger; default ``Uniform(10, 80)``.
        mass_ratio: ``q = mass_2 / mass_1 <= 1``; when given, ``mass_1`` is drawn from
            ``masses`` and ``mass_2 = q * mass_1``. Default: none (two component masses).
        spins: Aligned spins ``chi1``, ``chi2``, drawn independently; default
            ``Uniform(-0.9, 0.9)`` (IMRPhenomD is calibrated to ``|chi| < ~0.9``).
        distance: Luminosity distance (Mpc); default ``PowerLaw(100, 3000, index=2)``, uniform
            in Euclidean volume.
        inclination: Inclination (rad); default ``Sine()``, isotropic orientations.
        phase: Coalescence phase ``phic`` (rad); default ``Uniform(0, 2 pi)``.
    """

    masses: Distribution | None = None
    mass_ratio: Distribution | None = None
    spins: Distribution | None = None
    distance: Distribution | None = None
    inclination: Distribution | None = None
    phase: Distribution | None = None

    @classmethod
    def coerce(cls, value: Any, name: str = "population") -> WaveformPopulation:
        """A population from ``None``, a population, or a dict of field -> distribution or
        ``{class_path, init_args}`` (as the ``synthetic`` dict of a training config gives it).

        Raises:
            SyntheticDataError: for an unknown field or a value that is not a distribution.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            if unknown := sorted(set(value) - set(DEFAULT_POPULATION)):
                raise SyntheticDataError(
                    f"{name}: unknown field(s) {unknown}; the population has "
                    f"{', '.join(DEFAULT_POPULATION)}"
                )
            fields = dict(value)
        else:
            raise SyntheticDataError(
                f"{name}={value!r}: give a mapping of {', '.join(DEFAULT_POPULATION)} to "
                "distributions ({class_path: ..., init_args: ...})"
            )
        out = cls(**{k: _distribution(v, f"{name}.{k}") for k, v in fields.items()})
        # the fields given in config form, kept as given: what provenance records
        configs = {k: json.loads(json.dumps(v, default=dict)) for k, v in fields.items()
                   if isinstance(v, Mapping)}  # fmt: skip
        object.__setattr__(out, "_configs", configs)
        return out

    def resolved(self) -> dict[str, Distribution | None]:
        """Every field, defaults filled in."""
        return {
            k: getattr(self, k) if getattr(self, k) is not None else _distribution(v, k)
            for k, v in DEFAULT_POPULATION.items()
        }

    def config(self) -> dict[str, Any]:
        """Every field (defaults filled in) as ``{class_path, init_args}``: the form a config
        gives, which :meth:`coerce` reads back to the same distributions (what provenance and
        ``model.json`` record). Fields given in that form (a config, ``aframe-data``) are kept
        as given; a distribution object's arguments are read off its attributes where they can
        be, else the field is ``{"class_path": ..., "state": ...}`` (its :meth:`describe` form),
        which :meth:`coerce` refuses."""
        given = getattr(self, "_configs", {})
        return {
            k: given[k] if k in given else _config(v) if getattr(self, k) is not None else
            DEFAULT_POPULATION[k]
            for k, v in self.resolved().items()
        }  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """The fields that differ from the defaults, as JSON (what the manifest records)."""
        out = {}
        for key, value in self.resolved().items():
            text = _describe(value)
            if text != _describe(_distribution(DEFAULT_POPULATION[key], key)):
                out[key] = text
        return out


def _distribution(value: Any, name: str) -> Any:
    """``value`` as a distribution object: instantiated by jsonargparse from a config dict."""
    from torch.distributions import Distribution

    if value is None or isinstance(value, Distribution):
        return value
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--value", type=Distribution)
    try:
        cfg = parser.parse_object({"value": value})
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        return instantiate(cfg).value
    except Exception as exc:  # jsonargparse's ArgumentError, or the class's own error
        reason = " ".join(str(exc).split())[:300]
        raise SyntheticDataError(
            f"{name}={value!r}: not a distribution ({reason}); give one as class_path + "
            "init_args, e.g. {class_path: torch.distributions.Uniform, init_args: "
            "{low: 10.0, high: 50.0}}"
        ) from exc


def _config(value: Any) -> dict[str, Any] | None:
    """A distribution as ``{class_path, init_args}``, its arguments read off its attributes and
    checked by building it again (else ``{class_path, state}``, see :func:`_describe`)."""
    import inspect

    if value is None:
        return None
    cls = type(value)
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    init_args, fits = {}, True
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "validate_args") or param.kind in (param.VAR_POSITIONAL,
                                                               param.VAR_KEYWORD):  # fmt: skip
            continue
        if hasattr(value, name):
            init_args[name] = _describe(getattr(value, name))
        elif param.default is param.empty:
            fits = False
    try:
        fits = fits and _describe(
            _distribution({"class_path": class_path, "init_args": init_args}, "")
        ) == _describe(value)
    except SyntheticDataError:
        fits = False
    if not fits:
        state = _describe(value)
        return {"class_path": state.pop("class_path"), "state": state}
    return {"class_path": class_path, "init_args": init_args}


def _describe(value: Any) -> Any:
    """A JSON description of a distribution (its class and public state, recursively)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (torch.distributions.Distribution, torch.distributions.Transform)):
        cls = type(value)
        state = {k: _describe(v) for k, v in sorted(vars(value).items()) if not k.startswith("_")}
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", **state}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return type(value).__qualname__


def draw_parameters(
    num_waveforms: int, seed: int, population: WaveformPopulation | None = None
) -> dict[str, np.ndarray]:
    """Draw ``num_waveforms`` binaries from ``population`` (torch's generator seeded with
    ``seed``, forked so global state is kept), with ``mass_ratio`` and ``chirp_mass`` added.

    Returns:
        float64 arrays of shape ``(num_waveforms,)``: ``mass_1 >= mass_2`` (without a mass-ratio
        distribution), ``chi1``, ``chi2``, ``distance``, ``inclination``, ``phic``,
        ``mass_ratio = mass_2 / mass_1`` (ml4gw's convention) and ``chirp_mass``.
    """
    import torch

    dist = WaveformPopulation.coerce(population).resolved()
    n = (num_waveforms,)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if dist["mass_ratio"] is None:
            masses = dist["masses"].sample((2, num_waveforms)).double()
            mass_1, mass_2 = masses.max(0).values, masses.min(0).values
        else:
            mass_1 = dist["masses"].sample(n).double()
            mass_2 = dist["mass_ratio"].sample(n).double() * mass_1
        drawn = {
            "mass_1": mass_1,
            "mass_2": mass_2,
            "chi1": dist["spins"].sample(n),
            "chi2": dist["spins"].sample(n),
            "distance": dist["distance"].sample(n),
            "inclination": dist["inclination"].sample(n),
            "phic": dist["phase"].sample(n),
        }
    params = {k: v.double() for k, v in drawn.items()}
    m1, m2 = params["mass_1"], params["mass_2"]
    params["mass_ratio"] = m2 / m1  # ml4gw's convention: q = m2 / m1 <= 1
    params["chirp_mass"] = (m1 * m2) ** 0.6 / (m1 + m2) ** 0.2
    return {k: v.numpy() for k, v in params.items()}


def generate_waveforms(
    path: str,
    num_waveforms: int,
    sample_rate: float,
    waveform_duration: float = 8.0,
    coalescence_time: float = 6.0,
    f_min: float = F_MIN,
    f_ref: float = 20.0,
    seed: int = 0,
    population: WaveformPopulation | None = None,
    batch_size: int = 256,
    stream: int = 0,
) -> WaveformSet:
    """Draw binary black holes, generate IMRPhenomD polarisations and write them to ``path``.

    The binaries come from :func:`draw_parameters` (``population``, by default masses uniform in
    10-80 solar masses, aligned spins uniform in +-0.9, distance uniform in Euclidean volume out
    to 3 Gpc, isotropic inclination, uniform phase). ml4gw's
    :class:`TimeDomainCBCWaveformGenerator` places IMRPhenomD's reference time at
    ``coalescence_time``, but the amplitude peak lands up to ~30 ms away for heavy, spinning
    systems; each row is therefore shifted (zero fill) so its envelope peaks exactly at
    ``coalescence_time``, and its start is tapered over one cycle at ``f_min`` because long
    inspirals are cut by the row's left edge.

    Args:
        path: Output file (local or ``s3://``).
        num_waveforms: Number of rows N.
        sample_rate: Sample rate in Hz.
        waveform_duration: Row length in seconds (``waveform_duration`` of
            :func:`ensure_synthetic_dataset`).
        coalescence_time: Seconds from the start of a row to the amplitude peak.
        f_min: Lowest frequency of the waveforms (Hz).
        f_ref: Reference frequency of the phase (Hz).
        seed: Seed of the parameter draws (with ``stream``).
        population: The distributions of the binaries (:class:`WaveformPopulation`); ``None``:
            the defaults.
        batch_size: Waveforms generated at once (bounds memory). ml4gw picks the FFT length
            per batch, so rows differ at the ~1e-3 level between batch sizes.
        stream: Stream of ``seed`` the draws come from (:func:`stream_seed`; 0: ``seed``
            itself). The file records ``(seed, stream)`` and the population as provenance
            (:mod:`aframe_lib.data.provenance`).

    Returns:
        The set written, plus/cross of shape ``(N, round(waveform_duration * sample_rate))``.
    """
    import torch
    from ml4gw.waveforms import IMRPhenomD
    from ml4gw.waveforms.generator import TimeDomainCBCWaveformGenerator

    if num_waveforms < 1 or not 0 < coalescence_time < waveform_duration:
        raise ValueError(
            f"need num_waveforms >= 1 (got {num_waveforms}) and 0 < coalescence_time "
            f"({coalescence_time}) < waveform_duration ({waveform_duration})"
        )
    from .provenance import synthetic

    population = WaveformPopulation.coerce(population)
    drawn = draw_parameters(num_waveforms, stream_seed(seed, stream), population)
    params = {k: torch.as_tensor(v) for k, v in drawn.items()}

    generator = TimeDomainCBCWaveformGenerator(
        IMRPhenomD(),
        sample_rate,
        waveform_duration,
        f_min,
        f_ref,
        right_pad=waveform_duration - coalescence_time,
    )
    size = round(waveform_duration * sample_rate)
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
        parameters=drawn,
        sample_rate=sample_rate,
        duration=waveform_duration,
        coalescence_time=coalescence_time,
    )
    record = synthetic(
        "waveforms", WAVEFORM_GENERATOR, seed, stream, population=population.config()
    )
    write_waveforms(path, waveforms, provenance=record)
    logger.info("wrote %d waveforms to %s", num_waveforms, path)
    return waveforms


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
    population: WaveformPopulation | None = None,
    num_test_waveforms: int | None = None,
    noise: NoiseModel | None = None,
    background_stream: int = BACKGROUND,
) -> str:
    """Generate a synthetic dataset in ``data_dir`` unless that exact dataset is already there.

    The manifest ``synthetic.json`` (these arguments; ``population`` only where it differs from
    the defaults) is written last, so it marks a complete dataset: with a matching manifest (and
    every file present) nothing is done; without one (e.g. after a kill midway) everything is
    written again, atomically file by file.

    Args:
        data_dir: Local directory or ``s3://bucket/prefix``.
        ifos: IFO codes of the background.
        sample_rate: Sample rate (Hz) of background and waveforms.
        background_duration: Total seconds of background.
        segment_duration: Seconds per background file.
        num_waveforms: Rows of ``waveforms.hdf5`` (0: background only, no such file).
        num_val_waveforms: Rows of ``val_waveforms.hdf5`` (0: no such file).
        waveform_duration: Seconds per waveform row.
        coalescence_time: Seconds from the start of a row to its merger.
        seed: Seed of everything: the background uses ``seed`` itself (its stream
            ``background_stream``), the training, validation and test waveforms the streams
            ``stream_seed(seed, 1)``, ``(seed, 2)`` and ``(seed, 4)``.
        population: The binaries of the waveform sets (:class:`WaveformPopulation`, or a dict
            of its fields as ``class_path`` + ``init_args``); ``None``: the defaults.
        num_test_waveforms: Rows of ``test_waveforms.hdf5``, the waveforms of the test split
            (independent of those that chose the checkpoint; 0: no such file, the test split
            then injects ``val_waveforms.hdf5``); ``None``: as many as ``num_val_waveforms``.
        noise: The background's noise model (:class:`~aframe_lib.data.glitches.NoiseModel`:
            per-segment and drifting PSDs, glitches logged in ``glitches.hdf5``); ``None``:
            stationary Gaussian noise from the design PSD.
        background_stream: The seed stream of the background (0: a training background,
            numpy's ``SeedSequence(seed)``; :data:`HELDOUT_BACKGROUND` (3): held-out noise for
            evaluation, ``SeedSequence(seed, spawn_key=(3,))``, which no training background of
            any seed draws). Recorded in each file's provenance and, when not 0, the manifest.

    Returns:
        ``data_dir``.

    Raises:
        SyntheticDataError: when ``data_dir`` holds a manifest with other arguments, or
            background files that this dataset would not write, or an argument is invalid.
    """
    if num_test_waveforms is None:
        num_test_waveforms = num_val_waveforms
    config: dict[str, Any] = dict(
        ifos=list(ifos),
        sample_rate=float(sample_rate),
        background_duration=float(background_duration),
        segment_duration=float(segment_duration),
        num_waveforms=int(num_waveforms),
        num_val_waveforms=int(num_val_waveforms),
        num_test_waveforms=int(num_test_waveforms),
        waveform_duration=float(waveform_duration),
        coalescence_time=float(coalescence_time),
        seed=int(seed),
    )
    if int(background_stream) != background_stream or background_stream < 0:
        raise SyntheticDataError(
            f"background_stream={background_stream!r}: must be a non-negative integer (0 for "
            f"training data, {HELDOUT_BACKGROUND} for held-out noise)"
        )
    if background_stream != BACKGROUND:  # older manifests (training data) stay as they are
        config["background_stream"] = int(background_stream)
    check_synthetic_args({**config, "seed": seed, "noise": noise})  # before anything is written
    population = WaveformPopulation.coerce(population)
    if described := population.describe():
        config["population"] = described
    noise = NoiseModel.coerce(noise).check(ifos)
    if noise_described := noise.describe():
        config["noise"] = noise_described
    filesystem, inner = fs.filesystem(data_dir)
    manifest = f"{inner.rstrip('/')}/{MANIFEST}"
    planned = [n for *_, n in _planned_names(background_duration, segment_duration, T0, GAP)]
    counts = {TRAIN_WAVEFORMS: num_waveforms, VAL_WAVEFORMS: num_val_waveforms,
              TEST_WAVEFORMS: num_test_waveforms}  # fmt: skip
    sets = [(WAVEFORM_FILES[k], int(n), k) for k, n in counts.items() if n > 0]
    outputs = [*planned, PSD_FILE, *(name for name, *_ in sets)]
    if noise.has_glitches:
        outputs.append(GLITCH_FILE)
    if filesystem.exists(manifest):
        found = json.loads(filesystem.cat_file(manifest))
        found.setdefault("num_test_waveforms", config["num_test_waveforms"])  # older manifests
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
        data_dir, ifos, background_duration, sample_rate, segment_duration,
        seed=seed, stream=int(background_stream), noise=noise,
    )  # fmt: skip
    for name, num, stream in sets:
        generate_waveforms(
            fs.join(data_dir, name),
            num,
            sample_rate,
            waveform_duration,
            coalescence_time,
            seed=seed,
            stream=stream,
            population=population,
        )
    fs.write_bytes_atomic(fs.join(data_dir, MANIFEST), json.dumps(config, indent=2).encode())
    return data_dir


def main(argv: list[str] | None = None) -> None:
    """``aframe-synthetic``, the deprecated alias of ``aframe-data synthetic`` (see :mod:`.cli`)."""
    from .cli import synthetic_main

    synthetic_main(argv)
