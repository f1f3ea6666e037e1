"""PSD estimation: the fast median path equals ml4gw's SpectralDensity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ml4gw.transforms import SpectralDensity

from aframe_lib.data.preprocessing import PsdEstimator, median_bias

SAMPLE_RATE = 512.0


# 5 segments (median of five), 4 (even: mean of the middle two), 7 (min/max network), 15 (numpy)
# an offset well above the noise: the series mean must be removed (ml4gw's fast mode: once)
@pytest.mark.parametrize("psd_length", [8.0, 7.5, 10.0, 20.0])
@pytest.mark.parametrize("offset", [0.0, 3e-21])
def test_fast_median_psd_equals_ml4gw(psd_length, offset):
    torch.manual_seed(3)
    size = int((psd_length + 2.5) * SAMPLE_RATE)
    X = torch.randn(6, 2, size) * torch.tensor([1e-21, 3e-22])[:, None] + offset  # strain-sized
    estimator = PsdEstimator(2.5, SAMPLE_RATE, fftlength=2.5, average="median", fast=True)
    window, psd = estimator(X)
    assert window.shape == (6, 2, int(2.5 * SAMPLE_RATE))
    torch.testing.assert_close(window, X[..., -window.shape[-1] :])
    reference = SpectralDensity(SAMPLE_RATE, 2.5, average="median", fast=True)
    expected = reference(X[..., : -window.shape[-1]].double())
    assert psd.dtype == torch.float64 and psd.shape == expected.shape
    # DC of an offset series is a difference of float32 numbers (ml4gw's is float64's)
    np.testing.assert_allclose(psd[..., 1:].numpy(), expected[..., 1:].numpy(), rtol=1e-4)
    np.testing.assert_allclose(psd[..., 0].numpy(), expected[..., 0].numpy(), rtol=1e-3)


def test_median_bias_matches_scipy():
    from scipy.signal._spectral_py import _median_bias

    for n in range(1, 12):
        assert median_bias(n) == pytest.approx(_median_bias(n))


def test_window_without_room_for_a_psd_is_rejected():
    estimator = PsdEstimator(2.5, SAMPLE_RATE, fftlength=2.5)
    with pytest.raises(ValueError, match="no room for a PSD segment"):
        estimator(torch.randn(1, 2, int(2.5 * SAMPLE_RATE)))


@pytest.mark.parametrize("num", [1, 3, 5, 7, 15, 17])
def test_median_network_equals_torch_median(num):
    from aframe_lib.data.preprocessing import _median_last

    x = torch.randint(0, 6, (50, 7, num)).float()  # many ties
    torch.testing.assert_close(_median_last(x), x.median(-1).values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_median_psd_of_silence_is_zero(dtype):
    """Zero-padded rows (no data) give a zero PSD, not NaN, in either input precision."""
    X = torch.zeros(2, 2, int(10.5 * SAMPLE_RATE), dtype=dtype)
    X[0, 0] = torch.randn(X.shape[-1], dtype=dtype) * 1e-21
    _, psd = PsdEstimator(2.5, SAMPLE_RATE, fftlength=2.5, average="median", fast=True)(X)
    assert torch.isfinite(psd).all() and (psd[0, 0, 1:] > 0).all()
    assert (psd.flatten(0, 1)[1:] == 0).all()
