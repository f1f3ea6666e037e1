"""One PSD policy: training windows and search windows of the same strain are distributed alike.

Tolerances (stated): between the Dataset's training batches (no injections) and the search's
whitening of the same strain, the mean variance of the whitened windows may differ by 3 %, their
Kolmogorov-Smirnov statistics against N(0, 1) by 0.005, and the two-sample KS statistic between
them may be at most 0.01. Measured on this data (~1000 windows of 2 x 256 samples, 16 s PSDs):
~0.5 %, ~0.0005 and ~0.002; the mismatch this policy removes (training on 4 s PSDs, searching
with 16 s ones) gives ~50 % and a two-sample KS of ~0.05 (8 s vs 16 s: ~13 % and ~0.016).
"""

from __future__ import annotations

import pytest
import torch
from helpers.tiny_data import SAMPLE_RATE
from ml4gw.distributions import PowerLaw
from scipy import stats

from aframe_lib.data import AframeDataset, list_segments, read_segment
from aframe_lib.data.background import split_by_file
from aframe_lib.data.config import DataConfigError
from aframe_lib.data.psd import PsdPolicy
from aframe_lib.search import StreamingWhitener

IFOS = ["H1", "L1"]
POLICY = PsdPolicy(length=16.0, cadence=1.0)


def dataset(data_dir, **kwargs) -> AframeDataset:
    settings = dict(
        data_dir=str(data_dir), ifos=IFOS, sample_rate=SAMPLE_RATE, kernel_length=1.0,
        fduration=1.0, highpass=32.0, batch_size=32, waveform_prob=0.0, swap_prob=0.0,
        mute_prob=0.0, valid_frac=0.34, valid_livetime=100.0, psd=POLICY,
        snr_sampler=PowerLaw(10.0, 20.0, -3.0),
    )  # fmt: skip
    return AframeDataset(**{**settings, **kwargs})


def summary(windows: torch.Tensor) -> tuple[float, float]:
    """Mean per-window variance, and the KS statistic of every sample against N(0, 1)."""
    values = windows.double().flatten().numpy()
    return float(windows.var(-1).mean()), float(stats.kstest(values, "norm").statistic)


def two_sample_ks(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(stats.ks_2samp(a.double().flatten(), b.double().flatten()).statistic)


def search_windows(ds: AframeDataset, policy: PsdPolicy) -> torch.Tensor:
    """The search's whitened windows (4 Hz) of the Dataset's training files."""
    whitener = StreamingWhitener(SAMPLE_RATE, 1.0, 1.0, policy, int(SAMPLE_RATE / 4), highpass=32.0)
    segments, _ = split_by_file(list_segments(str(ds.data_dir), IFOS), valid_frac=ds.valid_frac)
    return torch.cat([whitener(torch.as_tensor(read_segment(s, IFOS))) for s in segments])


def test_training_and_search_windows_have_the_same_distribution(tiny_data_dir):
    ds = dataset(tiny_data_dir)
    ds.setup("fit")
    search = search_windows(ds, ds.psd_policy)
    with torch.no_grad():
        train, y = ds.whitened_batch(ds.sampler(len(search)))
    assert not y.any()  # no injections: the background path alone
    (v_train, ks_train), (v_search, ks_search) = summary(train), summary(search)
    assert abs(v_train / v_search - 1) < 0.03, (v_train, v_search)
    assert abs(ks_train - ks_search) < 0.005, (ks_train, ks_search)
    assert two_sample_ks(train, search) < 0.01

    # the test can fail: the old pairing (training PSDs of 4 s, search of 16 s) is far off
    short = dataset(tiny_data_dir, psd=PsdPolicy(length=4.0, cadence=1.0))
    short.setup("fit")
    with torch.no_grad():
        old = short.whitened_batch(short.sampler(len(search)))[0]
    assert summary(old)[0] / v_search - 1 > 0.2 and two_sample_ks(old, search) > 0.03


def test_psd_shorthands_and_policy(tiny_data_dir):
    ds = dataset(tiny_data_dir, psd=None, psd_length=12.0, fftlength=1.5)
    assert ds.psd_policy == PsdPolicy(length=12.0, fftlength=1.5)
    assert ds.psd_size == 12 * 256 and ds.fftlength == 1.5
    assert ds.hparams["psd"] == ds.psd_policy.to_dict()
    assert ds.sample_size == (12 + 2) * 256 + ds.psd_staleness
    # a checkpoint's hparams hold both: consistent values are accepted
    again = AframeDataset(**ds.hparams)
    assert again.psd_policy == ds.psd_policy
    fresh = dataset(tiny_data_dir, psd={"length": 8.0, "cadence": 0.0})
    assert fresh.psd_staleness == 0 and fresh.sample_size == 10 * 256


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"psd_length": 8.0}, r"data.psd_length=8.0: data.psd is given too; set data.psd.length"),
        ({"psd": {"length": 1.0}}, r"data.psd.length=1.0: must be at least the FFT length"),
        ({"psd": None, "psd_length": 1.0}, r"data.psd_length=1.0: must be at least the FFT"),
        ({"psd": {"cadence": -1.0}}, r"data.psd.cadence=-1.0: must be a number >= 0"),
        ({"psd": {"average": "mode"}}, r"data.psd.average='mode': must be 'median' or 'mean'"),
        ({"psd": {"lenght": 8.0}}, r"data.psd: unknown key\(s\) \['lenght'\]"),
        ({"psd": {"overlap": 2.0}}, r"data.psd.overlap=2.0: must be in \[0, fftlength=2.0\)"),
    ],
)
def test_bad_policies_fail_at_construction_naming_the_field(tiny_data_dir, kwargs, match):
    with pytest.raises(DataConfigError, match=match):
        dataset(tiny_data_dir, **kwargs)


def test_training_psd_segment_ends_the_drawn_age_before_the_window(tiny_data_dir):
    from ml4gw.transforms import SpectralDensity

    ds = dataset(tiny_data_dir, psd=PsdPolicy(length=4.0, cadence=1.0))
    M, P, W = ds.psd_staleness, ds.psd_size, ds.window_size
    assert M == 255 and ds.sample_size == P + M + W
    X = torch.randn(6, 2, ds.sample_size).double()
    ages = torch.tensor([0, 1, 64, 128, 200, 255])
    windows, psds = ds.psd_estimator(X, ages)
    torch.testing.assert_close(windows, X[..., -W:])
    sd = SpectralDensity(SAMPLE_RATE, 2.0, average="median", fast=True)
    for i, d in enumerate(ages.tolist()):  # the segment ends d samples before the window
        expected = sd(X[i : i + 1, :, M - d : M - d + P])[0]
        torch.testing.assert_close(psds[i], expected, rtol=1e-4, atol=0)
    # drawn ages: uniform on 0..M (the same draw as torch.randint with the same seed)
    torch.manual_seed(5)
    _, drawn = ds.psd_estimator(X)
    torch.manual_seed(5)
    torch.testing.assert_close(drawn, ds.psd_estimator(X, torch.randint(M + 1, (6,)))[1])
