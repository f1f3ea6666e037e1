"""evaluate on glitchy noise (issue #25): which loud background events coincide with a logged
glitch, from the data's ``glitches.hdf5``; and its own noise made with ``--noise``."""

from __future__ import annotations

import numpy as np
import pytest

from aframe_lib.data.glitches import NoiseModel, read_glitches, write_glitches
from aframe_lib.search.events import Events
from aframe_lib.search.pipeline import SearchResult
from aframe_train.evaluate import _glitch_numbers, _synthetic_background


def _glitch(ifo, kind, time, snr, duration=0.2):
    return dict(ifo=ifo, type=kind, time=time, snr=snr, duration=duration, frequency=np.nan,
                q=np.nan)  # fmt: skip


def test_an_event_exactly_at_a_glitch_is_reported_as_such(tmp_path):
    write_glitches(str(tmp_path / "glitches.hdf5"), [
        _glitch("H1", "blip", 1000.0, 30.0), _glitch("L1", "sine_gaussian", 2000.0, 12.0),
    ], NoiseModel())  # fmt: skip
    # 200 background events: the loudest exactly at the H1 blip; the second meets the L1
    # sine-Gaussian only through its timeslide (L1 read 500 s later); the rest meet nothing
    n = 200
    time = np.linspace(3000.0, 9000.0, n)
    time[:2] = [1000.0, 1500.0]
    stat = np.linspace(0.0, 1.0, n)[::-1].copy()
    shift = np.zeros((n, 2))
    shift[1, 1] = 500.0
    month = 365.25 * 86400 / 12
    result = SearchResult(Events(time, stat, np.zeros(n), shift), month, 0.0, 1.0)
    numbers = _glitch_numbers(str(tmp_path), result, ["H1", "L1"], window=1.0)
    assert numbers["glitches_logged"] == 2
    assert numbers["all_events_with_glitch"] == pytest.approx(2 / n)
    assert numbers["loudest_100_events"] == 100
    assert numbers["loudest_100_with_glitch"] == pytest.approx(0.02)
    assert numbers["loudest_100_with_blip"] == pytest.approx(0.01)
    assert numbers["loudest_100_with_sine_gaussian"] == pytest.approx(0.01)
    assert numbers["loudest_100_with_scattered_light"] == 0
    # a month of livetime: the 100 loudest are above 100 per month
    assert numbers["above_100_per_month_events"] == 100
    assert numbers["above_100_per_month_with_glitch"] == pytest.approx(0.02)
    (tmp_path / "gaussian").mkdir()  # data without a glitch log: no such numbers
    assert _glitch_numbers(str(tmp_path / "gaussian"), result, ["H1", "L1"], 1.0) == {}


def test_evaluate_makes_its_own_noise_with_the_noise_model(tmp_path):
    class Engine:
        ifos, sample_rate = ["H1", "L1"], 256.0

    model = NoiseModel(glitch_rates={"L1": 30.0}, glitch_types={"sine_gaussian": 1.0})
    where = tmp_path / "background"
    _synthetic_background(Engine, where, 128.0, 64.0, 0, model)
    log = read_glitches(str(where / "glitches.hdf5"))
    assert len(log["time"]) > 20 and set(log["ifo"]) == {"L1"}
    # asked again without glitches: the glitchy files and their log are replaced
    _synthetic_background(Engine, where, 128.0, 64.0, 0, None)
    assert not (where / "glitches.hdf5").exists()


def test_noise_with_the_training_banks_glitches_is_refused(tmp_path):
    """model.json names the bank trained with; held-out noise whose glitches were drawn from
    a bank of the same content (at any path) is refused, another seed's bank is not."""
    import shutil

    from aframe_lib.data.glitches import generate_glitch_bank, glitch_bank_record
    from aframe_lib.data.noise import generate_background
    from aframe_lib.utils.errors import ConfigError
    from aframe_train.evaluate import _check_glitches

    kinds = {"glitch_types": {"sine_gaussian": 1.0}}
    trained = generate_glitch_bank(str(tmp_path / "train.hdf5"), ["H1", "L1"], 8, 256.0,
                                   duration=1.0, noise=kinds, seed=0)  # fmt: skip
    info = {"provenance": {"glitch_bank": glitch_bank_record(trained)}}
    copy = tmp_path / "copy" / "bank.hdf5"
    copy.parent.mkdir()
    shutil.copy(trained, copy)
    other = generate_glitch_bank(str(tmp_path / "other.hdf5"), ["H1", "L1"], 8, 256.0,
                                 duration=1.0, noise=kinds, seed=1)  # fmt: skip
    for name, bank in (("same", str(copy)), ("other", other)):
        model = NoiseModel(glitch_rates={"H1": 10.0}, glitch_bank=bank)
        generate_background(str(tmp_path / name), ["H1", "L1"], 64.0, 256.0, noise=model, seed=3)
    with pytest.raises(ConfigError, match="glitch bank the model .* trained with"):
        _check_glitches("m.pt", info, str(tmp_path / "same"))
    lines = _check_glitches("m.pt", info, str(tmp_path / "other"))
    assert "drawn from the glitch bank" in lines[0] and "seed 1" in lines[0]
    assert lines[1].startswith("the model trained with the glitch bank")
    assert _check_glitches("m.pt", {}, str(tmp_path / "same"))  # no bank recorded: only told


