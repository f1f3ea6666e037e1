"""Glitch bank provenance (issue #25): a model trained with glitch augmentation records the bank
it used by the digest of its content; noise can draw its glitches from a bank, and an
evaluation refuses noise whose glitches came from the training bank (by content, not path)."""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import pytest
from helpers.glitches import bank_digest
from helpers.tiny_data import SAMPLE_RATE, dataset_kwargs

from aframe_lib.data import AframeDataset, provenance
from aframe_lib.data.glitches import (
    NoiseModel,
    generate_glitch_bank,
    generator_versions,
    glitch_bank_record,
    glitch_snr,
    read_glitches,
)
from aframe_lib.data.noise import PSD_DF, aligo_design_psd, generate_background

PARAMETRIC = {"glitch_types": {"sine_gaussian": 1.0, "scattered_light": 1.0}}


def _bank(path, seed=0, rate=SAMPLE_RATE):
    generate_glitch_bank(str(path), ["H1", "L1"], 12, rate, duration=2.0, noise=PARAMETRIC,
                         seed=seed)  # fmt: skip
    return str(path)


def test_bank_record_names_its_content_model_and_generators(tmp_path):
    path = _bank(tmp_path / "a.hdf5")
    record = provenance.read(path)
    assert record["what"] == "glitches" and record["content"] == bank_digest(path)
    assert record["noise"]["glitch_types"] == PARAMETRIC["glitch_types"]
    assert record["settings"] == {"ifos": ["H1", "L1"], "num_glitches": 12,
                                  "sample_rate": SAMPLE_RATE, "duration": 2.0}  # fmt: skip
    assert "versions" not in record  # no blips: no gengli
    from importlib.metadata import version

    assert generator_versions(NoiseModel()) == {"gengli": version("gengli")}  # blips: gengli's
    # the same glitches at another path are the same data; another seed's are not
    copy = tmp_path / "elsewhere.hdf5"
    shutil.copy(path, copy)
    assert provenance.same_data(glitch_bank_record(str(copy)), record)
    other = glitch_bank_record(_bank(tmp_path / "b.hdf5", seed=1))
    assert other["content"] != record["content"]
    assert provenance.same_data(other, record) is None


def test_a_changed_bank_gets_its_new_digest(tmp_path, caplog):
    path = _bank(tmp_path / "a.hdf5")
    before = provenance.read(path)["content"]
    with h5py.File(path, "r+") as f:
        f["L1/strain"][0, :] *= 2
    with caplog.at_level(logging.WARNING):
        after = glitch_bank_record(path)["content"]
    assert after != before and after == bank_digest(path)
    assert "not those it was written with" in caplog.text


def test_model_json_provenance_records_the_bank(tiny_data_dir, tmp_path):
    path = _bank(tmp_path / "bank.hdf5")
    kw = dataset_kwargs(data_dir=str(tiny_data_dir))
    ds = AframeDataset(**kw, glitch_bank=path, glitch_prob=0.5)
    ds.setup("fit")
    assert ds.data_provenance()["glitch_bank"]["content"] == bank_digest(path)
    plain = AframeDataset(**kw, glitch_bank=path, glitch_prob=0.0)  # augmentation off
    plain.setup("fit")
    assert "glitch_bank" not in plain.data_provenance()


def test_noise_draws_its_glitches_from_a_bank(tmp_path):
    bank = _bank(tmp_path / "bank.hdf5")
    model = NoiseModel(glitch_rates={"H1": 20.0, "L1": 20.0}, glitch_bank=bank)
    glitchy, quiet = tmp_path / "glitchy", tmp_path / "quiet"
    kw = dict(ifos=["H1", "L1"], duration=128.0, sample_rate=SAMPLE_RATE, segment_duration=64.0)
    generate_background(str(glitchy), noise=model, **kw)
    generate_background(str(quiet), **kw)
    log = read_glitches(str(glitchy / "glitches.hdf5"))
    assert len(log["time"]) > 10
    with h5py.File(bank) as f:
        rows = {i: np.asarray(f[i]["strain"], np.float64) for i in ("H1", "L1")}
        types = {i: set(np.asarray(f[i]["type"]).astype(str)) for i in ("H1", "L1")}
    assert all(t in types[i] for i, t in zip(log["ifo"], log["type"], strict=True))
    record = provenance.read(str(glitchy / "glitches.hdf5"))
    assert record["glitch_bank"]["content"] == bank_digest(bank)
    # each glitch is a bank row, scaled to its logged SNR (the PSD is the design PSD)
    freqs = np.arange(0.0, SAMPLE_RATE / 2 + PSD_DF / 2, PSD_DF)
    psd = aligo_design_psd(freqs)
    with h5py.File(sorted(glitchy.glob("background-*"))[0]) as g, \
         h5py.File(sorted(quiet.glob("background-*"))[0]) as q:  # fmt: skip
        t0 = float(g["H1"].attrs["x0"])
        first = np.flatnonzero((log["ifo"] == "H1") & (log["time"] < t0 + 64.0))[0]
        diff = np.asarray(g["H1"], np.float64) - np.asarray(q["H1"], np.float64)
    length = round(log["duration"][first] * SAMPLE_RATE)
    start = round((log["time"][first] - t0) * SAMPLE_RATE) - length // 2
    piece = diff[start : start + length]  # where the log says the glitch is
    assert glitch_snr(piece, SAMPLE_RATE, freqs, psd) == pytest.approx(log["snr"][first], 0.05)
    trimmed = [r[np.flatnonzero(r)[0] : np.flatnonzero(r)[-1] + 1] for r in rows["H1"]]
    matches = [abs(np.corrcoef(t, piece)[0, 1]) for t in trimmed if len(t) == length]
    assert max(matches) > 0.999  # one bank row, up to its scale (float32 rounding)


def test_a_missing_glitch_bank_is_named_before_any_noise_is_drawn(tmp_path):
    from aframe_lib.data.glitches import NoiseModelError

    model = NoiseModel(glitch_rates={"H1": 1.0}, glitch_bank=str(tmp_path / "none.hdf5"))
    with pytest.raises(
        NoiseModelError, match=r"noise.glitch_bank=.*none.hdf5.*aframe-data glitches"
    ):
        generate_background(str(tmp_path / "out"), ["H1"], 64.0, 256.0, noise=model)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
