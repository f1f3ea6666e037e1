"""Provenance records (aframe_lib.data.provenance): written by every data writer, read back,
and compared by content, never by path."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from aframe_lib.data import provenance as pv
from aframe_lib.data.noise import GENERATOR, PSD_MODEL, generate_background
from aframe_lib.data.synthetic import (
    EVALUATE,
    TEST_WAVEFORMS,
    VAL_WAVEFORMS,
    WaveformPopulation,
    draw_parameters,
    ensure_synthetic_dataset,
    generate_waveforms,
    stream_seed,
)


def _noise(path) -> np.ndarray:
    with h5py.File(path) as f:
        return np.stack([f["H1"][:], f["L1"][:]])


def test_background_files_record_seed_stream_psd_and_gps(tmp_path):
    paths = generate_background(str(tmp_path), ["H1", "L1"], 128.0, 64.0, 64.0, seed=3)
    records = [pv.read(p) for p in paths]
    assert records[0] == {
        "schema": 1, "kind": "synthetic", "what": "background", "generator": GENERATOR,
        "version": records[0]["version"], "seed": 3, "stream": 0, "psd": PSD_MODEL,
        "spans": {"H1": [[1e9, 1e9 + 64]], "L1": [[1e9, 1e9 + 64]]},
    }  # fmt: skip
    # the second file starts after the gap: other GPS, so other noise of the same stream
    assert records[1]["spans"]["H1"][0][0] == 1e9 + 64 + 64
    assert pv.same_data(records[0], records[1]) is None
    reason = pv.same_data(records[0], pv.read(paths[0]))
    assert "H1 strain at GPS 1000000000-1000000064" in reason and "seed 3 stream 0" in reason
    # no wall-clock value: writing again gives the same record
    again = generate_background(str(tmp_path / "again"), ["H1", "L1"], 128.0, 64.0, 64.0, seed=3)
    assert pv.read(again[0]) == records[0]


def test_evaluate_stream_is_noise_no_training_set_has(tmp_path):
    """The old evaluate noise (seed stream_seed(0, 10) = 10) was training seed 10's background."""
    kwargs = dict(ifos=["H1", "L1"], duration=32.0, sample_rate=64.0, segment_duration=32.0)
    own = generate_background(str(tmp_path / "eval"), seed=0, stream=EVALUATE, **kwargs)[0]
    for seed in (0, stream_seed(0, EVALUATE)):
        train = generate_background(str(tmp_path / f"train{seed}"), seed=seed, **kwargs)[0]
        a, b = _noise(own).ravel(), _noise(train).ravel()
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.1  # independent noise, not merely different
        assert pv.same_data(pv.read(own), pv.read(train)) is None
    # stream 0 is unchanged: the training background of existing data sets stays bit-identical
    old = np.random.default_rng(np.random.SeedSequence(0).spawn(1)[0])
    from aframe_lib.data.noise import aligo_design_psd, colored_noise

    freqs = np.arange(0.0, 32.0 + 1 / 32, 1 / 16)
    expected = colored_noise(aligo_design_psd(freqs), freqs, 32.0, 64.0, 2, old)
    np.testing.assert_array_equal(_noise(tmp_path / "train0" / "background-1000000000-32.hdf5"),
                                  expected)  # fmt: skip


def test_fetched_strain_is_the_same_data_by_gps_per_ifo():
    a = pv.fetched({"H1": [[100, 200]], "L1": [[100, 200]]}, source="gwosc")
    b = pv.fetched(
        {"H1": [[150, 400]]}, source="frames", channels={"H1": "H1:GDS-CALIB_STRAIN"},
        frametypes={"H1": "H1_HOFT_C00"}, flags={"H1": ["H1:DMT-ANALYSIS_READY:1"]},
    )  # fmt: skip
    assert pv.same_data(a, b) == "both are H1 strain at GPS 150-200"  # another source, same time
    assert pv.same_data(a, pv.fetched({"H1": [[200, 300]]}, source="gwosc")) is None  # touching
    assert pv.same_data(a, pv.fetched({"V1": [[100, 200]]}, source="gwosc")) is None  # other IFO
    synthetic = pv.synthetic("background", GENERATOR, 0, 0, PSD_MODEL, spans={"H1": [[100, 200]]})
    assert pv.same_data(a, synthetic) is None  # simulated noise is not a detector's


