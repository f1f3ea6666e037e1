"""Strain at a multiple of the model's rate, resampled as the search streams it.

Checked against independent computations: torchaudio on the whole span (chunking leaves no
trace), the analytic in-band signal and scipy's ``resample_poly`` (anti-aliasing and the band
kept), and the events of the same strain pre-resampled with scipy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.search import IFOS, PSD_LENGTH, SAMPLE_RATE

from aframe_lib.search import find_spans, timeslide_spans
from aframe_lib.search.strain import write_mdc

FACTOR = 4
FAST = FACTOR * SAMPLE_RATE  # 1024 Hz data for the 256 Hz model


def _mdc(path, x: np.ndarray, t0: float = 100.0):
    write_mdc(str(path), {ifo: [(t0, x[j])] for j, ifo in enumerate(IFOS)}, FAST)
    return str(path)


def test_chunked_reads_equal_torchaudio_on_the_whole_span(tmp_path):
    import torchaudio

    from aframe_lib.search.resample import KAISER_BEST

    x = np.random.default_rng(0).standard_normal((2, int(20 * FAST))).astype(np.float32)
    (span,) = find_spans(_mdc(tmp_path / "m.hdf5", x), IFOS, SAMPLE_RATE)
    whole = torchaudio.functional.resample(torch.from_numpy(x).double(), FACTOR, 1, **KAISER_BEST)
    chunks = [span.read(i, min(i + 300, span.size)) for i in range(0, span.size, 300)]
    np.testing.assert_allclose(np.concatenate(chunks, 1), whole.numpy(), atol=1e-6)
    # a timeslide reads each IFO's own stretch of the stored data, resampled the same way
    (shifted,) = timeslide_spans([span], 2.0, 1.0)
    lag = int(2 * SAMPLE_RATE)
    ref = torchaudio.functional.resample(
        torch.from_numpy(x[1, FACTOR * lag :]).double(), FACTOR, 1, **KAISER_BEST
    )
    np.testing.assert_allclose(shifted.load(100, 400)[1].numpy(), ref[100:400].numpy(), atol=1e-6)


def test_resampled_strain_keeps_the_band_and_rejects_what_would_alias(tmp_path):
    from scipy.signal import resample_poly

    t = np.arange(int(16 * FAST)) / FAST
    band = [(1.0, 20.0), (0.5, 55.5), (0.8, 90.0), (0.3, 115.0)]  # below 0.95 * 128 Hz
    alias = [(1.0, 300.0), (0.7, 470.0)]  # would fold onto 44 and 42 Hz
    inband = sum(a * np.sin(2 * np.pi * f * t) for a, f in band)
    x = inband + sum(a * np.sin(2 * np.pi * f * t) for a, f in alias)
    (span,) = find_spans(_mdc(tmp_path / "m.hdf5", np.stack([x, x])), IFOS, SAMPLE_RATE)
    y = span.read()[0].astype(np.float64)
    inner = slice(512, -512)  # away from the zero-padded ends
    truth = inband[::FACTOR]
    assert np.abs(y - truth)[inner].max() < 2e-3 * np.abs(truth).max()
    # scipy's default polyphase filter (Kaiser beta 5: ~45 dB) agrees to its own precision
    # in the band it passes (its transition starts ~110 Hz), once both drop the 115 Hz line
    low = inband - 0.3 * np.sin(2 * np.pi * 115.0 * t)
    other = resample_poly(x - 0.3 * np.sin(2 * np.pi * 115.0 * t), 1, FACTOR)
    ours = y - 0.3 * np.sin(2 * np.pi * 115.0 * t[::FACTOR])
    assert np.abs(ours - low[::FACTOR])[inner].max() < 2e-3 * np.abs(low).max()
    assert np.abs(ours - other)[inner].max() < 2e-2 * np.abs(low).max()


@pytest.fixture(scope="module")
def fast_foreground(tmp_path_factory):
    """160 s of 1024 Hz noise with loud binaries every 12 s, and the same strain at 256 Hz."""
    from ml4gw.distributions import PowerLaw
    from scipy.signal import resample_poly

    from aframe_lib.data.background import (
        background_fname,
        list_segments,
        read_segment,
        write_background,
    )
    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import WaveformPopulation, generate_waveforms
    from aframe_lib.search import inject_population

    root = tmp_path_factory.mktemp("fast")
    generate_background(str(root / "noise"), IFOS, 160.0, FAST, segment_duration=160.0, seed=3)
    waveforms = generate_waveforms(
        str(root / "waveforms.hdf5"), 11, FAST, waveform_duration=4.0, coalescence_time=3.0,
        population=WaveformPopulation(distance=PowerLaw(50.0, 200.0, 2)), seed=5,
    )  # fmt: skip
    injections = inject_population(
        str(root / "noise"), str(root / "fg"), waveforms, IFOS, spacing=12.0,
        start_pad=PSD_LENGTH + 6.0, highpass=32.0, seed=6,
    )  # fmt: skip
    (seg,) = list_segments(str(root / "fg"), IFOS)
    slow = resample_poly(read_segment(seg, IFOS).astype(np.float64), 1, FACTOR, axis=-1)
    (root / "slow").mkdir()
    write_background(
        str(root / "slow" / background_fname(seg.t0, 160)), dict(zip(IFOS, slow, strict=True)),
        seg.t0, SAMPLE_RATE,
    )  # fmt: skip
    return root, injections


def test_events_from_fast_data_equal_those_of_the_strain_pre_resampled(engine, fast_foreground):
    root, injections = fast_foreground
    search = engine(threshold=5.0)
    fast = search.run(find_spans(str(root / "fg"), IFOS, SAMPLE_RATE), progress=False).events
    slow = search.run(find_spans(str(root / "slow"), IFOS, SAMPLE_RATE), progress=False).events
    loud = injections["time"][injections["snr"] > 25]
    assert len(loud) >= 8
    for t in loud:
        a = np.flatnonzero(np.abs(fast.time - t) <= fast.var)
        b = np.flatnonzero(np.abs(slow.time - t) <= slow.var)
        assert len(a) == len(b) == 1, t
        assert abs(fast.time[a[0]] - slow.time[b[0]]) < 0.02
        assert fast.stat[a[0]] == pytest.approx(slow.stat[b[0]], rel=0.05)


def test_injecting_into_resampled_strain_equals_resampling_the_injected_strain(
    fast_foreground, tmp_path
):
    """Waveforms go into the strain as recorded and pass the resampler with the noise: the
    foreground written at the model's rate equals the fast injected strain resampled by the
    search, and the SNRs are those in the recorded strain (the generator's PSD at 1024 Hz).

    Added after resampling instead, the waveforms kept the 243-256 Hz power the resampler
    takes from the noise, their SNR against the resampled strain's PSD came out up to 10x
    too high and whitening amplified that band by the filter's stopband."""
    from aframe_lib.data.waveforms import read_waveforms
    from aframe_lib.search import inject_population

    root, fast_table = fast_foreground
    waveforms = read_waveforms(str(root / "waveforms.hdf5"))
    views = find_spans(str(root / "noise"), IFOS, SAMPLE_RATE)
    assert views[0].factor == FACTOR
    table = inject_population(
        views, str(tmp_path / "fg"), waveforms, IFOS, spacing=12.0,
        start_pad=PSD_LENGTH + 6.0, highpass=32.0, seed=6,
    )  # fmt: skip
    np.testing.assert_array_equal(table["time"], fast_table["time"])
    np.testing.assert_allclose(table["snr"], fast_table["snr"], rtol=1e-5)

    (ours,) = find_spans(str(tmp_path / "fg"), IFOS, SAMPLE_RATE)
    assert ours.factor == 1 and ours.sample_rate == SAMPLE_RATE
    (theirs,) = find_spans(str(root / "fg"), IFOS, SAMPLE_RATE)  # fast strain, resampled
    expected = theirs.read().astype(np.float64)
    signal = expected - views[0].read()  # the resampled responses alone
    assert np.abs(signal).max() > np.abs(views[0].read()).std()  # loud binaries
    diff = ours.read().astype(np.float64) - expected
    assert np.abs(diff).max() < 1e-4 * np.abs(signal).max()

    with pytest.raises(ValueError, match="stored rate"):
        slow = read_waveforms(str(root / "waveforms.hdf5"))
        slow = type(slow)(**{**vars(slow), "sample_rate": SAMPLE_RATE, "duration": 16.0})
        inject_population(views, str(tmp_path / "x"), slow, IFOS, 12.0, PSD_LENGTH + 6.0)
