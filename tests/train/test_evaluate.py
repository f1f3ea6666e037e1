"""``aframe-train evaluate`` on tiny synthetic data with the oracle model (see test_search.py)."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
from helpers.search import export_oracle

# the own injections' population: distances uniform in volume over 50-300 Mpc
NEAR = ('{"distance": {"class_path": "ml4gw.distributions.PowerLaw", '
        '"init_args": {"minimum": 50.0, "maximum": 300.0, "index": 2.0}}}')  # fmt: skip


def test_evaluate_writes_report_plots_and_numbers(tmp_path, capsys):
    from aframe_lib.search.metrics import SECONDS_PER_YEAR
    from aframe_train.cli import main

    export_oracle(tmp_path / "model.pt")
    out = tmp_path / "eval"
    main([
        "evaluate", "--model", str(tmp_path / "model.pt"), "--out", str(out),
        "--background_duration", "240", "--segment_duration", "120", "--livetime", "1500",
        "--cluster_window", "4", "--injection_spacing", "10",
        "--waveform_duration", "4", "--coalescence_time", "3",
        "--population", NEAR, "--fars_per_year", "[1e3, 1e5]", "--progress", "false",
    ])  # fmt: skip
    lines = dict(re.findall(r"^(\w[\w.]*): (\S+)$", capsys.readouterr().out, re.M))
    numbers = {k: float(v) for k, v in lines.items()}
    T = numbers["background_livetime_s"]
    assert T >= 1500
    with h5py.File(out / "background_events.hdf5") as f:
        assert f.attrs["livetime"] == pytest.approx(T)
        stat, far = f["stat"][:], f["far"][:]
        assert f["shift"].shape == (len(stat), 2) and (f["shift"][:, 1] != 0).all()
    # the loudest background event's FAR is 1 / livetime
    assert far[np.argmax(stat)] == pytest.approx(1 / T)
    assert numbers["loudest_background_far_per_yr"] == pytest.approx(SECONDS_PER_YEAR / T, 1e-5)
    assert numbers["num_injections"] >= 15
    assert numbers["efficiency_at_far_100000_per_yr"] > 0.8  # loud injections, oracle model
    assert np.isnan(numbers["efficiency_at_far_1000_per_yr"])  # below 1 / T: not measurable
    for name in ("report.md", "efficiency.png", "roc.png", "distance.png", "stats.png",
                 "foreground/injections.hdf5", "injection_results.hdf5"):  # fmt: skip
        assert (out / name).exists(), name
    # the ideal threshold detector (optimal network SNR >= 8 in the true PSD), computed here
    # from the injections' SNRs: its efficiency, distance, and each FAR's fraction of it
    with h5py.File(out / "injection_results.hdf5") as f:
        snr = f["snr"][:]
        assert f.attrs["distance_range"].tolist() == [50.0, 300.0]  # for aframe-online's p_astro
    # the background records the settings it was made with: aframe-online accepts it with the
    # same settings and refuses other ones
    from aframe_lib.online.significance import Background, BackgroundMismatch
    from aframe_lib.search import Search, SearchSettings

    bg = Background.read(out / "background_events.hdf5")
    same = SearchSettings(cluster_window=4, device="cpu")
    bg.check(Search.from_exported(str(tmp_path / "model.pt"), same).settings())
    with pytest.raises(BackgroundMismatch, match="cluster_window"):
        other = SearchSettings(cluster_window=1, device="cpu")
        bg.check(Search.from_exported(str(tmp_path / "model.pt"), other).settings())
    assert numbers["ideal_snr"] == 8.0
    assert numbers["ideal_efficiency"] == pytest.approx(np.mean(snr >= 8.0), abs=1e-6)
    ideal = (300.0**3 - 50.0**3) ** (1 / 3) * np.mean(snr >= 8.0) ** (1 / 3)
    assert numbers["ideal_sensitive_distance_mpc"] == pytest.approx(ideal, rel=1e-5)
    fraction = numbers["fraction_of_ideal_distance_at_far_100000_per_yr"]
    assert fraction == pytest.approx(
        numbers["sensitive_distance_mpc_at_far_100000_per_yr"] / ideal, rel=1e-5
    )
    # an injection counts with its loudest event within max(var, match_window): 0.5 s here
    assert numbers["match_window_s"] == 0.5
    with h5py.File(out / "injection_results.hdf5") as f:
        t_inj, found = f["time"][:], f["stat"][:]
    with h5py.File(out / "foreground_events.hdf5") as f:
        t_ev, s_ev, v_ev = f["time"][:], f["stat"][:], f["var"][:]
    for t, s in zip(t_inj, found, strict=True):
        near = np.abs(t_ev - t) <= np.maximum(v_ev, 0.5)
        assert s == (s_ev[near].max() if near.any() else -np.inf)
    assert "fraction_of_ideal_distance" in (out / "report.md").read_text()


def test_evaluate_refuses_a_match_window_that_reaches_the_next_injection(tmp_path, capsys):
    from aframe_train.cli import main

    export_oracle(tmp_path / "model.pt")
    with pytest.raises(SystemExit) as exc:
        main([
            "evaluate", "--model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "e"),
            "--injection_spacing", "10", "--match_window", "6",
        ])  # fmt: skip
    assert exc.value.code == 2
    assert "match_window: 6" in capsys.readouterr().err


def _fast_mdc(path, seed: int, tmp_path, injected: bool = False):
    """A mock-data-challenge file at 512 Hz (twice the model's rate): 2 x 100 s of noise,
    with loud binaries every 10 s when ``injected`` (returns their table)."""
    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import generate_waveforms
    from aframe_lib.search import find_spans, inject_population
    from aframe_lib.search.strain import write_mdc

    noise = tmp_path / f"noise-{seed}"
    generate_background(str(noise), ["H1", "L1"], 200.0, 512.0, segment_duration=100.0, seed=seed)
    table = None
    if injected:
        waveforms = generate_waveforms(
            str(tmp_path / "wf.hdf5"), 12, 512.0, waveform_duration=4.0, coalescence_time=3.0,
            population={"distance": {"class_path": "ml4gw.distributions.PowerLaw",
            "init_args": {"minimum": 50.0, "maximum": 200.0, "index": 2.0}}}, seed=seed,
        )  # fmt: skip
        table = inject_population(
            str(noise), str(tmp_path / "injected"), waveforms, ["H1", "L1"], spacing=10.0,
            start_pad=24.0, highpass=32.0, seed=seed,
        )  # fmt: skip
        noise = tmp_path / "injected"
    spans = find_spans(str(noise), ["H1", "L1"])
    strain = {ifo: [(s.t0, s.read()[j]) for s in spans] for j, ifo in enumerate(["H1", "L1"])}
    write_mdc(str(path), strain, 512.0)
    return table


def test_evaluate_scores_an_external_injection_set_in_fast_mdc_files(tmp_path, capsys):
    """The user's path: MDC background and foreground files at 2x the model's rate, and a CSV
    table of the injections they hold; evaluate resamples, searches both, matches the table."""
    from aframe_train.cli import main

    export_oracle(tmp_path / "model.pt")
    _fast_mdc(tmp_path / "background.hdf5", 11, tmp_path)
    table = _fast_mdc(tmp_path / "foreground.hdf5", 12, tmp_path, injected=True)
    rows = ["gps_time,snr,distance,approximant"] + [
        f"{float(t)!r},{float(s)!r},{float(d)!r},IMRPhenomD"
        for t, s, d in zip(table["time"], table["snr"], table["distance"], strict=True)
    ]
    rows.append(f"{float(table['time'][-1]) + 5000!r},30.0,100.0,IMRPhenomD")  # outside the data
    (tmp_path / "injections.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval"
    main([
        "evaluate", "--model", str(tmp_path / "model.pt"), "--out", str(out),
        "--data", str(tmp_path / "background.hdf5"), "--foreground",
        str(tmp_path / "foreground.hdf5"), "--injections", str(tmp_path / "injections.csv"),
        "--livetime", "400", "--cluster_window", "4",
        "--fars_per_year", "[1e5]", "--progress", "false",
    ])  # fmt: skip
    lines = dict(re.findall(r"^(\w[\w.]*): (\S+)$", capsys.readouterr().out, re.M))
    numbers = {k: float(v) for k, v in lines.items()}
    assert numbers["num_injections"] == len(table["time"]) >= 10
    assert numbers["injections_outside_data"] == 1
    assert numbers["efficiency_at_far_100000_per_yr"] > 0.8  # loud injections, oracle model
    # distances come from the table: a finite sensitive distance within its range
    assert 50 <= numbers["sensitive_distance_mpc_at_far_100000_per_yr"] <= 200
    with h5py.File(out / "injection_results.hdf5") as f:
        np.testing.assert_allclose(f["time"][:], table["time"])
        assert np.isfinite(f["stat"][:]).mean() > 0.8


def test_evaluate_injects_its_own_population_into_a_fast_mdc_file(tmp_path, capsys):
    from aframe_train.cli import main

    export_oracle(tmp_path / "model.pt")
    _fast_mdc(tmp_path / "mdc.hdf5", 13, tmp_path)
    out = tmp_path / "eval"
    argv = [
        "evaluate", "--model", str(tmp_path / "model.pt"), "--out", str(out),
        "--data", str(tmp_path / "mdc.hdf5"), "--livetime", "300",
        "--cluster_window", "4", "--injection_spacing", "10", "--waveform_duration", "4",
        "--coalescence_time", "3", "--population", NEAR, "--fars_per_year", "[1e5]",
        "--progress", "false",
    ]  # fmt: skip
    main(argv)
    numbers = dict(re.findall(r"^(\w[\w.]*): (\S+)$", capsys.readouterr().out, re.M))
    assert float(numbers["num_injections"]) >= 10
    with h5py.File(next((out / "foreground").glob("background-*.hdf5"))) as f:
        assert f["H1"].attrs["dx"] == 1 / 256  # written at the model's rate
    # the population is made at the file's rate and resampled with the strain, as real signals
    with h5py.File(out / "foreground" / "waveforms.hdf5") as f:
        assert f.attrs["sample_rate"] == 512
    with h5py.File(out / "foreground" / "injections.hdf5") as f:
        assert f.attrs["waveform_sample_rate"] == 512 and f.attrs["sample_rate"] == 256
    # each timeslide's events were saved as it ended; the timeslides read the 512 Hz strain
    # resampled once (a cache, deleted at the end), not through the resampler
    parts = sorted((out / "background.parts").glob("span-*.npz"))
    assert len(parts) == int(float(numbers["num_timeslides"])) >= 2
    for part in parts:
        with np.load(part) as z:
            assert str(out / "resampled" / "background-") in str(z["span"])
            assert "factor=1)" in str(z["span"]) and "mdc.hdf5" not in str(z["span"])
    assert not (out / "resampled").exists()

    # a rerun (e.g. after a kill) loads the saved timeslides: the same background
    with h5py.File(out / "background_events.hdf5") as f:
        first = f["stat"][:]
    stamps = [p.stat().st_mtime_ns for p in parts]
    with h5py.File(out / "foreground" / "injections.hdf5") as f:
        snr_20 = f["snr"][:]  # the default: SNRs from 20 Hz, where the waveforms start
    main([*argv, "--snr_highpass", "32"])  # only the SNRs' band changes
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    with h5py.File(out / "foreground" / "injections.hdf5") as f:
        snr_32 = f["snr"][:]
    assert (snr_20 > snr_32).all() and 1.01 < np.median(snr_20 / snr_32) < 1.3
    with h5py.File(out / "background_events.hdf5") as f:
        np.testing.assert_array_equal(f["stat"][:], first)

    # one timeslide reads its strain once: streamed through the resampler, nothing written
    once = tmp_path / "once"
    main([*argv[:4], str(once), *argv[5:8], "20", *argv[9:]])
    (part,) = (once / "background.parts").glob("span-*.npz")
    with np.load(part) as z:
        assert "factor=2)" in str(z["span"]) and "resampled" not in str(z["span"])


def test_external_injection_tables_are_checked(tmp_path):
    from aframe_lib.search.injections import InjectionTableError, read_injection_table

    (tmp_path / "t.csv").write_text("time_gps,snr\n1.0,2.0\n")
    with pytest.raises(InjectionTableError, match=r"no 'gps_time' column \(found \['snr', "):
        read_injection_table(str(tmp_path / "t.csv"))
    (tmp_path / "t.csv").write_text("gps_time,snr\n1.0,2.0\nsoon,3.0\n")
    with pytest.raises(InjectionTableError, match="'gps_time' must hold one number per row"):
        read_injection_table(str(tmp_path / "t.csv"))
    with h5py.File(tmp_path / "t.hdf5", "w") as f:
        f["injections/gps_time"] = [1.0, 2.0]
        f["injections/mass_1"] = [30.0, 40.0]
    columns, _ = read_injection_table(str(tmp_path / "t.hdf5"))
    assert columns["time"].tolist() == [1.0, 2.0] and columns["mass_1"].tolist() == [30.0, 40.0]


def _noise(path) -> np.ndarray:
    with h5py.File(path) as f:
        return np.stack([f["H1"][:], f["L1"][:]])


def test_evaluate_injects_the_training_population_into_noise_no_training_set_has(tmp_path, capsys):
    """Items 1 and 2 of issue 21: with no --population the injections come from the population
    model.json records (not evaluate's own 10-80 Msun default), the report names it, and
    evaluate's own noise is no training set's (the old seed-0 noise was a seed-0 training
    set's, bit for bit)."""
    from aframe_lib.data import provenance
    from aframe_lib.data.noise import generate_background
    from aframe_train.cli import main

    population = {"masses": {"class_path": "torch.distributions.Uniform",
                             "init_args": {"low": 20.0, "high": 21.0}}}  # fmt: skip
    export_oracle(tmp_path / "model.pt", population=population)
    out = tmp_path / "eval"
    main([
        "evaluate", "--model", str(tmp_path / "model.pt"), "--out", str(out),
        "--background_duration", "240", "--segment_duration", "120", "--livetime", "300",
        "--cluster_window", "4", "--injection_spacing", "10", "--waveform_duration", "4",
        "--coalescence_time", "3", "--fars_per_year", "[1e5]", "--progress", "false",
        # one field given (as aframe-data takes it): the others stay the training population's
        "--population.distance", "ml4gw.distributions.PowerLaw",
        "--population.distance.minimum", "50", "--population.distance.maximum", "300",
        "--population.distance.index", "2",
    ])  # fmt: skip
    with h5py.File(out / "foreground" / "waveforms.hdf5") as f:
        m1, m2 = f["parameters/mass_1"][:], f["parameters/mass_2"][:]
        distance = f["parameters/distance"][:]
    assert len(m1) >= 10 and (m1 <= 21.0).all() and (m2 >= 20.0).all()
    assert (distance >= 50).all() and (distance <= 300).all()
    report = (out / "report.md").read_text()
    assert "the training population (model.json) with distance given" in report
    assert '"high": 21.0' in report and '"maximum": 300' in report
    # the noise: stream 10 of seed 0, no training set's
    own = sorted((out / "background").glob("background-*.hdf5"))[0]
    record = provenance.read(str(own))
    assert (record["seed"], record["stream"]) == (0, 10)
    for seed in (0, 10):  # seed 0 (the old bit-identical one) and 10 (= the old stream_seed)
        train = generate_background(str(tmp_path / f"train{seed}"), ["H1", "L1"], 240.0,
                                    256.0, 120.0, seed=seed)[0]  # fmt: skip
        corr = np.corrcoef(_noise(own).ravel(), _noise(train).ravel())[0, 1]
        assert abs(corr) < 0.05, seed


def test_evaluate_refuses_data_the_model_trained_or_validated_on(tmp_path, capsys):
    """Item 2 of issue 21: data that model.json's provenance says the model trained or
    validated on is refused (exit 2, naming both), by content: a copy elsewhere is refused
    too; other data of the same stream (the test split, later GPS) is not."""
    import shutil

    from aframe_lib.data import provenance
    from aframe_lib.data.noise import generate_background
    from aframe_train.cli import main

    files = generate_background(str(tmp_path / "data"), ["H1", "L1"], 360.0, 256.0, 120.0)
    train, valid, test = ([f] for f in files)
    trained_on = {"train": provenance.of_files(train)[0], "valid": provenance.of_files(valid)[0]}
    export_oracle(tmp_path / "model.pt", provenance=trained_on)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(valid[0], copy)  # the validation file, under another path
    argv = [
        "evaluate",
        "--model",
        str(tmp_path / "model.pt"),
        "--out",
        str(tmp_path / "e"),
        "--livetime",
        "100",
        "--cluster_window",
        "4",
        "--injection_spacing",
        "10",
        "--waveform_duration",
        "4",
        "--coalescence_time",
        "3",
        "--progress",
        "false",
    ]
    for data, split in ((tmp_path / "data", "trained"), (copy, "validated")):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--data", str(data)])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"--data={data}" in err and f"was {split} on this data" in err
        assert "seed 0 stream 0" in err and "GPS" in err
    held_out = tmp_path / "test"
    held_out.mkdir()
    shutil.copy(test[0], held_out)
    main([*argv, "--data", str(held_out), "--fars_per_year", "[1e5]"])  # the test split: fine
    assert "background_livetime_s" in capsys.readouterr().out
    # the own injections' distances are the population's: distance_range is for --injections
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--data", str(held_out), "--distance_range", "[100, 10000]"])
    assert exc.value.code == 2 and "--population.distance" in capsys.readouterr().err