def test_combine_joins_the_spans_of_one_identity():
    files = [
        pv.synthetic("background", GENERATOR, 0, 0, PSD_MODEL, spans={"H1": [[t, t + 10]]})
        for t in (0, 10, 30)
    ]
    other = pv.synthetic("background", GENERATOR, 1, 0, PSD_MODEL, spans={"H1": [[0, 10]]})
    merged = pv.combine([*files, other])
    assert [m["seed"] for m in merged] == [0, 1]
    assert merged[0]["spans"] == {"H1": [[0.0, 20.0], [30.0, 40.0]]}
    assert pv.find_same([files[2]], merged) is not None
    assert pv.find_same([pv.synthetic("background", GENERATOR, 0, 0, PSD_MODEL,
                                      spans={"H1": [[20, 30]]})], merged) is None  # fmt: skip


def test_waveform_files_record_a_population_that_draws_the_same_binaries(tmp_path):
    population = {"masses": {"class_path": "torch.distributions.Uniform",
                             "init_args": {"low": 10.0, "high": 50.0}},
                  "spins": {"class_path": "torch.distributions.Uniform",
                            "init_args": {"low": 0.0, "high": 0.0001}}}  # fmt: skip
    path = str(tmp_path / "w.hdf5")
    generate_waveforms(path, 4, 128.0, 2.0, 1.5, seed=5, stream=VAL_WAVEFORMS,
                       population=population)  # fmt: skip
    record = pv.read(path)
    assert (record["what"], record["seed"], record["stream"]) == ("waveforms", 5, VAL_WAVEFORMS)
    assert set(record["population"]) == {"masses", "mass_ratio", "spins", "distance",
                                         "inclination", "phase"}  # fmt: skip
    assert record["population"]["masses"]["init_args"] == {"low": 10.0, "high": 50.0}
    # the recorded population draws exactly what the given one draws
    again = draw_parameters(64, 7, WaveformPopulation.coerce(record["population"]))
    given = draw_parameters(64, 7, WaveformPopulation.coerce(population))
    for key in given:
        np.testing.assert_array_equal(again[key], given[key])


def test_the_synthetic_test_split_has_its_own_waveforms(tmp_path):
    """Item 3 of issue 21: test_waveforms.hdf5 from its own stream, not the validation set."""
    ensure_synthetic_dataset(
        str(tmp_path), sample_rate=128.0, background_duration=64.0, segment_duration=32.0,
        num_waveforms=2, num_val_waveforms=3, waveform_duration=2.0, coalescence_time=1.5,
    )  # fmt: skip
    val, test = (pv.read(str(tmp_path / n)) for n in ("val_waveforms.hdf5", "test_waveforms.hdf5"))
    assert (val["stream"], test["stream"]) == (VAL_WAVEFORMS, TEST_WAVEFORMS)
    assert pv.same_data(val, test) is None
    with (
        h5py.File(tmp_path / "val_waveforms.hdf5") as v,
        h5py.File(tmp_path / "test_waveforms.hdf5") as t,
    ):
        assert t["waveforms/plus"].shape == (3, 256)
        assert not np.isin(t["parameters/mass_1"][:], v["parameters/mass_1"][:]).any()


def test_bad_records_name_the_field():
    with pytest.raises(pv.ProvenanceError, match="kind="):
        pv.check({"schema": 1, "kind": "guessed"})
    with pytest.raises(pv.ProvenanceError, match="needs"):
        pv.check({"schema": 1, "kind": "fetched"})
    with pytest.raises(pv.ProvenanceError, match="spans.H1"):
        pv.fetched({"H1": [[5, 5]]}, source="gwosc")
