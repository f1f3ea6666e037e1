"""Glitch augmentation (issue #25): a glitch bank from ``aframe-data glitches`` added to raw
training windows, independently per IFO or in one IFO at a time."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from helpers.tiny_data import SAMPLE_RATE, dataset_kwargs

from aframe_lib.augmentations import GlitchAdder
from aframe_lib.data import AframeDataset
from aframe_lib.data.config import DataConfigError
from aframe_lib.data.glitches import generate_glitch_bank, glitch_snr
from aframe_lib.data.noise import PSD_DF, aligo_design_psd

LOUD = {"glitch_types": {"sine_gaussian": 1.0}, "snr_minimum": 199.0, "snr_maximum": 200.0}


def _bank(n=50, ifos=3, size=40):
    """Rows that say where they came from: IFO i, row r is constant 1000 * (i + 1) + r."""
    rows = 1000.0 * (torch.arange(ifos)[:, None, None] + 1) + torch.arange(n)[None, :, None]
    return rows.expand(ifos, n, size).clone()


def test_one_ifo_puts_each_glitch_in_one_ifo_of_a_sample():
    torch.manual_seed(0)
    adder = GlitchAdder(_bank(), prob=1.0, one_ifo=True)
    X = torch.zeros(400, 3, 200)
    X, mask = adder(X)
    assert (mask.sum(1) == 1).all()  # every sample, exactly one IFO
    changed = X.abs().sum(-1) > 0
    assert torch.equal(changed, mask)
    for b, i in zip(*mask.nonzero(as_tuple=True), strict=True):
        values = X[b, i][X[b, i] != 0]
        assert len(values) == 40 and values.unique().numel() == 1  # one whole bank row
        assert 1000 * (i + 1) <= values[0] < 1000 * (i + 1) + 50  # from its own IFO's bank
    assert set(mask.nonzero()[:, 1].tolist()) == {0, 1, 2}


def test_independent_glitches_per_ifo():
    torch.manual_seed(1)
    adder = GlitchAdder(_bank(ifos=2), prob=0.3)
    _, mask = adder(torch.zeros(20000, 2, 100))
    rate = mask.float().mean(0)
    assert torch.allclose(rate, torch.tensor([0.3, 0.3]), atol=0.015)
    both = (mask[:, 0] & mask[:, 1]).float().mean().item()
    assert both == pytest.approx(0.09, abs=0.008)  # independent: 0.3 * 0.3
    _, mask = GlitchAdder(_bank(ifos=2), prob=0.3, one_ifo=True)(torch.zeros(20000, 2, 100))
    assert not (mask[:, 0] & mask[:, 1]).any()
    assert mask.any(1).float().mean().item() == pytest.approx(0.3, abs=0.015)


def test_bank_rows_have_the_drawn_snr(tmp_path):
    path = str(tmp_path / "bank.hdf5")
    generate_glitch_bank(path, ["H1"], 40, 512.0, duration=2.0, noise={
        "glitch_types": {"sine_gaussian": 1.0, "scattered_light": 1.0}})  # fmt: skip
    freqs = np.arange(0.0, 256.0 + PSD_DF / 2, PSD_DF)
    with h5py.File(path) as f:
        rows, snrs = np.asarray(f["H1/strain"], np.float64), np.asarray(f["H1/snr"])
        assert f["H1/strain"].shape == (40, 1024) and (snrs >= 7.5).all()
    for row, snr in zip(rows, snrs, strict=True):
        assert glitch_snr(row, 512.0, freqs, aligo_design_psd(freqs)) == pytest.approx(snr, 1e-3)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "glitch_bank.hdf5"
    generate_glitch_bank(str(path), ["H1", "L1"], 30, SAMPLE_RATE, duration=1.0, noise=LOUD)
    return str(path)


def _loud_ifos(ds, n=256):
    X, _ = ds.whitened_batch(ds.sampler(n))
    power = (X.double() ** 2).sum(-1)  # (batch, ifo): ~ kernel_size for noise
    return power > 20 * X.shape[-1]


@pytest.mark.parametrize("one_ifo", [True, False])
def test_dataset_adds_bank_glitches_to_training_windows(tiny_data_dir, bank, one_ifo):
    kw = dataset_kwargs(data_dir=str(tiny_data_dir), waveform_prob=0.0, swap_prob=0.0,
                        mute_prob=0.0, valid_livetime=300.0)  # fmt: skip
    ds = AframeDataset(**kw, glitch_bank=bank, glitch_prob=1.0, glitch_one_ifo=one_ifo)
    ds.setup("fit")
    assert ds.glitcher.bank.shape == (2, 30, int(SAMPLE_RATE))
    torch.manual_seed(3)
    loud = _loud_ifos(ds)
    assert loud.any(1).float().mean() > 0.05  # a glitch in the kernel (most land in the PSD part)
    coincident = (loud[:, 0] & loud[:, 1]).sum().item()
    assert coincident == 0 if one_ifo else coincident > 0
    plain = AframeDataset(**kw)
    plain.setup("fit")
    assert not _loud_ifos(plain).any()


def test_glitch_prob_needs_a_bank(tiny_data_dir, tmp_path):
    kw = dataset_kwargs(data_dir=str(tiny_data_dir))
    with pytest.raises(DataConfigError, match="data.glitch_prob"):
        AframeDataset(**kw, glitch_prob=0.5)
    ds = AframeDataset(**kw, glitch_prob=0.5, glitch_bank=str(tmp_path / "none.hdf5"))
    with pytest.raises(DataConfigError, match="data.glitch_bank"):
        ds.setup("fit")
