"""Sensitivity metrics from a background search (timeslides) and a foreground (injections).

- False-alarm rate of a statistic ``s``: ``FAR(s) = #{background events with stat >= s} / T``
  (per second, ``T`` the background livetime). The loudest background event has ``1 / T``; a
  foreground event louder than all background has FAR 0 (only bounded: ``< 1 / T``).
- Threshold at a FAR ``f``: detections need ``stat > b[m]``, ``b`` the background stats sorted
  loudest first and ``m = floor(f * T)`` (so at most ``m`` background events pass).
  ``f < 1 / T`` cannot be measured and gives NaN.
- Injection ``i`` is found by the loudest event with ``|time - t_i| <= var``.
- Sensitive volume at ``f``: ``V = V_inj * (detected / injected)`` with ``V_inj = 4/3 pi
  (d_max^3 - d_min^3)`` the Euclidean volume the distances were drawn from (uniform in volume);
  the sensitive distance is ``(3 V / 4 pi)^(1/3)``.
- The ideal detector at ``rho``: one that finds exactly the injections whose optimal network SNR
  (in the true PSD) is at least ``rho``, at any FAR. A matched-filter search in stationary
  Gaussian noise sits near ``rho = 8-9`` at FARs of one per month to one per year, so the ratio of
  a detector's sensitive distance to this one's (the "fraction of the ideal") says how much of the
  achievable range it reaches.
"""

from __future__ import annotations

import math

import numpy as np

SECONDS_PER_YEAR = 365.25 * 86400


def false_alarm_rate(stat: np.ndarray, background: np.ndarray, livetime: float) -> np.ndarray:
    """FAR (per second) of each value of ``stat`` against the background stats."""
    ordered = np.sort(np.asarray(background, np.float64))
    louder = len(ordered) - np.searchsorted(ordered, np.asarray(stat, np.float64), side="left")
    return louder / livetime


def threshold_at_far(background: np.ndarray, livetime: float, far: float) -> float:
    """Stat a detection must exceed for a FAR of at most ``far`` (per s); NaN if unmeasurable."""
    if far * livetime < 1:
        return math.nan
    ordered = np.sort(np.asarray(background, np.float64))[::-1]
    m = math.floor(far * livetime + 1e-9)
    return float(ordered[m]) if m < len(ordered) else -math.inf


def match_injections(
    injection_times: np.ndarray,
    event_times: np.ndarray,
    stat: np.ndarray,
    var: np.ndarray,
    window: float = 0.0,
) -> np.ndarray:
    """Stat of the loudest event within ``max(var, window)`` s of each injection (``-inf`` if
    none): ``var`` is each event's own timing tolerance, ``window`` a floor under it."""
    if not window >= 0:
        raise ValueError(f"match window: {window} s is not a time >= 0")
    order = np.argsort(event_times)
    times, stat = event_times[order], stat[order]
    reach_of = np.maximum(np.asarray(var, np.float64)[order], window)
    out = np.full(len(injection_times), -np.inf)
    reach = float(reach_of.max()) if len(reach_of) else 0.0
    lo = np.searchsorted(times, injection_times - reach, side="left")
    hi = np.searchsorted(times, injection_times + reach, side="right")
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        near = np.abs(times[a:b] - injection_times[i]) <= reach_of[a:b]
        if near.any():
            out[i] = stat[a:b][near].max()
    return out


def efficiency(found_stat: np.ndarray, threshold: float) -> float:
    """Fraction of injections found above ``threshold`` (NaN threshold -> NaN)."""
    if math.isnan(threshold) or len(found_stat) == 0:
        return math.nan
    return float(np.mean(found_stat > threshold))


def efficiency_vs_snr(
    found_stat: np.ndarray, snr: np.ndarray, threshold: float, bins: np.ndarray
) -> np.ndarray:
    """Efficiency in each SNR bin ``[bins[i], bins[i + 1])`` (NaN for empty bins)."""
    which = np.digitize(snr, bins) - 1
    return np.array(
        [
            efficiency(found_stat[which == b], threshold) if (which == b).any() else math.nan
            for b in range(len(bins) - 1)
        ]
    )


def sensitive_volume(
    found_stat: np.ndarray, threshold: float, distance_range: tuple[float, float]
) -> float:
    """Sensitive volume (Mpc^3) for injections drawn uniform in volume over ``distance_range``."""
    d_min, d_max = distance_range
    return 4 / 3 * math.pi * (d_max**3 - d_min**3) * efficiency(found_stat, threshold)


def volume_to_distance(volume: float) -> float:
    """Radius (Mpc) of a sphere of ``volume`` Mpc^3."""
    return (3 * volume / (4 * math.pi)) ** (1 / 3) if volume == volume else math.nan


def ideal_efficiency(snr: np.ndarray, rho: float) -> float:
    """Fraction of injections an ideal threshold detector at ``rho`` finds (``snr >= rho``).

    NaN when there are no injections or any SNR is unknown (NaN): an external table without
    an ``snr`` column cannot be compared with the ideal.
    """
    snr = np.asarray(snr, np.float64)
    if len(snr) == 0 or np.isnan(snr).any():
        return math.nan
    return float(np.mean(snr >= rho))


def ideal_sensitive_distance(
    snr: np.ndarray, rho: float, distance_range: tuple[float, float] | None
) -> float:
    """Sensitive distance (Mpc) of the ideal threshold detector at ``rho`` on these injections."""
    if not distance_range:
        return math.nan
    d_min, d_max = distance_range
    volume = 4 / 3 * math.pi * (d_max**3 - d_min**3) * ideal_efficiency(snr, rho)
    return volume_to_distance(volume)
