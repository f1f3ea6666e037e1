"""Synthetic data: the PSD, the noise drawn from it, the waveforms, and the idempotent dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import signal, stats

from aframe_lib.data import synthetic
from aframe_lib.data.background import list_segments, read_segment
from aframe_lib.data.synthetic import (
    SyntheticDataError,
    aligo_design_psd,
    colored_noise,
    ensure_synthetic_dataset,
    generate_background,
    generate_waveforms,
)
from aframe_lib.data.waveforms import read_waveforms

# a dataset small enough for a test (about a second to generate)
TINY = dict(
    ifos=["H1", "L1"],
    sample_rate=256.0,
    background_duration=64.0,
    segment_duration=32.0,
    num_waveforms=4,
    num_val_waveforms=3,
    waveform_duration=4.0,
    coalescence_time=3.0,
)


def envelope(x: np.ndarray) -> np.ndarray:
    """Amplitude envelope of each row (modulus of the analytic signal)."""
    return np.abs(signal.hilbert(x.astype(np.float64), axis=-1))


def psd_grid(sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    frequencies = np.arange(0, sample_rate / 2 + 1 / 32, 1 / 16)
    return aligo_design_psd(frequencies), frequencies


# ---------------------------------------------------------------- PSD


def test_psd_finite_positive_and_clamped():
    f = np.concatenate([[0.0], np.logspace(-3, 4, 500)])
    s = aligo_design_psd(f)
    assert np.isfinite(s).all() and (s > 0).all()
    # the design curve's bucket: ASD ~ 3.8e-24 /rtHz near 245 Hz
    assert np.sqrt(aligo_design_psd(np.array([245.4])))[0] == pytest.approx(3.789e-24, rel=1e-3)
    # a steep wall below 10 Hz, held flat below 2 Hz
    low = aligo_design_psd(np.array([0.0, 1.0, 2.0, 5.0, 10.0]))
    assert low[0] == low[1] == low[2] == pytest.approx(625 * low[4])
    assert low[3] == pytest.approx(16 * low[4])
    with pytest.raises(ValueError, match=">= 0"):
        aligo_design_psd(np.array([-1.0]))


def test_psd_gives_design_bns_range():
    """An optimally oriented 1.4+1.4 BNS is seen at SNR 8 out to ~445 Mpc (range ~190 Mpc)."""
    g, c, msun, mpc = 6.674e-11, 2.998e8, 1.989e30, 3.0857e22
    m = 1.4 * msun
    chirp = (m * m) ** 0.6 / (2 * m) ** 0.2
    f = np.linspace(10, c**3 / (6**1.5 * np.pi * g * 2 * m), 100_000)
    hf = (
        np.sqrt(5 / 24)
        * np.pi ** (-2 / 3)
        * c
        / mpc
        * (g * chirp / c**3) ** (5 / 6)
        * f ** (-7 / 6)
    )
    horizon = np.sqrt(4 * np.trapezoid(hf**2 / aligo_design_psd(f), f)) / 8
    assert 170 < horizon / 2.26 < 215


# ---------------------------------------------------------------- noise


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    psd, frequencies = psd_grid(2048)
    return colored_noise(psd, frequencies, 512.0, 2048.0, 2, np.random.default_rng(0))


def test_noise_shape_dtype(noise):
    assert noise.shape == (2, 512 * 2048) and noise.dtype == np.float32


@pytest.mark.parametrize("average", ["mean", "median"])
def test_noise_matches_psd(noise, average):
    f, p = signal.welch(noise.astype(np.float64), fs=2048, nperseg=2048, average=average)
    band = (f >= 20) & (f < 804)
    ratio = p[:, band] / aligo_design_psd(f[band])
    # 1023 averages and 16 Hz bands: ~1% scatter (median ~1.5%), so 10% is a test of the level
    banded = ratio.reshape(2, -1, 16).mean(-1)
    assert np.abs(banded - 1).max() < 0.1, banded


def test_noise_is_gaussian(noise):
    """Whitened with the true PSD, the noise is white, unit-variance and Gaussian."""
    size = noise.shape[-1]
    f = np.fft.rfftfreq(size, 1 / 2048)
    psd = aligo_design_psd(np.maximum(f, 1e-3))
    white = np.fft.irfft(np.fft.rfft(noise, axis=-1) / np.sqrt(psd * 2048 / 2), n=size, axis=-1)
    assert np.abs(white.mean(-1)).max() < 0.01
    assert white.std(-1) == pytest.approx([1, 1], rel=0.01)
    assert np.abs(stats.skew(white, axis=-1)).max() < 0.05
    assert np.abs(stats.kurtosis(white, axis=-1)).max() < 0.1
    # and the two channels are independent
    assert abs(np.corrcoef(white)[0, 1]) < 0.01


def test_noise_seeded():
    psd, frequencies = psd_grid(256)
    draw = lambda seed: colored_noise(psd, frequencies, 8, 256, 1, np.random.default_rng(seed))
    np.testing.assert_array_equal(draw(1), draw(1))
    assert not np.allclose(draw(1), draw(2), rtol=0.1, atol=0)


def test_noise_rejects_bad_psd():
    with pytest.raises(ValueError, match="finite"):
        colored_noise(np.array([1.0, np.nan]), np.array([0.0, 1.0]), 1, 16, 1, None)
    with pytest.raises(ValueError, match="equal 1-D"):
        colored_noise(np.ones(3), np.arange(4.0), 1, 16, 1, None)


# ---------------------------------------------------------------- background files


def test_background_files(tmp_path):
    paths = generate_background(str(tmp_path), ["H1", "L1"], 40, 256, segment_duration=16)
    names = [Path(p).name for p in paths]
    assert names == [
        "background-1000000000-16.hdf5",
        "background-1000000080-16.hdf5",
        "background-1000000160-8.hdf5",
    ]
    segments = list_segments(str(tmp_path), ["H1", "L1"], sample_rate=256)
    assert [s.t0 for s in segments] == [1_000_000_000, 1_000_000_080, 1_000_000_160]
    assert [s.duration for s in segments] == [16, 16, 8]
    strain = read_segment(segments[0])
    assert strain.dtype == np.float32 and strain.shape == (2, 16 * 256)
    assert not np.allclose(strain[0], strain[1], rtol=0.1, atol=0)  # IFOs independent
    with h5py.File(tmp_path / "psd.hdf5") as f:
        np.testing.assert_array_equal(f["H1"][:], aligo_design_psd(f["frequencies"][:]))
        np.testing.assert_array_equal(f["L1"][:], f["H1"][:])
        assert f["frequencies"][-1] == 128


def test_background_seeded(tmp_path):
    def strain(seed, sub):
        generate_background(str(tmp_path / sub), ["H1"], 8, 256, seed=seed)
        return read_segment(list_segments(str(tmp_path / sub), ["H1"])[0])

    np.testing.assert_array_equal(strain(3, "a"), strain(3, "b"))
    assert not np.allclose(strain(3, "a"), strain(4, "c"), rtol=0.1, atol=0)


def test_one_hour_is_fast(tmp_path):
    """A guard, not a benchmark: one hour of 2-IFO 2048 Hz background in well under 30 s."""
    start = time.perf_counter()
    paths = generate_background(str(tmp_path), ["H1", "L1"], 3600, 2048)
    assert time.perf_counter() - start < 30
    assert len(paths) == 4


# ---------------------------------------------------------------- waveforms


@pytest.fixture(scope="module")
def waveforms(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("wf") / "waveforms.hdf5")
    return path, generate_waveforms(path, 6, 1024, 4.0, 3.0, seed=5, batch_size=4)


def test_waveform_shapes_and_amplitude(waveforms):
    _, ws = waveforms
    assert ws.plus.shape == ws.cross.shape == (6, 4096) and ws.plus.dtype == np.float32
    peak = np.sqrt(ws.plus**2 + ws.cross**2).max(-1)
    assert ((peak > 1e-24) & (peak < 1e-19)).all(), peak
    assert np.isfinite(ws.plus).all() and ws.plus[:, 0].tolist() == [0.0] * 6  # tapered start


def test_waveform_coalescence_at_peak(waveforms):
    _, ws = waveforms
    expected = 3.0 * 1024
    env = np.sqrt(envelope(ws.plus) ** 2 + envelope(ws.cross) ** 2)
    assert np.abs(env.argmax(-1) - expected).max() <= 2  # samples
    raw = np.sqrt(ws.plus.astype(float) ** 2 + ws.cross.astype(float) ** 2)
    assert np.abs(raw.argmax(-1) - expected).max() / 1024 < 0.005  # |h| peak within 5 ms


def test_waveform_parameters(waveforms):
    import torch
    from ml4gw.waveforms.conversion import chirp_mass_and_mass_ratio_to_components

    path, ws = waveforms
    p = ws.parameters
    expected = {"chirp_mass", "mass_ratio", "mass_1", "mass_2", "chi1", "chi2", "distance"}
    assert expected | {"inclination", "phic"} <= p.keys()
    assert ((10 <= p["mass_2"]) & (p["mass_2"] <= p["mass_1"]) & (p["mass_1"] <= 80)).all()
    assert ((100 <= p["distance"]) & (p["distance"] <= 3000)).all()
    m1, m2 = chirp_mass_and_mass_ratio_to_components(
        torch.as_tensor(p["chirp_mass"]), torch.as_tensor(p["mass_ratio"])
    )
    np.testing.assert_allclose(m1.numpy(), p["mass_1"], rtol=1e-10)
    np.testing.assert_allclose(m2.numpy(), p["mass_2"], rtol=1e-10)
    back = read_waveforms(path, sample_rate=1024)
    np.testing.assert_array_equal(back.plus, ws.plus)
    np.testing.assert_array_equal(back.cross, ws.cross)
    for key, value in p.items():
        np.testing.assert_array_equal(back.parameters[key], value)
    assert back.coalescence_time == 3.0 and back.duration == 4.0


def test_waveforms_seeded(tmp_path, waveforms):
    # same arguments (batch_size included: ml4gw picks the FFT length per batch) => same rows
    again = generate_waveforms(str(tmp_path / "w.hdf5"), 6, 1024, 4.0, 3.0, seed=5, batch_size=4)
    for key, value in waveforms[1].parameters.items():
        np.testing.assert_array_equal(again.parameters[key], value)
    np.testing.assert_array_equal(again.plus, waveforms[1].plus)
    other = generate_waveforms(str(tmp_path / "w.hdf5"), 6, 1024, 4.0, 3.0, seed=6)
    assert not np.isin(other.parameters["mass_1"], again.parameters["mass_1"]).any()


# ---------------------------------------------------------------- the dataset


def mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def test_ensure_dataset_is_idempotent(tmp_path, monkeypatch):
    out = str(tmp_path / "data")
    assert ensure_synthetic_dataset(out, **TINY) == out
    data = Path(out)
    assert sorted(p.name for p in data.iterdir()) == [
        "background-1000000000-32.hdf5",
        "background-1000000096-32.hdf5",
        "psd.hdf5",
        "synthetic.json",
        "test_waveforms.hdf5",
        "val_waveforms.hdf5",
        "waveforms.hdf5",
    ]
    assert json.loads((data / "synthetic.json").read_text()) == {
        **TINY, "seed": 0, "num_test_waveforms": TINY["num_val_waveforms"],
    }  # fmt: skip
    assert len(list_segments(out, ["H1", "L1"], sample_rate=256)) == 2
    train, val = (
        read_waveforms(f"{out}/waveforms.hdf5"),
        read_waveforms(f"{out}/val_waveforms.hdf5"),
    )
    assert (len(train), len(val)) == (4, 3)
    assert not np.isin(val.parameters["mass_1"], train.parameters["mass_1"]).any()

    before = mtimes(data)
    boom = lambda *a, **k: pytest.fail("a complete dataset must not be regenerated")
    monkeypatch.setattr(synthetic, "generate_background", boom)
    monkeypatch.setattr(synthetic, "generate_waveforms", boom)
    ensure_synthetic_dataset(out, **TINY)
    assert mtimes(data) == before


def test_ensure_dataset_mismatch(tmp_path):
    out = str(tmp_path)
    ensure_synthetic_dataset(out, **TINY)
    with pytest.raises(SyntheticDataError, match=r"num_waveforms: 4 there, 5 asked.*seed: 0 there"):
        ensure_synthetic_dataset(out, **{**TINY, "num_waveforms": 5, "seed": 1})


def test_ensure_dataset_refuses_stray_background(tmp_path):
    generate_background(str(tmp_path), ["H1"], 10, 256, t0=1_200_000_000)
    with pytest.raises(SyntheticDataError, match="background-1200000000-10.hdf5"):
        ensure_synthetic_dataset(str(tmp_path), **TINY)


def test_kill_midway_then_rerun(tmp_path, monkeypatch):
    out = tmp_path / "data"
    real = synthetic.generate_waveforms

    def dies_on_validation(path, *args, **kwargs):
        if path.endswith("val_waveforms.hdf5"):
            raise KeyboardInterrupt("killed")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(synthetic, "generate_waveforms", dies_on_validation)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_dataset(str(out), **TINY)
    names = {p.name for p in out.iterdir()}
    assert "synthetic.json" not in names and "val_waveforms.hdf5" not in names
    assert not [n for n in names if n.startswith(".")]  # no temporary files left behind

    monkeypatch.setattr(synthetic, "generate_waveforms", real)
    ensure_synthetic_dataset(str(out), **TINY)
    assert (out / "synthetic.json").exists() and len(
        read_waveforms(f"{out}/val_waveforms.hdf5")
    ) == 3


def test_missing_file_regenerates(tmp_path):
    ensure_synthetic_dataset(str(tmp_path), **TINY)
    (tmp_path / "val_waveforms.hdf5").unlink()
    ensure_synthetic_dataset(str(tmp_path), **TINY)
    assert len(read_waveforms(str(tmp_path / "val_waveforms.hdf5"))) == 3


def test_console_script(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--sample-rate", "256", "--duration", "64"]
    argv += ["--segment-duration", "32", "--num-waveforms", "4", "--num-val-waveforms", "3"]
    argv += ["--waveform-duration", "4", "--coalescence-time", "3"]
    synthetic.main(argv)
    out = capsys.readouterr().out
    assert "waveforms.hdf5" in out and f"synthetic dataset ready in {tmp_path}" in out
    assert json.loads((tmp_path / "synthetic.json").read_text()) == {
        **TINY, "seed": 0, "num_test_waveforms": TINY["num_val_waveforms"],
    }  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        synthetic.main([*argv, "--seed", "7"])
    assert exc.value.code == 2
    assert "seed: 0 there, 7 asked" in capsys.readouterr().err


@pytest.mark.s3
def test_dataset_on_s3(s3_bucket):
    out = f"{s3_bucket}/synthetic"
    ensure_synthetic_dataset(out, **TINY)
    assert len(list_segments(out, ["H1", "L1"])) == 2
    assert len(read_waveforms(f"{out}/val_waveforms.hdf5", sample_rate=256)) == 3
    ensure_synthetic_dataset(out, **TINY)  # complete: a no-op
    with pytest.raises(SyntheticDataError, match="seed"):
        ensure_synthetic_dataset(out, **{**TINY, "seed": 2})
