"""The matched-filter ideal (:mod:`aframe_lib.search.matched_filter`), checked against
independent computations: the chi distribution of a matched filter's |SNR| in Gaussian noise,
a by-hand coincidence/quadrature/clustering, and a tail with a known law."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pycbc")


def test_single_ifo_background_of_one_template_follows_the_chi_distribution():
    """In Gaussian noise the |SNR| of one template is chi-distributed with 2 degrees of freedom:
    P(|SNR| > x) = exp(-x^2 / 2), E|SNR|^2 = 2. A normalisation error (PSD, window, FFT
    convention) moves every one of these."""
    from aframe_lib.data.noise import aligo_design_psd, colored_noise
    from aframe_lib.search.matched_filter import _fd_template, peak_snr

    rate, seconds = 512.0, 256
    freqs = np.arange(0, rate / 2 + 1, 0.125)
    psd = aligo_design_psd(np.maximum(freqs, 1.0))
    x = colored_noise(psd, freqs, seconds, rate, 1, np.random.default_rng(3)).astype(np.float64)
    size = x.shape[-1]
    template = _fd_template(30.0, 25.0, rate / size, size // 2 + 1, 20.0)
    pad = (round(8 * rate), round(4 * rate))
    rho = peak_snr(x, rate, [template], 20.0, pad)[0].astype(np.float64)
    assert len(rho) == size - sum(pad)
    assert np.mean(rho**2) == pytest.approx(2.0, rel=0.05)
    for level, tolerance in ((1.0, 0.03), (2.0, 0.08), (3.0, 0.25)):
        assert np.mean(rho > level) == pytest.approx(math.exp(-(level**2) / 2), rel=tolerance)


def _by_hand(rho, shift, window, pool, cluster_size):
    """The network SNR of one timeslide, written out sample by sample."""
    n = rho.shape[1]
    net = np.empty(n)
    for t in range(n):
        partner = max(rho[1][(t + shift + d) % n] for d in range(-window, window + 1))
        net[t] = math.sqrt(rho[0][t] ** 2 + partner**2)
    steps = n // pool
    pooled = [max(net[i * pool : (i + 1) * pool]) for i in range(steps)]
    # greedy clustering: local maxima, loudest first, none within cluster_size / 2 of a kept one
    peaks = [i for i in range(steps)
             if (i == 0 or pooled[i] >= pooled[i - 1])
             and (i == steps - 1 or pooled[i] > pooled[i + 1])]  # fmt: skip
    kept = []
    for i in sorted(peaks, key=lambda i: -pooled[i]):
        if all(abs(i - j) >= cluster_size / 2 for j in kept):
            kept.append(i)
    return sorted(pooled[i] for i in kept)


def test_network_stats_coincidence_quadrature_and_clustering_by_hand():
    from aframe_lib.search.matched_filter import network_stats, slide_background

    rng = np.random.default_rng(0)
    rho = np.abs(rng.normal(size=(2, 900))).astype(np.float32) * 2
    for shift in (0, 7, 450):
        got = np.sort(network_stats(rho, [0, shift], 3, 10, 8))
        np.testing.assert_allclose(got, _by_hand(rho, shift, 3, 10, 8), rtol=1e-6)
    # a loud coincident pair: a peak in IFO 0 and one 3 samples later in IFO 1 add in
    # quadrature; 4 samples later (outside +-3) they do not: the loudest is IFO 1's with noise
    for lag, expected in ((3, 50.0), (4, math.hypot(40.0, 0.1))):
        quiet = np.full((2, 900), 0.1, np.float32)
        quiet[0, 100], quiet[1, 100 + lag] = 30.0, 40.0
        assert network_stats(quiet, [0, 0], 3, 10, 8).max() == pytest.approx(expected, rel=1e-5)
    # timeslides: k = 1, 2, ... of `step` seconds, each adding the series' duration
    bg = slide_background(rho, 10.0, 1.0, 0.8, step=1.0, coincidence=0.3, max_slides=5)
    assert bg.num_slides == 5 and bg.livetime == pytest.approx(5 * 90.0)
    by_hand = np.concatenate([_by_hand(rho, 10 * k, 3, 10, 0.8) for k in range(1, 6)])
    np.testing.assert_allclose(np.sort(bg.stats), np.sort(by_hand), rtol=1e-6)


def test_tail_fit_recovers_a_known_law_and_rho_at_far_switches_to_it_below_the_data():
    """Events with FAR(rho) = exp(a + b rho^2) exactly: the fit finds b, its residual is small,
    and rho(F) below the measured rates is the law's."""
    from aframe_lib.search.matched_filter import fit_tail, rho_at_far
    from aframe_lib.search.metrics import threshold_at_far

    a, b, livetime, n = 10.0, -0.5, 1e6, 20000
    # rank i has FAR i / T: rho_i^2 = (ln(i / T) - a) / b, with Poisson scatter in the ranks
    rank = np.cumsum(np.random.default_rng(1).exponential(size=n))
    stats = np.sqrt((np.log(rank / livetime) - a) / b)
    fit = fit_tail(stats, livetime, tail_events=2000)
    assert fit.slope == pytest.approx(b, rel=0.05)
    assert fit.rms_dex < 0.05
    low = 0.1 / livetime  # below the loudest event: from the fit
    rho, how = rho_at_far(stats, livetime, low, fit)
    assert how == "fit"
    assert rho == pytest.approx(math.sqrt((math.log(low) - a) / b), abs=0.05)
    high = 100 / livetime  # 100 events: measured, as the detector's own threshold is
    rho, how = rho_at_far(stats, livetime, high, fit)
    assert (how, rho) == ("measured", threshold_at_far(stats, livetime, high))