def _evaluate(model, out, capsys, *extra):
    import re

    from aframe_train.cli import main

    near = ('{"distance": {"class_path": "ml4gw.distributions.PowerLaw", '
            '"init_args": {"minimum": 50.0, "maximum": 300.0, "index": 2.0}}}')  # fmt: skip
    main([
        "evaluate", "--model", str(model), "--out", str(out),
        "--background_duration", "240", "--segment_duration", "120", "--livetime", "1500",
        "--cluster_window", "4", "--injection_spacing", "10",
        "--waveform_duration", "4", "--coalescence_time", "3",
        "--population", near, "--fars_per_year", "[3e4, 1e5]", "--progress", "false", *extra,
    ])  # fmt: skip
    lines = dict(re.findall(r"^(\w[\w.]*): (\S+)$", capsys.readouterr().out, re.M))
    return {k: float(v) for k, v in lines.items()}


@pytest.mark.slow
def test_distances_with_and_without_glitches_in_one_report(tmp_path, capsys):
    """Evaluate on its own glitchy noise also searches the same noise with the glitches off:
    its numbers are those of an evaluation of the Gaussian noise alone (same seed)."""
    import h5py
    from helpers.search import export_oracle

    model = export_oracle(tmp_path / "model.pt")
    glitchy = '{"glitch_rates": {"H1": 6.0, "L1": 6.0}, "glitch_types": {"sine_gaussian": 1}}'
    numbers = _evaluate(model, tmp_path / "glitchy", capsys, "--noise", glitchy)
    gaussian = _evaluate(model, tmp_path / "gaussian", capsys)
    assert not any(k.endswith("without_glitches") for k in gaussian)  # no glitches: no twin
    for far in ("30000", "100000"):
        key = f"sensitive_distance_mpc_at_far_{far}_per_yr"
        eff = f"efficiency_at_far_{far}_per_yr"
        assert numbers[f"{key}_without_glitches"] == pytest.approx(gaussian[key], rel=1e-6)
        assert numbers[f"{eff}_without_glitches"] == pytest.approx(gaussian[eff], rel=1e-6)
        assert numbers[f"distance_ratio_glitches_at_far_{far}_per_yr"] == pytest.approx(
            numbers[key] / gaussian[key],
            rel=1e-5,  # printed to 6 digits
        )
    # loud glitches make the energy oracle's background louder: it loses distance
    assert numbers["sensitive_distance_mpc_at_far_30000_per_yr"] < gaussian[
        "sensitive_distance_mpc_at_far_30000_per_yr"]  # fmt: skip
    # the twin is the glitchy noise minus exactly the logged glitches
    log = read_glitches(str(tmp_path / "glitchy" / "background" / "glitches.hdf5"))
    twin = sorted((tmp_path / "glitchy" / "without_glitches" / "background").glob("back*.hdf5"))
    mine = sorted((tmp_path / "glitchy" / "background").glob("background-*.hdf5"))
    assert [p.name for p in twin] == [p.name for p in mine]
    with h5py.File(twin[0]) as a, h5py.File(mine[0]) as b:
        t0, diff = float(a["H1"].attrs["x0"]), np.asarray(b["H1"]) - np.asarray(a["H1"])
    t = t0 + np.arange(len(diff)) / 256.0
    inside = np.zeros(len(t), bool)
    for time, dur in zip(log["time"][log["ifo"] == "H1"], log["duration"][log["ifo"] == "H1"],
                         strict=True):  # fmt: skip
        inside |= np.abs(t - time) <= dur / 2 + 1 / 256.0
    assert inside.any() and not diff[~inside].any() and diff[inside].any()
    report = (tmp_path / "glitchy" / "report.md").read_text()
    assert "without glitches" in report


