"""Evaluation bins by the true SNR: an injection's ``snr`` is against the data's true PSD."""

from __future__ import annotations

import h5py
import numpy as np
from helpers.search import IFOS, SAMPLE_RATE

from aframe_lib.data import list_segments, read_segment


def test_injection_snr_is_against_the_true_psd(noise_dir, tmp_path):
    """``snr`` of each injection == ``sqrt(4 sum |h(f)|^2 / S(f) df)`` of what was added to the
    strain, with ``S`` the PSD the noise was drawn from (``psd.hdf5``), above the highpass."""
    from ml4gw.distributions import PowerLaw

    from aframe_lib.data.synthetic import WaveformPopulation, generate_waveforms
    from aframe_lib.search import inject_population

    waveforms = generate_waveforms(
        str(tmp_path / "waveforms.hdf5"), 4, SAMPLE_RATE,
        waveform_duration=4.0, coalescence_time=3.0,
        population=WaveformPopulation(distance=PowerLaw(200.0, 400.0, 2)), seed=11,
    )  # fmt: skip
    injections = inject_population(
        str(noise_dir), str(tmp_path / "fg"), waveforms, IFOS, spacing=40.0, start_pad=10.0,
        highpass=32.0, seed=12,
    )  # fmt: skip
    with h5py.File(noise_dir / "psd.hdf5") as f:
        freqs = f["frequencies"][:]
        psd = np.stack([f[ifo][:] for ifo in IFOS])
    before = read_segment(list_segments(str(noise_dir), IFOS)[0], IFOS).astype(np.float64)
    after = read_segment(list_segments(str(tmp_path / "fg"), IFOS)[0], IFOS).astype(np.float64)
    t0 = list_segments(str(noise_dir), IFOS)[0].t0
    for i, t in enumerate(injections["time"][:2]):
        lo = int(round((t - t0 - 3.0) * SAMPLE_RATE))
        h = (after - before)[:, lo : lo + int(4 * SAMPLE_RATE)]  # the added response
        hf = np.fft.rfft(h, axis=-1) / SAMPLE_RATE
        f = np.fft.rfftfreq(h.shape[-1], 1 / SAMPLE_RATE)
        band = f >= 32.0
        S = np.stack([np.interp(f[band], freqs, p) for p in psd])
        rho2 = 4 * (np.abs(hf[:, band]) ** 2 / S).sum(-1) * (f[1] - f[0])
        np.testing.assert_allclose(injections["ifo_snr"][i], np.sqrt(rho2), rtol=0.03)
        np.testing.assert_allclose(injections["snr"][i], np.sqrt(rho2.sum()), rtol=0.03)


def test_jitter_spreads_injections_over_every_phase_of_the_output_grid(noise_dir, tmp_path):
    """With ``jitter`` one output step, the injections' phases within that step are uniform
    (counted per quarter of the step, against binomial bounds); without it they all share one
    phase. The sky positions do not depend on the jitter, and the same seed gives the same
    times (the clean and glitchy twins of an evaluation)."""
    from aframe_lib.data.synthetic import generate_waveforms
    from aframe_lib.search import inject_population

    step = 0.25
    waveforms = generate_waveforms(
        str(tmp_path / "waveforms.hdf5"), 400, SAMPLE_RATE,
        waveform_duration=1.0, coalescence_time=0.5, seed=11,
    )  # fmt: skip
    t0 = list_segments(str(noise_dir), IFOS)[0].t0

    def inject(name, jitter):
        return inject_population(
            str(noise_dir), str(tmp_path / name), waveforms, IFOS, spacing=1.0, start_pad=2.0,
            seed=12, jitter=jitter,
        )  # fmt: skip

    fixed, jittered, again = inject("fixed", 0.0), inject("a", step), inject("b", step)
    n = len(jittered["time"])
    assert n >= 100
    phase = np.mod(jittered["time"] - t0, step) / step
    counts = np.histogram(phase, bins=4, range=(0, 1))[0]
    sigma = np.sqrt(n * 0.25 * 0.75)
    assert np.all(np.abs(counts - n / 4) < 4 * sigma), counts
    fixed_phase = np.mod(fixed["time"] - t0, step)
    assert np.ptp(fixed_phase) < 1.5 / SAMPLE_RATE
    # each moved by less than one step from its regular time, later
    shift = jittered["time"] - fixed["time"][:n]
    assert shift.min() >= -0.5 / SAMPLE_RATE and shift.max() < step + 0.5 / SAMPLE_RATE
    np.testing.assert_array_equal(jittered["time"], again["time"])
    np.testing.assert_array_equal(jittered["dec"], fixed["dec"][:n])
    with h5py.File(tmp_path / "a" / "injections.hdf5") as f:
        assert f.attrs["jitter"] == step
    # the count evaluate sizes its population by is the number placed (400 waveforms: enough)
    from aframe_lib.search import find_spans
    from aframe_lib.search.injections import num_injection_slots

    spans = find_spans(str(noise_dir), IFOS, SAMPLE_RATE)
    assert n < 400 and len(fixed["time"]) < 400
    assert num_injection_slots(spans, 2.0, 0.5, 1.0, step) == n
    assert num_injection_slots(spans, 2.0, 0.5, 1.0) == len(fixed["time"])
    # by hand: per span, slots at t0 + 2, 3, ... strictly before its end less 0.5 s (less the
    # jitter), a span of whole seconds holding duration - 2 - 0.5 (- jitter) rounded up
    by_hand = sum(int(np.ceil(s.duration - 2.0 - 0.5 - step)) for s in spans)
    assert by_hand == n
