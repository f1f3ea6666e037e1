"""FAR and p_astro of online events against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

YEAR = 365.25 * 86400


def _background(stat, livetime):
    from aframe_lib.online.significance import Background

    return Background(np.asarray(stat, float), livetime, {"cluster_window": 1.0})


def test_far_counts_louder_background_per_year_of_livetime():
    rng = np.random.default_rng(0)
    bg = rng.exponential(size=500)
    b = _background(bg, 1e5)
    s = np.array([-1.0, 0.5, 2.0, 10.0])
    brute = [max(1, sum(x >= v for x in bg)) / 1e5 * YEAR for v in s]
    np.testing.assert_allclose(b.far(s), brute)


def test_p_astro_matches_the_mixture_of_the_true_densities():
    """Background stats exponential (b above s0 is exp(-(s - s0))), found injections normal:
    the KDE-based p_astro is the closed form's within 0.05 where it is neither 0 nor 1."""
    from aframe_lib.online.significance import PAstro

    rng = np.random.default_rng(1)
    T = 1e6  # s
    bg = rng.exponential(size=200_000)
    found = rng.normal(10.0, 1.5, size=20_000)
    found[:5_000] = np.nan  # missed injections
    d = (100.0, 1000.0)
    p = PAstro(_background(bg, T), found, d, bbh_rate=3000.0, pastro_far=2e4 * YEAR / T)
    s0 = p.s0
    n_above = np.sum(bg > s0)
    rate_b = n_above / T * YEAR
    eff = np.sum(found > s0) / len(found)
    rate_s = 3000.0 * 4 / 3 * math.pi * (d[1] ** 3 - d[0] ** 3) * eff * 1e-9
    assert p.rate_b == pytest.approx(rate_b) and p.rate_s == pytest.approx(rate_s)
    signal = stats.norm(10.0, 1.5)
    checked = 0
    for s in np.linspace(s0 + 0.5, 13.0, 20):
        b = math.exp(-(s - s0))
        f = signal.pdf(s) / signal.sf(s0)
        truth = rate_s * f / (rate_s * f + rate_b * b)
        if 0.05 < truth < 0.95:
            checked += 1
            assert p(s) == pytest.approx(truth, abs=0.05), s
    assert checked >= 3
    assert p(s0 - 1.0) == 0.0


def test_too_few_events_above_the_p_astro_threshold_is_a_clear_error():
    from aframe_lib.online.significance import PAstro
    from aframe_lib.utils.errors import DataError

    with pytest.raises(DataError, match="too few"):
        PAstro(_background([1.0, 2.0], 100.0), np.array([0.5]), (100.0, 200.0))
