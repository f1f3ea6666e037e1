"""The synthetic noise model: per-segment/drifting PSDs and logged glitches (issue #25)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import signal, stats

from aframe_lib.data.glitches import NoiseModel, read_glitches
from aframe_lib.data.noise import T0, aligo_design_psd, generate_background


def _strain(out: Path, ifo: str) -> list[np.ndarray]:
    files = sorted(out.glob("background-*.hdf5"), key=lambda p: float(p.name.split("-")[1]))
    out_ = []
    for path in files:
        with h5py.File(path, "r") as f:
            out_.append(np.asarray(f[ifo], np.float64))
    return out_


def _welch(x: np.ndarray, rate: float, seconds: float = 4.0):
    return signal.welch(x, fs=rate, nperseg=int(seconds * rate), average="mean")


def _snr(residual: np.ndarray, rate: float, freqs: np.ndarray, psd: np.ndarray) -> float:
    """Independent numpy SNR: rho^2 = 4 sum |FFT/fs|^2 / S df above 20 Hz."""
    g = np.fft.rfft(residual) / rate
    f = np.fft.rfftfreq(len(residual), 1 / rate)
    keep = f >= 20.0
    return math.sqrt(4 * rate / len(residual) * np.sum(np.abs(g[keep]) ** 2 / np.interp(
        f[keep], freqs, psd)))  # fmt: skip


def _pair(tmp_path: Path, model: NoiseModel, **kw) -> tuple[Path, Path]:
    on, off = tmp_path / "on", tmp_path / "off"
    generate_background(str(on), noise=model, **kw)
    quiet = NoiseModel(psd_scale=model.psd_scale, psd_drift=model.psd_drift)
    generate_background(str(off), noise=quiet, **kw)
    return on, off


@pytest.mark.parametrize(
    "types", [{"sine_gaussian": 1.0, "scattered_light": 1.0}, {"blip": 1.0}], ids=["param", "blip"]
)
def test_logged_glitches_are_the_residual_and_have_the_requested_snr(tmp_path, types):
    if "blip" in types:
        pytest.importorskip("gengli")
    rate, seconds = 1024.0, 256.0
    # a PSD factor of 3: a glitch coloured or scaled with the reference PSD misses its SNR
    model = NoiseModel(psd_scale=(3.0, 3.0), glitch_rates={"H1": 6.0}, glitch_types=types)
    kw = dict(ifos=["H1"], duration=2 * seconds, sample_rate=rate, segment_duration=seconds)
    on, off = _pair(tmp_path, model, **kw)
    log = read_glitches(str(on / "glitches.hdf5"))
    assert len(log["time"]) >= 20 and set(log["ifo"]) == {"H1"}
    assert set(log["type"]) <= set(types)
    checked = 0
    for k, (noisy, clean) in enumerate(zip(_strain(on, "H1"), _strain(off, "H1"), strict=True)):
        t0 = T0 + k * (seconds + 64.0)
        residual = noisy - clean
        mine = (log["time"] >= t0) & (log["time"] < t0 + seconds)
        starts = np.round((log["time"][mine] - t0 - log["duration"][mine] / 2) * rate).astype(int)
        sizes = np.round(log["duration"][mine] * rate).astype(int)
        covered = np.zeros(len(residual), bool)
        for a, n in zip(starts, sizes, strict=True):
            covered[max(a - 1, 0) : a + n + 1] = True
        # the residual is the logged glitches: nothing outside them, something in each
        assert not residual[~covered].any()
        assert all(
            np.abs(residual[a : a + n]).max() > 0 for a, n in zip(starts, sizes, strict=True)
        )
        freqs, psd = _welch(clean, rate)  # the background's PSD, from the data themselves
        for j, (a, n) in enumerate(zip(starts, sizes, strict=True)):
            others = [(b, m) for i, (b, m) in enumerate(zip(starts, sizes, strict=True)) if i != j]
            if any(b < a + n + 1 and a < b + m + 1 for b, m in others):
                continue  # overlapping glitches: their sum is checked above
            window = np.zeros(int(8 * rate) + n)
            window[int(4 * rate) : int(4 * rate) + n] = residual[a : a + n]
            measured = _snr(window, rate, freqs, psd)
            assert measured == pytest.approx(log["snr"][mine][j], rel=0.05)
            checked += 1
    assert checked >= 10


def test_glitch_snrs_and_types_follow_the_model(tmp_path):
    model = NoiseModel(glitch_rates={"L1": 60.0}, glitch_types={"sine_gaussian": 3.0,
                       "scattered_light": 1.0})  # fmt: skip
    generate_background(str(tmp_path), ["L1"], 1200.0, 256.0, segment_duration=600.0, noise=model)
    log = read_glitches(str(tmp_path / "glitches.hdf5"))
    n = len(log["snr"])
    assert abs(n - 1200) < 5 * math.sqrt(1200)  # Poisson, 60 per minute (a few fall off edges)
    lo, hi = 7.5, 200.0
    assert (log["snr"] >= lo).all() and (log["snr"] <= hi).all()

    def cdf(x):  # p(rho) ~ rho^-3 on [7.5, 200]
        return (lo**-2 - np.asarray(x) ** -2) / (lo**-2 - hi**-2)

    assert stats.kstest(log["snr"], cdf).pvalue > 1e-3
    sg = np.mean(log["type"] == "sine_gaussian")
    assert abs(sg - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n)


def test_glitches_are_independent_between_ifos(tmp_path):
    types = {"sine_gaussian": 1.0}
    both = NoiseModel(glitch_rates={"H1": 30.0, "L1": 30.0}, glitch_types=types)
    kw = dict(ifos=["H1", "L1"], duration=1200.0, sample_rate=256.0, segment_duration=300.0)
    generate_background(str(tmp_path / "a"), noise=both, **kw)
    generate_background(str(tmp_path / "b"), noise=NoiseModel(glitch_rates={"L1": 30.0},
                        glitch_types=types), **kw)  # fmt: skip
    a, b = (read_glitches(str(tmp_path / x / "glitches.hdf5")) for x in "ab")
    h1, l1 = a["time"][a["ifo"] == "H1"], a["time"][a["ifo"] == "L1"]
    # L1's glitches do not depend on H1's rate
    np.testing.assert_array_equal(l1, b["time"][b["ifo"] == "L1"])
    np.testing.assert_array_equal(a["snr"][a["ifo"] == "L1"], b["snr"][b["ifo"] == "L1"])
    # coincidences within 0.1 s: as many as independent Poisson streams give
    window = 0.1
    pairs = sum(int(np.sum(np.abs(l1 - t) < window)) for t in h1)
    expected = len(h1) * len(l1) * 2 * window / 1200.0
    assert abs(pairs - expected) < 4 * math.sqrt(expected) + 1
    assert len(h1) > 400 and len(l1) > 400


def test_default_model_is_the_stationary_noise_and_psd_factors_scale_it(tmp_path):
    kw = dict(ifos=["H1", "L1"], duration=64.0, sample_rate=256.0, segment_duration=32.0)
    generate_background(str(tmp_path / "none"), **kw)
    generate_background(str(tmp_path / "default"), noise=NoiseModel(), **kw)
    generate_background(str(tmp_path / "x4"), noise=NoiseModel(psd_scale=(4.0, 4.0)), **kw)
    for name in ("background-1000000000-32.hdf5", "psd.hdf5"):
        assert (tmp_path / "none" / name).read_bytes() == (tmp_path / "default" / name).read_bytes()
    assert not (tmp_path / "none" / "glitches.hdf5").exists()
    with h5py.File(tmp_path / "none" / "psd.hdf5") as f:
        assert "segments" not in f
    for plain, scaled in zip(_strain(tmp_path / "none", "L1"), _strain(tmp_path / "x4", "L1"),
                             strict=True):  # fmt: skip
        np.testing.assert_allclose(scaled, 2 * plain, rtol=1e-6)  # same draws, PSD x 4


def test_per_segment_psds_follow_the_configured_distribution(tmp_path):
    rate, seconds, n = 512.0, 16.0, 80
    model = NoiseModel(psd_scale=(0.25, 4.0))
    generate_background(str(tmp_path), ["H1"], n * seconds, rate, seconds, noise=model)
    with h5py.File(tmp_path / "psd.hdf5") as f:
        scales = np.asarray(f["segments/scale/H1"])
        assert json.loads(f.attrs["noise"]) == {"psd_scale": [0.25, 4.0]}
    assert scales.shape == (n, 2) and np.allclose(scales[:, 0], scales[:, 1])
    assert (scales >= 0.25).all() and (scales <= 4.0).all()
    # log-uniform on [0.25, 4]
    assert (
        stats.kstest(np.log(scales[:, 0]), "uniform", (math.log(0.25), math.log(16))).pvalue > 1e-3
    )
    for x, scale in zip(_strain(tmp_path, "H1"), scales[:, 0], strict=True):
        freqs, psd = _welch(x, rate, 1.0)
        band = (freqs >= 30) & (freqs <= 200)
        measured = np.mean(psd[band] / aligo_design_psd(freqs[band]))
        assert measured == pytest.approx(scale, rel=0.06)


def test_psd_drifts_within_a_segment(tmp_path):
    rate, seconds = 512.0, 128.0
    model = NoiseModel(psd_scale=(0.5, 2.0), psd_drift=4.0)
    generate_background(str(tmp_path), ["H1"], 6 * seconds, rate, seconds, noise=model)
    with h5py.File(tmp_path / "psd.hdf5") as f:
        scales = np.asarray(f["segments/scale/H1"])
    ratio = scales[:, 1] / scales[:, 0]
    assert (ratio >= 0.25 - 1e-9).all() and (ratio <= 4 + 1e-9).all() and ratio.std() > 0
    edge = int(16 * rate)
    for x, (s0, s1) in zip(_strain(tmp_path, "H1"), scales, strict=True):
        for part, frac in ((x[:edge], 8 / seconds), (x[-edge:], 1 - 8 / seconds)):
            freqs, psd = _welch(part, rate, 1.0)
            band = (freqs >= 30) & (freqs <= 200)
            expect = math.exp(math.log(s0) + (math.log(s1) - math.log(s0)) * frac)
            # the factor varies by up to 4**(16/128) = 1.19 across the 16 s measured
            assert np.mean(psd[band] / aligo_design_psd(freqs[band])) == pytest.approx(
                expect, rel=0.08)  # fmt: skip


def test_psd_files_colour_the_noise(tmp_path):
    freqs = np.arange(1.0, 1025.0, 0.5)
    asd = np.sqrt(aligo_design_psd(freqs)) * np.where(freqs > 100, 3.0, 1.0)
    np.savetxt(tmp_path / "curve.txt", np.stack([freqs, asd], 1))
    model = NoiseModel(psd_files=(str(tmp_path / "curve.txt"),))
    out = tmp_path / "data"
    generate_background(str(out), ["V1"], 64.0, 512.0, 64.0, noise=model)
    (x,) = _strain(out, "V1")
    f, psd = _welch(x, 512.0, 1.0)
    for lo, hi, factor in ((30, 90, 1.0), (120, 240, 9.0)):
        band = (f >= lo) & (f <= hi)
        assert np.mean(psd[band] / aligo_design_psd(f[band])) == pytest.approx(factor, rel=0.08)
    with h5py.File(out / "psd.hdf5") as h:
        assert h.attrs["model"] == "psd_files: curve.txt"


def test_blips_keep_torch_global_rng_state(tmp_path):
    pytest.importorskip("gengli")
    import torch

    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    model = NoiseModel(glitch_rates={"H1": 30.0}, glitch_types={"blip": 1.0})
    generate_background(str(tmp_path), ["H1"], 64.0, 1024.0, 64.0, noise=model)
    assert len(read_glitches(str(tmp_path / "glitches.hdf5"))["time"]) > 10
    assert torch.equal(torch.get_rng_state(), before)


def test_manifest_and_provenance_record_the_model(tmp_path):
    from aframe_lib.data import provenance
    from aframe_lib.data.synthetic import SyntheticDataError, ensure_synthetic_dataset

    model = NoiseModel(psd_scale=(0.5, 2.0), glitch_rates={"H1": 1.0},
                       glitch_types={"sine_gaussian": 1.0})  # fmt: skip
    kw = dict(ifos=["H1", "L1"], sample_rate=256.0, background_duration=64.0,
              segment_duration=64.0, num_waveforms=0, num_val_waveforms=0)  # fmt: skip
    ensure_synthetic_dataset(str(tmp_path), noise=model, **kw)
    manifest = json.loads((tmp_path / "synthetic.json").read_text())
    assert manifest["noise"] == model.describe()
    assert manifest["noise"]["glitch_rates"] == {"H1": 1.0}
    record = provenance.read(str(tmp_path / "background-1000000000-64.hdf5"))
    assert record["noise"] == model.describe()
    # same seed, glitches or not: the same Gaussian draws, so the same data
    plain = provenance.synthetic("background", record["generator"], 0, 0, psd=record["psd"],
                                 spans=record["spans"])  # fmt: skip
    assert provenance.same_data(record, plain)
    with pytest.raises(SyntheticDataError, match="noise"):
        ensure_synthetic_dataset(str(tmp_path), **kw)  # the data there have another noise
    with pytest.raises(SyntheticDataError, match=r"noise.glitch_rates.*G1"):
        ensure_synthetic_dataset(str(tmp_path / "x"), noise={"glitch_rates": {"G1": 1.0}}, **kw)


def test_an_event_at_a_glitch_is_reported_as_coinciding():
    from aframe_lib.data.glitches import glitch_coincidences, loudest_with_glitches

    log = {
        "ifo": np.array(["H1", "L1", "L1"]), "type": np.array(["blip", "scattered_light", "blip"]),
        "time": np.array([100.0, 200.0, 200.5]), "snr": np.array([10.0, 50.0, 20.0]),
        "duration": np.array([0.2, 4.0, 0.2]),
    }  # fmt: skip
    times = np.array([100.0, 150.0, 201.0, 300.0])
    types, ifos = glitch_coincidences(times, log, ["H1", "L1"], window=0.5)
    # exactly at the blip; nothing at 150; the louder of two L1 glitches; nothing at 300
    assert types.tolist() == ["blip", "", "scattered_light", ""]
    assert ifos.tolist() == ["H1", "", "L1", ""]
    # a timeslide: L1 read 100 s later than H1, so the event at 100 s meets L1's glitches at 200
    shifts = np.array([[0.0, 0.0], [0.0, 50.0], [0.0, 0.0], [0.0, -100.0]])
    types, ifos = glitch_coincidences(times, log, ["H1", "L1"], shifts, window=0.5)
    assert types.tolist() == ["blip", "scattered_light", "scattered_light", "scattered_light"]
    summary = loudest_with_glitches(np.array([4.0, 3.0, 2.0, 1.0]), types, top=2)
    assert summary["events"] == 2 and summary["with_glitch"] == 1.0
    assert summary["by_type"] == {"blip": 0.5, "sine_gaussian": 0.0, "scattered_light": 0.5}