def test_template_bank_covers_its_population_at_the_minimal_match():
    """Every template is a population member, and a fresh draw from the population matches
    some template at about the minimal match or better (pycbc's match)."""
    from pycbc.filter import match
    from pycbc.psd import aLIGOZeroDetHighPower

    from aframe_lib.data.synthetic import draw_parameters
    from aframe_lib.search.matched_filter import _fd_template, template_bank

    uniform = "torch.distributions.Uniform"
    population = {"masses": {"class_path": uniform, "init_args": {"low": 25.0, "high": 35.0}}}
    psd = aLIGOZeroDetHighPower(16 * 512 // 2 + 1, 1 / 16, 15.0)
    bank = template_bank(population, psd, 20.0, minimal_match=0.97, seed=5)
    assert 1 < len(bank) < 40
    assert (bank.mass_1 >= bank.mass_2).all()
    assert bank.mass_2.min() >= 25.0 and bank.mass_1.max() <= 35.0
    size = len(psd)
    worst = []
    drawn = draw_parameters(10, 99, population)
    for m1, m2 in zip(drawn["mass_1"], drawn["mass_2"], strict=True):
        h = _fd_template(m1, m2, psd.delta_f, size, 20.0)
        best = max(
            match(h, _fd_template(t1, t2, psd.delta_f, size, 20.0), psd=psd,
                  low_frequency_cutoff=20.0)[0]
            for t1, t2 in zip(bank.mass_1, bank.mass_2, strict=True)
        )  # fmt: skip
        worst.append(best)
    assert np.mean(np.array(worst) >= 0.97) >= 0.8 and min(worst) > 0.9


def test_the_matched_filter_reads_resampled_spans_as_recorded(tmp_path):
    """Strain stored at twice the model's rate: the search's spans are resampled views, and the
    matched filter reads the samples as stored (the rate the injections' SNRs are computed at)."""
    import h5py

    from aframe_lib.data.background import write_background
    from aframe_lib.search import find_spans
    from aframe_lib.search.matched_filter import _stored

    rng = np.random.default_rng(0)
    strain = {ifo: rng.normal(size=512 * 40) for ifo in ("H1", "L1")}
    path = tmp_path / "background-1000-40.hdf5"
    write_background(str(path), strain, 1000.0, 512.0)
    (span,) = find_spans(str(tmp_path), ["H1", "L1"], 256.0, 4.0)
    assert span.factor == 2
    first = round((span.t0 - 1000.0) * 512)
    got = _stored(span, 10, 10 + 300)
    with h5py.File(path) as f:
        for row, ifo in enumerate(("H1", "L1")):
            np.testing.assert_array_equal(got[row], f[ifo][first + 10 : first + 310])
