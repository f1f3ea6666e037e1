"""The search end to end on tiny synthetic strain, with the oracle (energy) model."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers.search import IFOS, PSD_LENGTH, SAMPLE_RATE

from aframe_lib.search import find_spans, read_events, write_events
from aframe_lib.search.strain import write_mdc


def test_loud_injections_come_out_at_their_times_within_var(engine, foreground):
    directory, injections = foreground
    search = engine(threshold=5.0)
    spans = find_spans(str(directory), IFOS, SAMPLE_RATE, search.min_duration)
    result = search.run(spans, progress=False)
    events = result.events
    loud = injections["snr"] > 25  # the oracle's stat grows as SNR^2 / 45: ~14 at SNR 25
    assert loud.sum() >= 18
    for t, snr in zip(injections["time"][loud], injections["snr"][loud], strict=True):
        near = np.abs(events.time - t) <= events.var
        assert near.sum() == 1, (t, snr, events.time[np.abs(events.time - t) < 5])
    # every event is an injection: nothing else is loud
    for t, var in zip(events.time, events.var, strict=True):
        assert (np.abs(injections["time"] - t) <= var).any()
    np.testing.assert_allclose(events.var, 0.35)  # (1 - 0.25 - 0.05) / 2
    assert result.realtime_factor > 1


def test_pure_noise_gives_no_event_above_a_high_threshold(engine, noise_dir):
    search = engine(threshold=5.0)
    spans = find_spans(str(noise_dir), IFOS, SAMPLE_RATE, search.min_duration)
    result = search.run(spans, progress=False)
    assert len(result.events) == 0
    everything = engine().run(spans, progress=False).events
    assert len(everything) > 10 and everything.stat.max() < 5.0  # maxima exist, all quiet
    # one output per 0.25 s from the first kernel's end (1.5 s) to the last (159.5 s), less the
    # 3 outputs the 1 s integration needs first, per file: the whole file is searched
    assert result.livetime == pytest.approx(2 * ((160 - 2) * 4 + 1 - 3) / 4)


def test_mdc_layout_gives_the_same_events_as_the_background_layout(engine, foreground, tmp_path):
    directory, _ = foreground
    search = engine(threshold=5.0)
    spans = find_spans(str(directory), IFOS, SAMPLE_RATE)
    strain = {ifo: [(s.t0, s.read()[j]) for s in spans] for j, ifo in enumerate(IFOS)}
    write_mdc(str(tmp_path / "mdc.hdf5"), strain, SAMPLE_RATE)
    a = search.run(spans, progress=False).events
    b = search.run(find_spans(str(tmp_path / "mdc.hdf5"), IFOS, SAMPLE_RATE), progress=False)
    np.testing.assert_array_equal(a.time, b.events.time)
    np.testing.assert_allclose(a.stat, b.events.stat, rtol=1e-6)


def test_nan_stretch_is_skipped_and_the_rest_searched(engine, foreground, tmp_path):
    directory, injections = foreground
    import shutil

    for path in directory.glob("background-*.hdf5"):
        shutil.copy(path, tmp_path / path.name)
    first = sorted(tmp_path.glob("background-*.hdf5"))[0]
    with h5py.File(first, "r+") as f:
        t0 = f["H1"].attrs["x0"]
        f["H1"][int(60 * SAMPLE_RATE) : int(61 * SAMPLE_RATE)] = np.nan
    search = engine(threshold=5.0)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        spans = find_spans(str(tmp_path), IFOS, SAMPLE_RATE, search.min_duration)
    events = search.run(spans, progress=False).events
    # the search restarts right after the NaNs, whitening the opening windows with the PSD
    # of the data that follows: the injection 9 s after the hole (t0 + 70 s, inside what used
    # to be the psd_length warm-up) is found like every other loud one
    t = injections["time"]
    found = np.array([(np.abs(events.time - x) <= events.var).any() for x in t])
    loud = injections["snr"] > 25
    after = (t > t0 + 61) & (t < t0 + 61 + PSD_LENGTH)
    assert found[loud].all() and (after & loud).any()
    assert not ((events.time > t0 + 60 - 0.5) & (events.time < t0 + 61 + 0.5)).any()


def test_events_file_has_the_mdc_datasets(engine, noise_dir, tmp_path):
    search = engine()
    result = search.run(find_spans(str(noise_dir), IFOS, SAMPLE_RATE), progress=False)
    write_events(str(tmp_path / "events.hdf5"), result.events, search.settings())
    events, attrs = read_events(str(tmp_path / "events.hdf5"))
    assert len(events) == len(result.events) and attrs["psd_length"] == 16.0
    assert np.all(np.diff(events.time) > 0)


def test_injection_in_the_first_seconds_of_a_segment_is_found(engine, noise_dir, tmp_path):
    """The opening psd.length seconds are searched too (whitened with the PSD of the data that
    follows): an injection coalescing 3 s into each file is found, and the outputs start with
    the first window's kernel (fduration / 2 + kernel_length = 1.5 s into the file)."""
    from aframe_lib.data.synthetic import generate_waveforms
    from aframe_lib.search import inject_population

    waveforms = generate_waveforms(
        str(tmp_path / "waveforms.hdf5"), 2, SAMPLE_RATE,
        waveform_duration=4.0, coalescence_time=3.0,
        population={"distance": {"class_path": "ml4gw.distributions.PowerLaw",
            "init_args": {"minimum": 50.0, "maximum": 80.0, "index": 2.0}}}, seed=7,
    )  # fmt: skip
    injections = inject_population(
        str(noise_dir), str(tmp_path / "fg"), waveforms, IFOS, spacing=200.0, start_pad=3.0,
        highpass=32.0, seed=8,
    )  # fmt: skip
    spans = find_spans(str(tmp_path / "fg"), IFOS, SAMPLE_RATE)
    assert [t - s.t0 for t, s in zip(injections["time"], spans, strict=True)] == [3.0, 3.0]
    search = engine(threshold=5.0)
    times, _ = search.outputs(spans[0])
    assert times[0] - spans[0].t0 == pytest.approx(1.5) and times[-1] == pytest.approx(
        spans[0].t0 + spans[0].duration - 0.5
    )
    events = search.run(spans, progress=False).events
    for t in injections["time"]:
        assert (np.abs(events.time - t) <= events.var).sum() == 1, (t, events.time)
