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