def test_the_glitch_free_twin_of_glitchy_data_is_remade_from_its_glitch_log(tmp_path):
    import h5py

    from aframe_lib.data.noise import generate_background
    from aframe_train.evaluate import _glitch_free_twin

    class Engine:
        ifos, sample_rate = ["H1", "L1"], 256.0

    model = NoiseModel(glitch_rates={"L1": 30.0}, glitch_types={"sine_gaussian": 1.0},
                       psd_scale=(0.5, 2.0))  # fmt: skip
    kw = dict(ifos=["H1", "L1"], duration=150.0, sample_rate=256.0, segment_duration=64.0,
              t0=1_100_000_000.0, gap=10.0, seed=4, stream=3)  # fmt: skip
    generate_background(str(tmp_path / "glitchy"), noise=model, **kw)
    generate_background(str(tmp_path / "quiet"), noise={"psd_scale": [0.5, 2.0]}, **kw)
    twin = _glitch_free_twin(Engine, str(tmp_path / "glitchy"), tmp_path / "twin", False, None,
                             0.0, 0.0, 0)  # fmt: skip
    made = sorted(p.name for p in (tmp_path / "twin" / "background").glob("background-*"))
    assert made == sorted(p.name for p in (tmp_path / "quiet").glob("background-*"))
    assert len(made) == 3
    for name in made:
        with h5py.File(f"{twin}/{name}") as a, h5py.File(tmp_path / "quiet" / name) as b:
            assert np.array_equal(a["L1"][:], b["L1"][:]) and np.array_equal(a["H1"], b["H1"])
    # Gaussian data (no glitch log): no twin
    assert _glitch_free_twin(Engine, str(tmp_path / "quiet"), tmp_path / "t2", False, None,
                             0.0, 0.0, 0) is None  # fmt: skip


@pytest.mark.slow
def test_a_glitch_trained_model_records_its_bank_and_evaluate_refuses_its_glitches(tmp_path):
    """The whole chain: `aframe-train fit` with the glitch augmentation writes the bank's
    content digest to model.json; `aframe-train evaluate` on noise whose glitches come from a
    copy of that bank (another path) exits 2 naming it."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    from helpers.console import aframe_train
    from helpers.glitches import bank_digest

    from aframe_lib.data.glitches import generate_glitch_bank

    quickstart = Path(__file__).resolve().parents[2] / "projects" / "quickstart" / "train.yaml"
    kinds = {"glitch_types": {"sine_gaussian": 1}}
    bank = generate_glitch_bank(str(tmp_path / "bank.hdf5"), ["H1", "L1"], 16, 512.0, 2.0,
                                noise=kinds)  # fmt: skip
    out = tmp_path / "run"
    fit = [
        *aframe_train(), "fit", "--config", str(quickstart),
        f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        f"--data.init_args.data_dir={out / 'data'}", "--data.init_args.batches_per_epoch=2",
        "--data.init_args.batch_size=8", "--data.init_args.valid_livetime=100",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=32",
        "--data.init_args.synthetic.num_val_waveforms=8",
        f"--data.init_args.glitch_bank={bank}", "--data.init_args.glitch_prob=0.5",
    ]  # fmt: skip
    proc = subprocess.run(fit, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recorded = json.loads((out / "model.json").read_text())["provenance"]["glitch_bank"]
    assert recorded["content"] == bank_digest(bank)  # the digest, computed independently
    assert recorded["what"] == "glitches" and recorded["settings"]["num_glitches"] == 16
    copy = tmp_path / "elsewhere.hdf5"
    shutil.copy(bank, copy)
    noise = json.dumps({"glitch_rates": {"H1": 6.0}, "glitch_bank": str(copy)})
    evaluate = [*aframe_train(), "evaluate", "--model", str(out / "model.pt"), "--out",
                str(tmp_path / "eval"), "--background_duration", "128", "--segment_duration",
                "128", "--noise", noise, "--progress", "false"]  # fmt: skip
    proc = subprocess.run(evaluate, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "glitch bank the model" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_glitchy_data_at_another_rate_is_compared_with_its_twin(tmp_path, capsys):
    """--data: glitchy synthetic noise at twice the model's rate (resampled as it streams); the
    numbers without glitches are those of evaluating the same noise made without them."""
    from helpers.search import export_oracle

    from aframe_lib.data.noise import generate_background

    model = export_oracle(tmp_path / "model.pt")
    kw = dict(ifos=["H1", "L1"], duration=240.0, sample_rate=512.0, segment_duration=120.0,
              seed=5, stream=3)  # fmt: skip
    glitchy = NoiseModel(glitch_rates={"H1": 6.0, "L1": 6.0}, glitch_types={"sine_gaussian": 1})
    generate_background(str(tmp_path / "glitchy"), noise=glitchy, **kw)
    generate_background(str(tmp_path / "quiet"), **kw)
    numbers = _evaluate(model, tmp_path / "e1", capsys, "--data", str(tmp_path / "glitchy"))
    quiet = _evaluate(model, tmp_path / "e2", capsys, "--data", str(tmp_path / "quiet"))
    for far in ("30000", "100000"):
        key = f"sensitive_distance_mpc_at_far_{far}_per_yr"
        assert numbers[f"{key}_without_glitches"] == pytest.approx(quiet[key], rel=1e-6)
    assert numbers["background_livetime_s_without_glitches"] == quiet["background_livetime_s"]
    assert not (tmp_path / "e1" / "without_glitches" / "resampled").exists()  # a cache, gone
