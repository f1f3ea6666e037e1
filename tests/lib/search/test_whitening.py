"""Streaming windows equal the training path's (AframeDataset: PsdEstimator + Whiten)."""

from __future__ import annotations

import pytest
import torch
from conftest import IFOS, PSD_LENGTH, SAMPLE_RATE

from aframe_lib.data import AframeDataset
from aframe_lib.search import StreamingWhitener


def training_windows(data: AframeDataset, X: torch.Tensor, stride: int) -> torch.Tensor:
    """What training builds from the same samples: windows of ``sample_size`` every ``stride``."""
    windows = X.unfold(-1, data.sample_size, stride).transpose(0, 1)
    kernels, psds = data.psd_estimator(windows)
    return data.whitener(kernels, psds).float()


@pytest.mark.parametrize(
    "psd_length,highpass",
    [(PSD_LENGTH, 32.0), (8.0, 32.0), (7.5, 32.0), (8.0, None)],
    ids=["even-segments", "odd-segments-fast", "4-segments", "no-highpass-exact"],
)
def test_streaming_windows_equal_training_windows(psd_length, highpass, tmp_path):
    data = AframeDataset(
        str(tmp_path), IFOS, SAMPLE_RATE, kernel_length=1.0, fduration=1.0,
        psd_length=psd_length, highpass=highpass,
    )  # fmt: skip
    stride = int(SAMPLE_RATE / 4)
    streaming = StreamingWhitener(
        SAMPLE_RATE, 1.0, 1.0, psd_length, stride, highpass=highpass, psd_batch=7
    )
    X = torch.randn(2, int((psd_length + 2.0 + 30.0) * SAMPLE_RATE)) * 1e-21
    X += 3e-22  # a DC offset: the mean removal must match too
    got = streaming(X)
    expected = training_windows(data, X, stride)
    assert got.shape == expected.shape == (121, 2, 256)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    # window k's kernel ends at kernel_end + k * stride: the last sample of a training sample
    # minus the fduration / 2 cropped by whitening
    assert streaming.kernel_end == data.sample_size - int(SAMPLE_RATE * 0.5)


def test_search_outputs_match_training_path_across_chunks(oracle, noise_dir):
    """Scores of a linear model through Search (small chunks) == the training path's, at the
    same GPS times."""
    from aframe_lib.search import Search, find_spans

    torch.manual_seed(1)
    weights = torch.randn(2, 256)

    class Linear(torch.nn.Module):
        def forward(self, x):
            return (x * weights).sum((1, 2))[:, None]

    engine = Search(
        Linear(), IFOS, SAMPLE_RATE, 1.0, 1.0, psd_length=PSD_LENGTH, highpass=32.0,
        chunk_length=7.0, batch_size=5, device="cpu",
    )  # fmt: skip
    span = find_spans(str(noise_dir), IFOS, SAMPLE_RATE)[0]
    times, scores = engine.outputs(span)
    data = AframeDataset(
        str(noise_dir), IFOS, SAMPLE_RATE, kernel_length=1.0, fduration=1.0,
        psd_length=PSD_LENGTH, highpass=32.0,
    )  # fmt: skip
    X = torch.from_numpy(span.read())
    expected = Linear()(training_windows(data, X, 64))[:, 0]
    assert len(scores) == len(expected) == (span.size - data.sample_size) // 64 + 1
    torch.testing.assert_close(torch.from_numpy(scores), expected, atol=1e-3, rtol=1e-4)
    # output k: the kernel of training sample k (starting at k * stride) ends at its time
    k = 17
    kernel_end = k * 64 + data.psd_size + int(0.5 * SAMPLE_RATE) + data.kernel_size
    assert times[k] == pytest.approx(span.t0 + kernel_end / SAMPLE_RATE)
