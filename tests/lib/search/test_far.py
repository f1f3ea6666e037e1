"""FAR, thresholds at a FAR, injection matching, efficiency and sensitive volume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aframe_lib.search import metrics as m


def test_loudest_background_event_has_far_one_over_livetime():
    background = np.array([1.0, 5.0, 3.0, 3.0])
    far = m.false_alarm_rate(background, background, livetime=100.0)
    assert far[1] == 1 / 100.0
    np.testing.assert_allclose(far, [4, 1, 3, 3] / np.array(100.0))
    assert m.false_alarm_rate(np.array([9.0]), background, 100.0)[0] == 0.0


def test_threshold_at_far_lets_at_most_far_times_livetime_background_events_pass():
    background = np.array([1.0, 5.0, 3.0, 2.0])
    assert math.isnan(m.threshold_at_far(background, 100.0, 0.5 / 100))  # below 1 / T
    assert m.threshold_at_far(background, 100.0, 1 / 100) == 3.0  # only 5 > 3 passes
    assert m.threshold_at_far(background, 100.0, 2.5 / 100) == 2.0
    assert m.threshold_at_far(background, 100.0, 1.0) == -math.inf
    for far in (1, 2, 3):
        thr = m.threshold_at_far(background, 100.0, far / 100)
        assert (background > thr).sum() <= far


def test_injections_match_the_loudest_event_within_its_var():
    times = np.array([10.0, 10.2, 30.0, 50.0])
    stat = np.array([1.0, 2.0, 5.0, 7.0])
    var = np.array([0.3, 0.3, 0.3, 0.1])
    found = m.match_injections(np.array([10.1, 30.5, 50.05]), times, stat, var)
    np.testing.assert_array_equal(found, [2.0, -np.inf, 7.0])
    # a window is a floor under each event's var: the event 0.5 s off now counts, the loudest
    # within reach still wins, and an event beyond both stays out
    found = m.match_injections(np.array([10.1, 30.5, 50.05, 70.0]), times, stat, var, 0.5)
    np.testing.assert_array_equal(found, [2.0, 5.0, 7.0, -np.inf])
    found = m.match_injections(np.array([30.5]), times, stat, var, 0.49)
    np.testing.assert_array_equal(found, [-np.inf])
    with pytest.raises(ValueError, match="match window"):
        m.match_injections(np.array([1.0]), times, stat, var, -1.0)


def test_efficiency_and_sensitive_distance():
    found = np.array([5.0, 1.0, -np.inf, 7.0])
    assert m.efficiency(found, 2.0) == 0.5
    assert m.efficiency_vs_snr(
        found, np.array([5, 5, 15, 25.0]), 2.0, np.array([0, 10, 20, 30.0])
    ).tolist() == [0.5, 0.0, 1.0]
    volume = m.sensitive_volume(found, 2.0, (0.0, 100.0))
    assert volume == pytest.approx(0.5 * 4 / 3 * math.pi * 100.0**3)
    assert m.volume_to_distance(volume) == pytest.approx(100 * 0.5 ** (1 / 3))


def test_ideal_detector_distance_on_a_population_with_a_known_answer():
    """Sources uniform in volume within 1000 Mpc whose network SNR is ``A w / d`` (``w`` an
    orientation factor uniform in [0, 1]): the ideal detector at ``rho`` reaches ``A w / rho``
    in each direction, so its sensitive distance is ``(A / rho) <w^3>^(1/3) = (A / rho) / 4^(1/3)``
    (and ``A / rho`` when ``w = 1``)."""
    rng = np.random.default_rng(0)
    n, d_max, amplitude = 400_000, 1000.0, 4000.0
    d = d_max * rng.uniform(size=n) ** (1 / 3)
    w = rng.uniform(size=n)
    for rho in (8.0, 10.0):
        face_on = m.ideal_sensitive_distance(amplitude / d, rho, (0.0, d_max))
        assert face_on == pytest.approx(amplitude / rho, rel=0.005)
        averaged = m.ideal_sensitive_distance(amplitude * w / d, rho, (0.0, d_max))
        assert averaged == pytest.approx(amplitude / rho / 4 ** (1 / 3), rel=0.005)
    # SNR exactly at the threshold is found (>=), below it is not
    assert m.ideal_efficiency(np.array([7.999, 8.0, 9.0, 3.0]), 8.0) == 0.5
    # unknown SNRs (an external table without them), no injections, no volume: NaN
    assert math.isnan(m.ideal_efficiency(np.array([9.0, np.nan]), 8.0))
    assert math.isnan(m.ideal_efficiency(np.zeros(0), 8.0))
    assert math.isnan(m.ideal_sensitive_distance(np.array([9.0]), 8.0, None))
