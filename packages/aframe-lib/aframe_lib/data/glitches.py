"""The synthetic noise model: PSDs that vary between and drift within segments, and glitches.

:class:`NoiseModel` is the ``noise`` argument of
:func:`~aframe_lib.data.synthetic.ensure_synthetic_dataset` (``aframe-data synthetic
--noise.glitch_rates '{"H1": 0.3, "L1": 1.1}' ...``). Its default is stationary Gaussian noise
from the reference PSD, exactly the noise written before the model existed (same files, same
bytes). What it adds, segment by segment and IFO by IFO
(:func:`~aframe_lib.data.noise.generate_background`):

PSD
    Each segment's PSD is the reference PSD (or one of ``psd_files``, drawn per segment) times a
    factor drawn log-uniform in ``psd_scale``; within the segment the factor drifts log-linearly
    to ``start * psd_drift**u`` (``u ~ U(-1, 1)``) at its end, by multiplying the stationary noise
    by ``sqrt(factor(t))`` (locally stationary noise of PSD ``factor(t) * S(f)``). The factors of
    every segment and IFO are written to ``psd.hdf5`` (``segments/``).
Glitches
    Per IFO, a Poisson process of ``glitch_rates[ifo]`` per minute; each glitch's type drawn
    from ``glitch_types`` and its SNR from ``p(rho) ~ rho**snr_index`` on
    ``[snr_minimum, snr_maximum]``. Types: ``blip`` (gengli's CTGAN, trained on LIGO blips,
    output whitened at 4096 Hz and coloured here with the segment's PSD; V1 has no gengli model
    and gets the H1 generator's blips), ``sine_gaussian`` and ``scattered_light`` (arches), both
    parametric. Each glitch is scaled so that ``rho^2 = 4 int_{20 Hz} |g(f)|^2 / S(f) df`` with
    the PSD of its segment at its time, and added to the raw strain. Every glitch's IFO, time,
    type, SNR and parameters go to ``glitches.hdf5`` (:func:`read_glitches`).

Randomness: the Gaussian draws are those of the model-free noise (the same seed stream); PSD
factors and glitches draw from their own sequences, one child per segment and per IFO, so the
glitches of one IFO do not depend on another IFO's rate, and subtracting the noise written with
glitches off from that written with them on leaves exactly the logged glitches. gengli reseeds
torch's global generator: its calls run inside ``torch.random.fork_rng`` (global state kept),
and only here, in ``aframe-data`` -- never inside training.

The reference glitch model (:meth:`NoiseModel.reference`, see ``docs/concepts/noise.md`` for
the sources): 0.3 / 1.1 / 0.47 glitches per minute in H1 / L1 / V1 (GWTC-2's O3a single-
detector rates; V1's unverified), ``p(rho) ~ rho^-3`` on 7.5-200, half blips, a quarter
each sine-Gaussians and scattered-light arches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from aframe_lib.utils.errors import DataError

GLITCH_FILE = "glitches.hdf5"
TYPES = ("blip", "sine_gaussian", "scattered_light")
SNR_F_LOW = 20.0  # Hz: the glitch SNR integral starts here (as the waveforms do)
GENGLI_RATE = 4096.0  # Hz: gengli's output rate
#: the gengli generator each IFO's blips come from (gengli has weights for H1 and L1 only)
BLIP_MODEL = {"H1": "H1", "L1": "L1", "V1": "H1"}
#: glitches per minute, GWTC-2 (Abbott et al. 2021, PRX 11 021053, Sec. II): O3a
#: single-detector Omicron glitch rates (SNR > 6.5, 10-2048 Hz); V1's 0.47 is unverified
#: (recalled, not checked against the paper: see docs/concepts/noise.md)
REFERENCE_RATES = {"H1": 0.3, "L1": 1.1, "V1": 0.47}
REFERENCE_TYPES = {"blip": 0.5, "sine_gaussian": 0.25, "scattered_light": 0.25}
# parametric families' parameter ranges (a choice, see docs/concepts/noise.md)
SG_FREQUENCY = (30.0, 500.0)  # Hz, log-uniform
SG_Q = (3.0, 30.0)  # log-uniform
ARCH_PEAK = (20.0, 60.0)  # Hz, uniform: slow-scattering arches peak below ~60 Hz
ARCH_DRIVE = (0.1, 0.3)  # Hz, uniform: the microseismic drive; one arch lasts 1 / (2 f)
# seed entropy of the model's own sequences (apart from the Gaussian draws')
_PSD_KEY, _GLITCH_KEY = 0x25_01, 0x25_02


class NoiseModelError(DataError, ValueError):
    """A noise model that cannot be used (the message names the field, value and fix)."""


@dataclass(frozen=True)
class NoiseModel:
    """The synthetic noise (see the module docstring); the defaults are stationary Gaussian
    noise from the reference PSD, no glitches.

    Args:
        psd_scale: ``[low, high]``: each segment's PSD is its base PSD times a factor drawn
            log-uniform in this range (per IFO and segment); ``[1, 1]``: the base PSD.
        psd_drift: Within a segment the factor moves log-linearly from its start value ``s`` to
            ``s * psd_drift**u``, ``u ~ U(-1, 1)``, at the segment's end (1: no drift).
        psd_files: PSD files the base PSD is drawn from, one per segment (uniformly): HDF5 in
            ``psd.hdf5``'s layout (``frequencies`` + one PSD per IFO) or two-column text
            (frequency in Hz, amplitude spectral density in 1/sqrt(Hz), as LIGO publishes its
            observing-run curves) used for every IFO. Empty: the analytic aLIGO design PSD.
        glitch_rates: Glitches per minute per IFO, e.g. ``{"H1": 0.3, "L1": 1.1}`` (an IFO
            not named gets none).
        glitch_types: Relative weight of each glitch type (``blip``, ``sine_gaussian``,
            ``scattered_light``).
        snr_minimum: Lowest glitch SNR.
        snr_maximum: Highest glitch SNR.
        snr_index: Power-law index of the glitch SNRs, ``p(rho) ~ rho**snr_index``.
        glitch_bank: A glitch bank (``aframe-data glitches``, at the data's sample rate) whose
            rows are the glitches' shapes and types, drawn uniformly (``glitch_types`` is then
            unused; the SNRs are still drawn from the SNR law): e.g. evaluation noise with the
            glitches of a bank made with another seed than the training bank's. ``None``:
            shapes generated here (gengli blips, sine-Gaussians, arches).
    """

    psd_scale: tuple[float, float] = (1.0, 1.0)
    psd_drift: float = 1.0
    psd_files: tuple[str, ...] = ()
    glitch_rates: dict[str, float] = field(default_factory=dict)
    glitch_types: dict[str, float] = field(default_factory=lambda: dict(REFERENCE_TYPES))
    snr_minimum: float = 7.5
    snr_maximum: float = 200.0
    snr_index: float = -3.0
    glitch_bank: str | None = None

    @classmethod
    def reference(cls, ifos: Any = ("H1", "L1"), **changes: Any) -> NoiseModel:
        """The reference glitch model (stationary PSD) for ``ifos``, with ``changes``."""
        rates = {ifo: REFERENCE_RATES[ifo] for ifo in ifos}
        return cls(**{"glitch_rates": rates, **changes})

    @classmethod
    def coerce(cls, value: Any, name: str = "noise") -> NoiseModel:
        """A model from ``None`` (the default), a model, or a mapping of its fields."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise NoiseModelError(
                f"{name}={value!r}: give a mapping of {', '.join(f.name for f in fields(cls))}"
            )
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(value) - known):
            raise NoiseModelError(f"{name}: unknown field(s) {unknown}; known: {sorted(known)}")
        values = dict(value)
        for key in ("psd_scale", "psd_files"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    @property
    def varies_psd(self) -> bool:
        return tuple(self.psd_scale) != (1.0, 1.0) or self.psd_drift != 1.0 or bool(self.psd_files)

    @property
    def has_glitches(self) -> bool:
        return any(rate > 0 for rate in self.glitch_rates.values())

    @property
    def makes_blips(self) -> bool:
        """Whether the glitches it makes (in noise at its rates, or in a bank) include blips
        made with gengli."""
        return not self.glitch_bank and self.glitch_types.get("blip", 0) > 0

    def is_default(self) -> bool:
        return not (self.varies_psd or self.has_glitches)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON (lists for tuples)."""
        return json.loads(json.dumps(asdict(self)))

    def describe(self) -> dict[str, Any]:
        """The fields that differ from the defaults (what manifests and provenance record);
        ``{}`` for the default model. The glitch-only fields are kept only with glitches."""
        default = NoiseModel().to_dict()
        out = {k: v for k, v in self.to_dict().items() if v != default[k]}
        if not self.has_glitches:
            out = {k: v for k, v in out.items() if k.startswith("psd")}
        return out

    def check(self, ifos: Any = (), name: str = "noise") -> NoiseModel:
        """``self`` if usable for ``ifos``; else :class:`NoiseModelError` naming the field."""

        def fail(key: str, value: Any, why: str) -> None:
            raise NoiseModelError(f"{name}.{key}={value!r}: {why}")

        low_high = tuple(self.psd_scale)
        if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1] < math.inf:
            fail("psd_scale", list(low_high), "give [low, high] with 0 < low <= high")
        if not (math.isfinite(self.psd_drift) and self.psd_drift >= 1):
            fail("psd_drift", self.psd_drift, "must be a number >= 1 (1: no drift)")
        for key, value in self.glitch_rates.items():
            if not (math.isfinite(value) and value >= 0):
                fail(f"glitch_rates.{key}", value, "must be glitches per minute, >= 0")
        if ifos and (stray := sorted(set(self.glitch_rates) - set(ifos))):
            fail("glitch_rates", self.glitch_rates, f"names IFO(s) {stray} not among {list(ifos)}")
        if unknown := sorted(set(self.glitch_types) - set(TYPES)):
            fail("glitch_types", self.glitch_types, f"unknown type(s) {unknown}; use {TYPES}")
        weights = list(self.glitch_types.values())
        if not weights or any(not (w >= 0) for w in weights) or sum(weights) <= 0:
            fail("glitch_types", self.glitch_types, "give weights >= 0, at least one positive")
        if not 0 < self.snr_minimum < self.snr_maximum < math.inf:
            fail("snr_minimum", self.snr_minimum, f"need 0 < snr_minimum < snr_maximum "
                 f"({self.snr_maximum})")  # fmt: skip
        if not math.isfinite(self.snr_index):
            fail("snr_index", self.snr_index, "must be a finite number")
        if self.glitch_bank is not None:
            from aframe_lib.utils import fs

            bank = self.glitch_bank
            where = fs.filesystem(bank) if isinstance(bank, str) else None
            if where is None or not where[0].exists(where[1]):
                fail("glitch_bank", self.glitch_bank, "no such file: give a glitch bank made "
                     "with `aframe-data glitches --path ...`")  # fmt: skip
        if self.has_glitches and self.makes_blips:
            try:
                import gengli  # noqa: F401
            except ImportError:
                why = "blips need gengli (not installed): pip install 'aframe-lib[glitch]'"
                fail("glitch_types", self.glitch_types, why + ", or set blip's weight to 0")
        return self


# ----------------------------------------------------------------------------- PSDs


def read_psd_file(path: str, ifo: str) -> tuple[np.ndarray, np.ndarray]:
    """``(frequencies, psd)`` of one IFO from a PSD file (see ``NoiseModel.psd_files``)."""
    from aframe_lib.utils import fs

    filesystem, inner = fs.filesystem(path)
    if not filesystem.exists(inner):
        raise NoiseModelError(f"noise.psd_files: {path} does not exist; give existing PSD files")
    if inner.endswith((".hdf5", ".h5", ".hdf")):
        import h5py

        with filesystem.open(inner, "rb") as src, h5py.File(src, "r") as f:
            if ifo not in f or "frequencies" not in f:
                raise NoiseModelError(
                    f"noise.psd_files: {path} has no 'frequencies' and {ifo!r} datasets "
                    f"(it has {sorted(f)}); write one PSD per IFO beside 'frequencies'"
                )
            return np.asarray(f["frequencies"], np.float64), np.asarray(f[ifo], np.float64)
    with filesystem.open(inner, "rt") as src:
        table = np.loadtxt(src, ndmin=2)
    if table.shape[1] < 2:
        raise NoiseModelError(f"noise.psd_files: {path}: need two columns (Hz, ASD)")
    return table[:, 0].astype(np.float64), table[:, 1].astype(np.float64) ** 2


def draw_scales(model: NoiseModel, rng: np.random.Generator, num_ifos: int) -> np.ndarray:
    """Each IFO's PSD factor at the start and end of one segment, shape ``(num_ifos, 2)``."""
    low, high = (math.log(x) for x in model.psd_scale)
    start = np.exp(rng.uniform(low, high, num_ifos))
    end = start * model.psd_drift ** rng.uniform(-1.0, 1.0, num_ifos)
    return np.stack([start, end], axis=1)


def scale_at(scales: np.ndarray, fraction: np.ndarray | float) -> np.ndarray:
    """The PSD factor (log-linear between start and end) at ``fraction`` of a segment."""
    start, end = np.log(scales[..., 0]), np.log(scales[..., 1])
    return np.exp(start + (end - start) * np.asarray(fraction))


# ----------------------------------------------------------------------------- glitches


def _power_law(rng: np.random.Generator, n: int, low: float, high: float, index: float):
    u = rng.uniform(size=n)
    if index == -1:
        return low * (high / low) ** u
    a = index + 1
    return (low**a + u * (high**a - low**a)) ** (1 / a)


def glitch_snr(glitch: np.ndarray, sample_rate: float, frequencies, psd, f_low=SNR_F_LOW):
    """``sqrt(4 int_{f_low} |g(f)|^2 / S(f) df)`` of a strain series ``glitch``, zero padded
    to at least 8 s so the integral's grid resolves ``f_low`` and the PSD (a 50 ms glitch's
    own FFT has 20 Hz bins)."""
    size = max(glitch.shape[-1], int(8 * sample_rate))
    grid = np.fft.rfftfreq(size, 1 / sample_rate)
    g = np.fft.rfft(glitch, n=size) / sample_rate
    keep = grid >= f_low
    s = np.interp(grid[keep], frequencies, psd)
    return math.sqrt(4 * (sample_rate / size) * float(np.sum(np.abs(g[keep]) ** 2 / s)))


def _colour(white: np.ndarray, sample_rate: float, frequencies, psd) -> np.ndarray:
    """A whitened 4096 Hz series (gengli's) coloured with ``psd`` at ``sample_rate``: zero
    padded to 1 s each side, multiplied by ``sqrt(S)`` above 10 Hz, resampled in frequency."""
    pad = int(GENGLI_RATE)
    white = np.pad(white, (pad, pad))
    size = round(len(white) * sample_rate / GENGLI_RATE)
    spectrum = np.fft.rfft(white)[: size // 2 + 1]
    if len(spectrum) < size // 2 + 1:
        spectrum = np.pad(spectrum, (0, size // 2 + 1 - len(spectrum)))
    grid = np.fft.rfftfreq(size, 1 / sample_rate)
    spectrum = spectrum * np.sqrt(np.interp(grid, frequencies, psd)) * (grid >= 10.0)
    return np.fft.irfft(spectrum, n=size)


def _sine_gaussian(rng, sample_rate) -> tuple[np.ndarray, dict[str, float]]:
    f0 = math.exp(rng.uniform(*np.log(SG_FREQUENCY)))
    f0 = min(f0, 0.45 * sample_rate)
    q = math.exp(rng.uniform(*np.log(SG_Q)))
    phase = rng.uniform(0, 2 * math.pi)
    tau = q / (math.sqrt(2) * math.pi * f0)
    t = np.arange(-round(4 * tau * sample_rate), round(4 * tau * sample_rate) + 1) / sample_rate
    g = np.exp(-((t / tau) ** 2)) * np.sin(2 * math.pi * f0 * t + phase)
    return g, {"frequency": f0, "q": q}


def _scattered_light(rng, sample_rate) -> tuple[np.ndarray, dict[str, float]]:
    from scipy.signal.windows import tukey

    peak, drive = rng.uniform(*ARCH_PEAK), rng.uniform(*ARCH_DRIVE)
    half = 1 / (4 * drive)  # the arch spans one half period of the drive: [-half, half]
    t = np.arange(-round(half * sample_rate), round(half * sample_rate) + 1) / sample_rate
    phase = (peak / (2 * math.pi * drive)) * 2 * math.pi * np.sin(2 * math.pi * drive * t)
    g = tukey(len(t), 0.5) * np.sin(phase + rng.uniform(0, 2 * math.pi))
    return g, {"frequency": peak, "q": drive}  # q: the drive frequency of an arch


class _Blips:
    """gengli generators, loaded once per IFO (every call inside torch's ``fork_rng``), and the
    glitch banks' rows, read once per bank and IFO."""

    def __init__(self) -> None:
        self.generators: dict[str, Any] = {}
        self.banks: dict[tuple, tuple[list[np.ndarray], list[str]]] = {}

    def bank(self, path: str, ifo: str, sample_rate: float) -> tuple[list[np.ndarray], list[str]]:
        """Each row of ``path``'s ``ifo`` trimmed to its non-zero extent, and its type."""
        key = (path, ifo, float(sample_rate))
        if key not in self.banks:
            strain, types = read_glitch_bank(path, [ifo], sample_rate, with_types=True)
            rows = []
            for row in strain[0].astype(np.float64):
                nonzero = np.flatnonzero(row)
                rows.append(row[nonzero[0] : nonzero[-1] + 1] if len(nonzero) else row[:1])
            self.banks[key] = rows, list(types[0])
        return self.banks[key]

    def __call__(self, ifo: str, count: int, seed: int) -> np.ndarray:
        import torch

        model = BLIP_MODEL.get(ifo, "H1")
        if model not in self.generators:
            import gengli

            with torch.random.fork_rng(devices=[]):
                self.generators[model] = gengli.glitch_generator(model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.generators[model].get_glitch(count, srate=GENGLI_RATE, alpha=0.25)
        return np.atleast_2d(out).astype(np.float64)


def segment_glitches(
    model: NoiseModel,
    ifo: str,
    duration: float,
    sample_rate: float,
    frequencies: np.ndarray,
    psd: np.ndarray,
    scales: np.ndarray,
    rng: np.random.Generator,
    blips: _Blips | None = None,
) -> list[dict[str, Any]]:
    """The glitches of one IFO in one segment, each a dict with ``start`` (sample of its first
    value), ``strain`` (its samples), ``time`` (seconds from the segment's start to its centre),
    ``type``, ``snr``, ``frequency``, ``q`` (sine-Gaussian Q; scattered light: drive frequency;
    blips: NaN). ``scales``: this IFO's PSD factor at the segment's start and end."""
    rate = model.glitch_rates.get(ifo, 0.0) / 60.0
    count = int(rng.poisson(rate * duration))
    if count == 0:
        return []
    if model.glitch_bank:  # shapes and types: rows of the bank
        rows, types = (blips or _Blips()).bank(model.glitch_bank, ifo, sample_rate)
        picks = rng.integers(len(rows), size=count)
        kinds = [types[p] for p in picks]
        snrs = _power_law(rng, count, model.snr_minimum, model.snr_maximum, model.snr_index)
        centres = rng.uniform(0.0, duration, count)
        shapes = [(rows[p], {"frequency": math.nan, "q": math.nan}) for p in picks]
    else:
        kinds, snrs = _draw_kinds(model, rng, count)
        centres = rng.uniform(0.0, duration, count)
        shapes = _shapes(ifo, kinds, rng, sample_rate, frequencies, psd, blips)
    size = round(duration * sample_rate)
    out = []
    for kind, snr, centre, (shape, params) in zip(kinds, snrs, centres, shapes, strict=True):
        start = round(centre * sample_rate) - len(shape) // 2
        if start < 0 or start + len(shape) > size:
            continue  # only whole glitches: the log's SNR is the SNR in the data
        local = psd * float(scale_at(scales, centre / duration))
        strain = shape * (snr / glitch_snr(shape, sample_rate, frequencies, local))
        out.append(dict(start=start, strain=strain, time=(start + len(shape) // 2) / sample_rate,
                        duration=len(shape) / sample_rate, type=kind, snr=float(snr),
                        **params))  # fmt: skip
    return out


def _draw_kinds(model: NoiseModel, rng: np.random.Generator, count: int):
    """``count`` glitch types (names) and SNRs drawn from the model."""
    names = list(model.glitch_types)
    weights = np.array([model.glitch_types[n] for n in names], np.float64)
    kinds = [names[k] for k in rng.choice(len(names), size=count, p=weights / weights.sum())]
    snrs = _power_law(rng, count, model.snr_minimum, model.snr_maximum, model.snr_index)
    return kinds, snrs


def _shapes(ifo, kinds, rng, sample_rate, frequencies, psd, blips=None) -> list[tuple]:
    """``(strain shape, parameters)`` of each glitch type in ``kinds`` (unscaled)."""
    blip_seed = int(rng.integers(2**31))
    num_blips = sum(k == "blip" for k in kinds)
    white = (blips or _Blips())(ifo, num_blips, blip_seed) if num_blips else None
    shapes, b = [], 0
    for kind in kinds:
        if kind == "sine_gaussian":
            shapes.append(_sine_gaussian(rng, sample_rate))
        elif kind == "scattered_light":
            shapes.append(_scattered_light(rng, sample_rate))
        else:
            coloured = _colour(white[b], sample_rate, frequencies, psd)
            shapes.append((coloured, {"frequency": math.nan, "q": math.nan}))
            b += 1
    return shapes


BANK_GENERATOR = "aframe_lib.data.glitches.generate_glitch_bank"


def generate_glitch_bank(
    path: str,
    ifos: list[str] | tuple[str, ...] = ("H1", "L1"),
    num_glitches: int = 500,
    sample_rate: float = 2048.0,
    duration: float = 6.0,
    psd_file: str | None = None,
    noise: NoiseModel | None = None,
    seed: int = 0,
) -> str:
    """Write a glitch bank: ``num_glitches`` glitches per IFO, coloured with a PSD, for the
    training Dataset's glitch augmentation (``data.glitch_bank``).

    Types and SNRs come from ``noise`` (its rates are not used); each glitch is centred in a
    row of ``duration`` seconds (cropped to it, then scaled so its SNR in the row is the drawn
    one). Layout: per IFO a group with ``strain`` ``(num_glitches, duration * sample_rate)``
    float32, ``snr`` and ``type``; attributes ``sample_rate``, ``duration``, ``model`` (JSON)
    and the provenance record (``what: "glitches"``). gengli runs here, never in training.

    Args:
        path: Output file (local or ``s3://``).
        ifos: IFO codes, one group each.
        num_glitches: Glitches per IFO.
        sample_rate: Hz; must be the training data's.
        duration: Seconds per row (the longest scattered-light arch lasts 5 s).
        psd_file: PSD the glitches are coloured and their SNRs measured with: a ``psd.hdf5``
            (``frequencies`` + one PSD per IFO, e.g. the training data's); ``None``: the
            analytic aLIGO design PSD.
        noise: The glitch types and SNR distribution (:class:`NoiseModel`); ``None``: the
            reference model's (half blips, ``p(rho) ~ rho^-3`` on 7.5-200).
        seed: Seed of the draws.

    Returns:
        ``path``.
    """
    import h5py

    from aframe_lib.utils import fs

    from .noise import PSD_DF, PSD_MODEL, aligo_design_psd
    from .provenance import synthetic, to_attrs

    model = NoiseModel.coerce(noise).check()
    if num_glitches < 1 or duration * sample_rate < 2:
        raise NoiseModelError(f"num_glitches={num_glitches} must be >= 1 and duration={duration}"
                              " positive")  # fmt: skip
    frequencies = np.arange(0.0, sample_rate / 2 + PSD_DF / 2, PSD_DF)
    size = round(duration * sample_rate)
    seqs = np.random.SeedSequence([int(seed), _GLITCH_KEY, 1]).spawn(len(ifos))
    blips = _Blips()
    with fs.atomic_local_path(path) as tmp, h5py.File(tmp, "w") as f:
        for ifo, seq in zip(ifos, seqs, strict=True):
            if psd_file:
                psd = np.interp(frequencies, *read_psd_file(psd_file, ifo))
            else:
                psd = aligo_design_psd(frequencies)
            rng = np.random.default_rng(seq)
            kinds, snrs = _draw_kinds(model, rng, num_glitches)
            rows = np.zeros((num_glitches, size), np.float32)
            for k, ((shape, _), snr) in enumerate(zip(
                _shapes(ifo, kinds, rng, sample_rate, frequencies, psd, blips), snrs, strict=True
            )):  # fmt: skip
                if len(shape) > size:
                    cut = (len(shape) - size) // 2
                    shape = shape[cut : cut + size]
                start = (size - len(shape)) // 2
                rows[k, start : start + len(shape)] = shape * (
                    snr / glitch_snr(shape, sample_rate, frequencies, psd)
                )
            group = f.create_group(ifo)
            group.create_dataset("strain", data=rows)
            group.create_dataset("snr", data=np.asarray(snrs, np.float64))
            group.create_dataset("type", data=np.array(kinds, dtype="S16"))
        f.attrs.update(sample_rate=float(sample_rate), duration=float(duration))
        f.attrs["model"] = json.dumps(model.to_dict(), sort_keys=True)
        f.attrs["blip_model"] = json.dumps(BLIP_MODEL, sort_keys=True)
        psd_name = psd_file.rsplit("/", 1)[-1] if psd_file else PSD_MODEL
        settings = {"ifos": list(ifos), "num_glitches": int(num_glitches),
                    "sample_rate": float(sample_rate), "duration": float(duration)}  # fmt: skip
        record = synthetic(
            "glitches", BANK_GENERATOR, seed, 0, psd=psd_name, noise=model.to_dict(),
            content=bank_digest(f), versions=generator_versions(model), settings=settings,
        )  # fmt: skip
        to_attrs(f.attrs, record)
    return path


def generator_versions(model: NoiseModel) -> dict[str, str]:
    """The versions of the third-party generators ``model``'s glitches come from
    (``{"gengli": ...}`` when it makes blips)."""
    if not model.makes_blips:
        return {}
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"gengli": version("gengli")}
    except PackageNotFoundError:
        return {"gengli": "unknown"}


def bank_digest(f: Any) -> str:
    """``"sha256:<hex>"`` of a glitch bank's glitches (an open ``h5py.File``): per IFO in name
    order, its name, ``strain`` (float32), ``snr`` (float64) and ``type``, and the sample rate.
    The identity of a bank's content, whatever its path or HDF5 layout."""
    import hashlib

    digest = hashlib.sha256(f"sample_rate={float(f.attrs['sample_rate'])!r}".encode())
    for ifo in sorted(k for k in f if "strain" in f[k]):
        digest.update(ifo.encode())
        digest.update(np.ascontiguousarray(f[ifo]["strain"], "<f4").tobytes())
        digest.update(np.ascontiguousarray(f[ifo]["snr"], "<f8").tobytes())
        digest.update(b"|".join(np.asarray(f[ifo]["type"]).astype("S16").tolist()))
    return "sha256:" + digest.hexdigest()


def glitch_bank_record(path: str) -> dict[str, Any]:
    """A glitch bank's provenance record, its ``content`` digest computed from the file (a
    bank changed after it was written gets its new digest, with a warning; one written before
    banks carried records gets a minimal record)."""
    import logging

    import h5py

    from aframe_lib.utils import fs

    from .provenance import from_attrs, synthetic

    filesystem, inner = fs.filesystem(path)
    with filesystem.open(inner, "rb") as src, h5py.File(src, "r") as f:
        record = from_attrs(f.attrs) or synthetic("glitches", BANK_GENERATOR, -1, 0)
        digest = bank_digest(f)
    if record.get("content") not in (None, digest):
        logging.getLogger(__name__).warning(
            "glitch bank %s: its glitches are not those it was written with (content %s, "
            "recorded %s)", path, digest, record["content"],
        )  # fmt: skip
    return {**record, "content": digest}


def read_glitch_bank(path: str, ifos: list[str], sample_rate: float, with_types: bool = False):
    """The bank's strain for ``ifos``, ``(num_ifos, num_glitches, size)`` float32 (and, with
    ``with_types``, each row's type, ``(num_ifos, num_glitches)`` str).

    Raises:
        NoiseModelError: when the bank lacks an IFO or was made at another sample rate.
    """
    import h5py

    from aframe_lib.utils import fs

    filesystem, inner = fs.filesystem(path)
    if not filesystem.exists(inner):
        raise NoiseModelError(f"glitch bank {path} does not exist: make one with "
                              "`aframe-data glitches --path ...`")  # fmt: skip
    with filesystem.open(inner, "rb") as src, h5py.File(src, "r") as f:
        rate = float(f.attrs["sample_rate"])
        if rate != float(sample_rate):
            raise NoiseModelError(
                f"glitch bank {path} is at {rate:g} Hz, the data at {sample_rate:g} Hz: "
                f"make it with --sample_rate {sample_rate:g}"
            )
        if missing := [i for i in ifos if i not in f]:
            raise NoiseModelError(f"glitch bank {path} has no {missing} (it has {sorted(f)}): "
                                  "make it with those --ifos")  # fmt: skip
        sizes = {i: f[i]["strain"].shape for i in ifos}
        n = min(s[0] for s in sizes.values())
        strain = np.stack([np.asarray(f[i]["strain"][:n], np.float32) for i in ifos])
        if not with_types:
            return strain
        return strain, np.stack([np.asarray(f[i]["type"][:n]).astype(str) for i in ifos])


def glitch_sequences(seed: int, stream: int, num_segments: int) -> tuple[list, list]:
    """The seed sequences of the PSD factors and of the glitches, one child per segment (the
    glitches' children are split again per IFO), apart from the Gaussian draws'."""
    key = (int(stream),) if stream else ()
    psd = np.random.SeedSequence([int(seed), _PSD_KEY], spawn_key=key).spawn(num_segments)
    glitch = np.random.SeedSequence([int(seed), _GLITCH_KEY], spawn_key=key).spawn(num_segments)
    return psd, glitch


COLUMNS = ("time", "snr", "duration", "frequency", "q")


def write_glitches(
    path: str, log: list[dict[str, Any]], model: NoiseModel, record: dict | None = None
) -> None:
    """Write the glitch log (one row per glitch, in time order) to ``path``, atomically.

    Layout: datasets ``ifo`` and ``type`` (strings) and ``time`` (GPS of the glitch's centre),
    ``snr``, ``duration`` (s), ``frequency`` (Hz; sine-Gaussian centre, arch peak; NaN for
    blips), ``q`` (sine-Gaussian Q; arch drive frequency in Hz; NaN for blips); attributes
    ``model`` (the noise model, JSON) and ``blip_model`` (gengli generator per IFO, JSON),
    and ``record``, the log's provenance (:mod:`~aframe_lib.data.provenance`), when given.
    """
    import h5py

    from aframe_lib.utils import fs

    log = sorted(log, key=lambda g: (g["time"], g["ifo"]))
    with fs.atomic_local_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ifo", data=np.array([g["ifo"] for g in log], dtype="S2"))
        f.create_dataset("type", data=np.array([g["type"] for g in log], dtype="S16"))
        for column in COLUMNS:
            f.create_dataset(column, data=np.array([g[column] for g in log], np.float64))
        f.attrs["model"] = json.dumps(model.to_dict(), sort_keys=True)
        f.attrs["blip_model"] = json.dumps(BLIP_MODEL, sort_keys=True)
        if record is not None:
            from .provenance import to_attrs

            to_attrs(f.attrs, record)


def read_glitches(path: str) -> dict[str, np.ndarray]:
    """The glitch log of :func:`write_glitches`: ``ifo`` and ``type`` as str arrays, the
    columns as float64 arrays."""
    import h5py

    from aframe_lib.utils import fs

    filesystem, inner = fs.filesystem(path)
    with filesystem.open(inner, "rb") as src, h5py.File(src, "r") as f:
        out = {k: np.asarray(f[k]).astype(str) for k in ("ifo", "type")}
        out.update({k: np.asarray(f[k], np.float64) for k in COLUMNS})
    return out


def glitch_coincidences(
    times: np.ndarray,
    log: Mapping[str, np.ndarray],
    ifos: list[str] | tuple[str, ...],
    shifts: np.ndarray | None = None,
    window: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The logged glitch each event coincides with, if any.

    An event at ``times[k]`` (IFO 0's clock) reads IFO ``j`` at ``times[k] + shifts[k, j]``
    (the search's timeslide convention; ``None``: unshifted). It coincides with a glitch of IFO
    ``j`` when that time lies within ``window`` seconds of the glitch's extent (its centre
    +- half its duration); of several, the loudest is named.

    Args:
        times: ``(N,)`` event GPS times.
        log: The glitch log (:func:`read_glitches`).
        ifos: The IFO of each column of ``shifts``.
        shifts: ``(N, len(ifos))`` seconds each IFO was shifted, or ``None``.
        window: Seconds around a glitch's extent that count as coincident.

    Returns:
        ``(types, glitch_ifos)``: str arrays of shape ``(N,)``, ``""`` where no glitch.
    """
    times = np.asarray(times, np.float64)
    types = np.full(len(times), "", dtype=object)
    where = np.full(len(times), "", dtype=object)
    best = np.full(len(times), -np.inf)
    for j, ifo in enumerate(ifos):
        mine = np.asarray(log["ifo"]) == ifo
        if not mine.any():
            continue
        g_time, g_half = log["time"][mine], log["duration"][mine] / 2
        g_snr, g_type = log["snr"][mine], np.asarray(log["type"])[mine]
        order = np.argsort(g_time)
        g_time, g_half, g_snr, g_type = g_time[order], g_half[order], g_snr[order], g_type[order]
        reach = window + float(g_half.max())
        at = times + (shifts[:, j] if shifts is not None else 0.0)
        lo, hi = np.searchsorted(g_time, at - reach), np.searchsorted(g_time, at + reach)
        for k in np.flatnonzero(hi > lo):
            sl = slice(lo[k], hi[k])
            near = np.abs(at[k] - g_time[sl]) <= g_half[sl] + window
            if near.any():
                loudest = int(np.argmax(np.where(near, g_snr[sl], -np.inf)))
                if g_snr[sl][loudest] > best[k]:
                    best[k] = g_snr[sl][loudest]
                    types[k], where[k] = g_type[sl][loudest], ifo
    return types.astype(str), where.astype(str)


def loudest_with_glitches(stats: np.ndarray, types: np.ndarray, top: int = 100) -> dict[str, Any]:
    """Of the ``top`` loudest events (by ``stats``), the fraction that coincide with a glitch,
    overall and per glitch type (``types`` from :func:`glitch_coincidences`)."""
    order = np.argsort(np.asarray(stats))[::-1][:top]
    chosen = np.asarray(types)[order]
    n = len(chosen)
    by_type = {t: float(np.mean(chosen == t)) if n else 0.0 for t in TYPES}
    return {"events": n, "with_glitch": float(np.mean(chosen != "")) if n else 0.0,
            "by_type": by_type}  # fmt: skip
