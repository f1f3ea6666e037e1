"""The matched-filter ideal: the threshold ``rho(F)`` at which a matched-filter search of the
same noise has the false-alarm rate ``F``, measured with pycbc.

A fixed network-SNR threshold (the evaluation's "fixed-threshold reference", SNR >= 8) is not an
upper bound: at a low false-alarm rate a search can find quieter signals, and at a high one it
finds more. The matched-filter ideal compares a detector with a matched filter at the *same*
false-alarm rate: it finds the injections whose optimal network SNR is at least ``rho(F)``.

How ``rho(F)`` is obtained (:func:`matched_filter_ideal`):

1. **Template bank** (:func:`template_bank`): non-spinning IMRPhenomD templates (pycbc's
   ``get_fd_waveform``) placed stochastically over the component masses of the evaluated
   population: proposals are drawn from the population itself (its ``masses`` and
   ``mass_ratio``, spins set to zero); a proposal joins the bank unless pycbc's ``match`` (maximised
   over time and phase, in the PSD of the data) with one of its ``neighbours`` nearest
   templates in the chirp times ``(tau0, tau3)`` reaches ``minimal_match``; placement stops after
   ``converge`` covered proposals in a row (about ``1 - 1 / converge`` of the space covered).
   Comparing only with the nearest templates can only add templates (a denser bank).
2. **Single-IFO peak SNR** (:func:`peak_snr`): the strain as recorded (the injections' SNRs are
   computed at that rate too) in segments of ``SEGMENT_LENGTH`` (64) s; per segment and IFO a
   median-Welch PSD (4 s, pycbc ``welch``, inverse-spectrum truncation to 4 s), pycbc's
   ``matched_filter`` of every template, ``|SNR|`` maximised over the bank at each sample; the
   ends of each segment that the template and the whitening filter wrap into are dropped, and
   consecutive segments overlap by those ends so the series is contiguous.
3. **Network SNR and its background** (:func:`network_stats`, :func:`slide_background`): for a
   timeslide ``k`` IFO ``j`` is shifted by ``j * k * slide_step`` s (circularly over the
   filtered series); the network SNR at each sample of IFO 0 is the quadrature sum of IFO 0's
   peak SNR and, for each other IFO, its largest peak SNR within ``+-coincidence_window`` s
   (15 ms: the H1-L1 light travel time plus timing error); it is clustered as the search
   clusters its output: the loudest value per inference step (``1 / inference_sampling_rate``),
   then :func:`~aframe_lib.search.events.find_events` with the search's ``cluster_window``. Every
   timeslide ``k = 1, 2, ...`` (never the unshifted data) adds the filtered duration to the
   livetime, until the CPU budget is spent.
4. **Tail fit** (:func:`fit_tail`): ``ln FAR = a + b rho^2`` fitted (least squares, each event
   weighted by its rank, the inverse variance of ``ln`` of a count) to the loudest
   ``tail_events`` background events; its residual on them (rms and largest, in dex of FAR) is
   reported. ``rho(F)`` is measured (:func:`~aframe_lib.search.metrics.threshold_at_far`) where
   the background holds at least ``min_events`` events at ``F``, and taken from the fit below.

Its per-IFO maximum over the bank does not require the same template in both IFOs, a looser
statistic (more background) than a pycbc search's same-template coincidence: ``rho(F)`` is, if
anything, slightly high for a matched filter, the ideal slightly low.

pycbc is imported only when a function here runs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

APPROXIMANT = "IMRPhenomD"
COINCIDENCE_WINDOW = 0.015  # s, +- around IFO 0's peak
SLIDE_STEP = 1.0  # s between timeslides (>> the peak SNR's correlation time, ~ms)
SEGMENT_LENGTH = 64.0  # s of strain per matched filter (FFT)
PSD_SEGMENT = 4.0  # s, Welch segments and the inverse-spectrum truncation length
MIN_EVENTS = 10  # background events at F for a measured rho(F)
TAIL_EVENTS = 300  # loudest background events the tail fit uses


@dataclass
class TemplateBank:
    """Non-spinning templates: component masses (solar masses), and how they were placed."""

    mass_1: np.ndarray
    mass_2: np.ndarray
    minimal_match: float
    f_low: float
    proposals: int
    approximant: str = APPROXIMANT

    def __len__(self) -> int:
        return len(self.mass_1)

    def describe(self) -> str:
        return (
            f"{len(self)} non-spinning {self.approximant} templates (pycbc), stochastic placement "
            f"over the population's component masses ({self.mass_2.min():.3g}-"
            f"{self.mass_1.max():.3g} Msun), minimal match {self.minimal_match:g} (pycbc match "
            f"from {self.f_low:g} Hz, {self.proposals} proposals)"
        )


def _fd_template(m1: float, m2: float, delta_f: float, size: int, f_low: float):
    from pycbc.waveform import get_fd_waveform

    hp, _ = get_fd_waveform(approximant=APPROXIMANT, mass1=float(m1), mass2=float(m2),
                            f_lower=f_low, delta_f=delta_f)  # fmt: skip
    hp.resize(size)
    return hp


def _max_duration(m1: np.ndarray, m2: np.ndarray, f_low: float) -> float:
    """Longest IMRPhenomD template (s) from ``f_low`` among these masses (the lightest)."""
    from pycbc.waveform import get_waveform_filter_length_in_time

    i = int(np.argmin(np.asarray(m1) + np.asarray(m2)))
    return float(get_waveform_filter_length_in_time(
        APPROXIMANT, mass1=float(m1[i]), mass2=float(m2[i]), f_lower=f_low
    ))  # fmt: skip


def template_bank(
    population: Any,
    psd: Any,
    f_low: float,
    minimal_match: float = 0.97,
    seed: int = 0,
    neighbours: int = 4,
    converge: int = 40,
    max_proposals: int = 3000,
    deadline: float | None = None,
) -> TemplateBank:
    """Place a non-spinning template bank over the masses of ``population`` (see the module).

    Args:
        population: :class:`~aframe_lib.data.synthetic.WaveformPopulation` (or its config).
        psd: pycbc ``FrequencySeries``: the PSD the matches are computed in (its ``delta_f`` must
            resolve the longest template).
        f_low: Hz where the templates and the matches start.
        minimal_match: a proposal matching an existing template at least this well is covered.
        seed: seed of the proposals (drawn with
            :func:`~aframe_lib.data.synthetic.draw_parameters`).
        neighbours: existing templates (nearest in ``(tau0, tau3)``) each proposal is matched
            against.
        converge: stop after this many covered proposals in a row.
        max_proposals: stop after this many proposals.
        deadline: ``time.process_time()`` after which placement stops (with a warning).
    """
    from pycbc.filter import match, sigmasq
    from pycbc.pnutils import mass1_mass2_to_tau0_tau3

    from aframe_lib.data.synthetic import draw_parameters

    if not 0 < minimal_match < 1:
        raise ValueError(f"minimal_match={minimal_match}: must lie in (0, 1), e.g. 0.97")
    drawn = draw_parameters(max_proposals, seed, population)
    size = len(psd)
    taus: list[tuple[float, float]] = []
    kept: list[tuple[float, float]] = []
    waves: list[Any] = []
    norms: list[float] = []
    covered_run, tried = 0, 0
    for m1, m2 in zip(drawn["mass_1"], drawn["mass_2"], strict=True):
        if deadline is not None and time.process_time() > deadline and kept:
            logger.warning("template bank: CPU budget reached after %d proposals", tried)
            break
        tried += 1
        h = _fd_template(m1, m2, psd.delta_f, size, f_low)
        norm = sigmasq(h, psd, f_low)
        tau = mass1_mass2_to_tau0_tau3(m1, m2, f_low)
        covered = False
        if kept:
            scale = np.array(taus)
            dist = np.hypot(scale[:, 0] - tau[0], scale[:, 1] - tau[1])
            for j in np.argsort(dist)[:neighbours]:
                m, _ = match(h, waves[j], psd=psd, low_frequency_cutoff=f_low,
                             v1_norm=norm, v2_norm=norms[j])  # fmt: skip
                if m >= minimal_match:
                    covered = True
                    break
        if covered:
            covered_run += 1
            if covered_run >= converge:
                break
            continue
        covered_run = 0
        kept.append((float(m1), float(m2)))
        taus.append((float(tau[0]), float(tau[1])))
        waves.append(h)
        norms.append(norm)
    masses = np.array(kept)
    return TemplateBank(masses[:, 0], masses[:, 1], minimal_match, f_low, tried)


def welch_psd(strain: np.ndarray, sample_rate: float, f_low: float, delta_f: float):
    """pycbc's median-Welch PSD of ``strain`` (4 s segments, half overlap), interpolated to
    ``delta_f`` and inverse-spectrum truncated to 4 s (as pycbc's searches condition it)."""
    from pycbc.psd import interpolate, inverse_spectrum_truncation, welch
    from pycbc.types import TimeSeries

    n = round(PSD_SEGMENT * sample_rate)
    ts = TimeSeries(np.asarray(strain, np.float64), delta_t=1.0 / sample_rate)
    psd = welch(ts, seg_len=n, seg_stride=n // 2, avg_method="median")
    psd = interpolate(psd, delta_f)
    return inverse_spectrum_truncation(psd, n, low_frequency_cutoff=f_low, trunc_method="hann")


def peak_snr(strain: np.ndarray, sample_rate: float, templates: Sequence[Any], f_low: float,
             pad: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """Per IFO, ``|SNR|`` of pycbc's ``matched_filter`` maximised over ``templates``.

    Args:
        strain: ``(num_ifos, N)`` one segment of strain.
        sample_rate: Hz.
        templates: pycbc frequency series of length ``N // 2 + 1`` (``delta_f = rate / N``).
        f_low: Hz where the filter starts.
        pad: samples dropped at the start and the end (where the filter wraps around).

    Returns:
        float32 ``(num_ifos, N - pad[0] - pad[1])``.
    """
    from pycbc.filter import matched_filter
    from pycbc.types import TimeSeries

    size = strain.shape[-1]
    out = np.zeros((len(strain), size - pad[0] - pad[1]), np.float32)
    for i, x in enumerate(strain):
        ts = TimeSeries(np.asarray(x, np.float64), delta_t=1.0 / sample_rate)
        psd = welch_psd(x, sample_rate, f_low, ts.delta_f)
        stilde = ts.to_frequencyseries()
        for h in templates:
            snr = matched_filter(h, stilde, psd=psd, low_frequency_cutoff=f_low)
            np.maximum(out[i], np.abs(snr.numpy()[pad[0] : size - pad[1]]), out=out[i])
    return out


def _stored(span, start: int, stop: int) -> np.ndarray:
    """Samples ``[start, stop)`` of a span at the rate its strain is stored at (float64)."""
    import h5py

    q = span.factor
    out = np.empty((len(span.channels), stop - start))
    for row, c in enumerate(span.channels):
        first = c.origin + c.start * q if q != 1 else c.start
        with h5py.File(c.path, "r") as f:
            out[row] = f[c.dataset][first + start : first + stop]
    return out


def filter_spans(
    spans: Sequence[Any], bank: TemplateBank, f_low: float, deadline: float | None = None
) -> tuple[np.ndarray, float]:
    """Peak SNR series (:func:`peak_snr`) of the spans' strain as recorded, segment by segment
    until ``deadline`` (``time.process_time()``; at least one segment is filtered).

    Returns:
        float32 ``(num_ifos, n)`` (the valid parts of every segment, one after another) and the
        sample rate.
    """
    rates = {s.sample_rate * s.factor for s in spans}
    if len(rates) != 1:
        raise ValueError(f"matched filter: the strain is stored at several rates {sorted(rates)}")
    rate = rates.pop()
    longest = _max_duration(bank.mass_1, bank.mass_2, f_low)
    pad = (round((math.ceil(longest) + PSD_SEGMENT / 2 + 1) * rate),
           round((PSD_SEGMENT / 2 + 1) * rate))  # fmt: skip
    cache: dict[int, list[Any]] = {}
    parts: list[np.ndarray] = []
    for span in spans:
        stored = span.size * span.factor
        length = min(round(SEGMENT_LENGTH * rate), stored)
        valid = length - pad[0] - pad[1]
        if valid < rate:
            logger.warning("matched filter: a %.0f s span is too short to filter", span.duration)
            continue
        if length not in cache:
            cache.clear()
            cache[length] = [_fd_template(m1, m2, rate / length, length // 2 + 1, f_low)
                             for m1, m2 in zip(bank.mass_1, bank.mass_2, strict=True)]  # fmt: skip
        for start in range(0, stored - length + 1, valid):
            if deadline is not None and parts and time.process_time() > deadline:
                return np.concatenate(parts, axis=1), rate
            x = _stored(span, start, start + length)
            parts.append(peak_snr(x, rate, cache[length], f_low, pad))
    if not parts:
        raise ValueError("matched filter: no span is long enough to filter")
    return np.concatenate(parts, axis=1), rate


def network_stats(
    rho: np.ndarray, shifts: Sequence[int], coincidence: int, pool: int, cluster_size: int
) -> np.ndarray:
    """Clustered network SNRs of one timeslide of peak SNR series.

    Args:
        rho: ``(num_ifos, n)`` peak SNR per IFO.
        shifts: samples IFO ``j`` is read later than IFO 0 (circularly), ``shifts[0] == 0``.
        coincidence: samples either side of IFO 0's sample in which each other IFO's peak counts.
        pool: samples per inference step (the network SNR's maximum over each step is clustered).
        cluster_size: cluster window in inference steps (as the search's ``find_events``).

    Returns:
        The network SNRs of the clustered events.
    """
    return _clustered(_coincident_power(rho, coincidence), shifts, pool, cluster_size)


def _coincident_power(rho: np.ndarray, coincidence: int) -> np.ndarray:
    """float32 ``(num_ifos, n)``: IFO 0's squared peak SNR, and each other IFO's largest squared
    peak SNR within ``coincidence`` samples (circularly)."""
    from scipy.ndimage import maximum_filter1d

    out = np.square(rho, dtype=np.float32)
    for j in range(1, len(rho)):
        out[j] = maximum_filter1d(out[j], 2 * coincidence + 1, mode="wrap")
    return out


def _clustered(power: np.ndarray, shifts: Sequence[int], pool: int, cluster_size: int):
    from .events import find_events

    total = power[0].copy()
    for j in range(1, len(power)):
        total += np.roll(power[j], -int(shifts[j]))
    steps = len(total) // pool
    pooled = np.sqrt(total[: steps * pool].reshape(steps, pool).max(1))
    return pooled[find_events(pooled, None, cluster_size)]


@dataclass
class SlideBackground:
    stats: np.ndarray
    livetime: float
    num_slides: int


def slide_background(
    rho: np.ndarray,
    sample_rate: float,
    inference_rate: float,
    cluster_window: float,
    step: float = SLIDE_STEP,
    coincidence: float = COINCIDENCE_WINDOW,
    deadline: float | None = None,
    max_slides: int | None = None,
) -> SlideBackground:
    """The network SNR's background over timeslides ``k = 1, 2, ...`` (IFO ``j`` shifted by
    ``j * k * step``, circularly) until ``deadline`` (``time.process_time()``; at least one)
    or every distinct slide is done."""
    n = rho.shape[-1]
    shift = round(step * sample_rate)
    pool = max(1, round(sample_rate / inference_rate))
    cluster_size = max(1, round(cluster_window * inference_rate))
    window = round(coincidence * sample_rate)
    num_ifos = len(rho)
    limit = (n - 2 * window) // (shift * max(1, num_ifos - 1)) if num_ifos > 1 else 0
    if max_slides is not None:
        limit = min(limit, max_slides)
    if limit < 1:
        raise ValueError(
            f"matched filter: {n / sample_rate:.0f} s of peak SNR allow no timeslide of {step} s"
        )
    power = _coincident_power(rho, window)
    parts, k = [], 0
    while k < limit and (not parts or deadline is None or time.process_time() < deadline):
        k += 1
        parts.append(
            _clustered(power, [j * k * shift for j in range(num_ifos)], pool, cluster_size)
        )
    livetime = k * (n // pool) / inference_rate
    return SlideBackground(np.concatenate(parts), livetime, k)


@dataclass
class TailFit:
    """``ln FAR (per s) = intercept + slope * rho^2`` on the loudest background events."""

    intercept: float
    slope: float
    num_events: int
    rho_range: tuple[float, float]
    rms_dex: float
    max_dex: float

    def far(self, rho: np.ndarray | float) -> np.ndarray | float:
        return np.exp(self.intercept + self.slope * np.square(rho))

    def rho(self, far: float) -> float:
        x = (math.log(far) - self.intercept) / self.slope
        return math.sqrt(x) if self.slope < 0 and x > 0 else math.nan


def fit_tail(stats: np.ndarray, livetime: float, tail_events: int = TAIL_EVENTS) -> TailFit:
    """Fit ``ln FAR = a + b rho^2`` to the loudest ``tail_events`` events (FAR of the event of
    rank ``i`` = ``i / livetime``), weighted by rank; its residual on them in dex."""
    ordered = np.sort(np.asarray(stats, np.float64))[::-1][:tail_events]
    if len(ordered) < 3:
        raise ValueError(f"tail fit: {len(ordered)} background events, need at least 3")
    rank = np.arange(1, len(ordered) + 1, dtype=np.float64)
    y = np.log(rank / livetime)
    w = np.sqrt(rank)  # ln(count) has variance ~ 1 / count
    design = np.stack([np.ones_like(ordered), ordered**2], 1)
    (a, b), *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
    residual = (y - (a + b * ordered**2)) / math.log(10)
    return TailFit(float(a), float(b), len(ordered), (float(ordered[-1]), float(ordered[0])),
                   float(np.sqrt(np.mean(residual**2))), float(np.abs(residual).max()))  # fmt: skip


def rho_at_far(
    stats: np.ndarray, livetime: float, far: float, fit: TailFit, min_events: int = MIN_EVENTS
) -> tuple[float, str]:
    """``rho(F)`` (``far`` per s): measured where at least ``min_events`` background events have
    that FAR, else from the fit. Returns the threshold and ``"measured"`` or ``"fit"``."""
    from .metrics import threshold_at_far

    if far * livetime >= min_events:
        return threshold_at_far(stats, livetime, far), "measured"
    return fit.rho(far), "fit"


@dataclass
class MatchedFilterIdeal:
    """``rho(F)`` at each false-alarm rate and how it was obtained."""

    fars_per_s: list[float]
    rho: list[float]
    how: list[str]
    bank: dict[str, Any]
    fit: dict[str, Any]
    livetime: float
    filtered_s: float
    num_slides: int
    sample_rate: float
    budget_s: float
    cpu_s: float
    statistic: str = ""
    fit_check: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def matched_filter_ideal(
    spans: Sequence[Any],
    population: Any,
    fars_per_s: Sequence[float],
    budget_s: float,
    inference_rate: float,
    cluster_window: float,
    f_low: float = 20.0,
    minimal_match: float = 0.97,
    seed: int = 0,
) -> MatchedFilterIdeal:
    """``rho(F)`` of a matched-filter search of ``spans`` (see the module): bank, filtering and
    timeslides share ``budget_s`` CPU seconds (placement stops at 30 % of it, filtering at 80 %,
    the timeslides at 100 %; at least one segment and one slide each; the timeslides of ``D`` s
    filtered cost ~``D^2``, a small part at these budgets).

    Args:
        spans: unshifted strain (held-out data: the caller checks it never trained the model).
        population: the evaluated population (its masses place the bank).
        fars_per_s: false-alarm rates (per s).
        budget_s: CPU seconds (``time.process_time``).
        inference_rate: the search's inference steps per second (events are clustered on them).
        cluster_window: the search's cluster window (s).
        f_low: Hz where templates and filters start.
        minimal_match: of the bank.
        seed: seed of the bank's proposals.
    """
    if not budget_s > 0:
        raise ValueError(f"matched filter budget: {budget_s} s must be positive")
    start = time.process_time()
    first = spans[0]
    rate = first.sample_rate * first.factor
    length = min(round(SEGMENT_LENGTH * rate), first.size * first.factor)
    strain = _stored(first, 0, length)[0]
    # the bank's matches resolve the longest template: delta_f = 1 / (a power of 2 s above it)
    bank_seconds = 2 ** math.ceil(math.log2(2 * (_longest(population, f_low, seed) + 2)))
    psd = welch_psd(strain, rate, f_low, 1.0 / bank_seconds)
    bank = template_bank(population, psd, f_low, minimal_match, seed,
                         deadline=start + 0.3 * budget_s)  # fmt: skip
    logger.info("matched filter: %s", bank.describe())
    rho, rate = filter_spans(spans, bank, f_low, deadline=start + 0.8 * budget_s)
    filtered = rho.shape[-1] / rate
    background = slide_background(rho, rate, inference_rate, cluster_window,
                                  deadline=start + budget_s)  # fmt: skip
    fit = fit_tail(background.stats, background.livetime)
    values, how, check = [], [], []
    for far in fars_per_s:
        r, h = rho_at_far(background.stats, background.livetime, far, fit)
        values.append(float(r))
        how.append(h)
        check.append(float(fit.rho(far) - r) if h == "measured" else None)
    cpu = time.process_time() - start
    logger.info("matched filter: %.0f s filtered, %d timeslides (%.3g s livetime), %.0f CPU s; "
                "tail fit rms %.3f dex", filtered, background.num_slides, background.livetime,
                cpu, fit.rms_dex)  # fmt: skip
    statistic = (
        "network SNR: quadrature sum of IFO 0's peak matched-filter SNR (max over the bank) "
        f"and each other IFO's largest within +-{COINCIDENCE_WINDOW * 1e3:g} ms; loudest per "
        f"inference step, clustered over {cluster_window:g} s as the search clusters; "
        f"background from {background.num_slides} timeslides of {SLIDE_STEP:g} s steps over "
        f"{filtered:.0f} s of held-out strain at {rate:g} Hz; below {MIN_EVENTS} events: "
        "ln FAR = a + b rho^2 fitted to the loudest events"
    )
    return MatchedFilterIdeal(
        fars_per_s=[float(f) for f in fars_per_s],
        rho=values,
        how=how,
        bank={"description": bank.describe(), "mass_1": bank.mass_1.tolist(),
              "mass_2": bank.mass_2.tolist(), "minimal_match": minimal_match,
              "proposals": bank.proposals, "approximant": APPROXIMANT, "f_low": f_low},
        fit=asdict(fit),
        livetime=float(background.livetime),
        filtered_s=float(filtered),
        num_slides=background.num_slides,
        sample_rate=float(rate),
        budget_s=float(budget_s),
        cpu_s=float(cpu),
        statistic=statistic,
        fit_check=check,
    )  # fmt: skip


def _longest(population: Any, f_low: float, seed: int) -> float:
    from aframe_lib.data.synthetic import draw_parameters

    drawn = draw_parameters(2000, seed, population)
    return _max_duration(drawn["mass_1"], drawn["mass_2"], f_low)
