"""Streaming windows equal the training path's (AframeDataset: PsdEstimator + Whiten)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.search import IFOS, PSD_LENGTH, SAMPLE_RATE
from ml4gw.transforms import SpectralDensity

from aframe_lib.data import AframeDataset
from aframe_lib.data.psd import PsdPolicy
from aframe_lib.search import StreamingWhitener

STRIDE = int(SAMPLE_RATE / 4)


def training_windows(data: AframeDataset, X: torch.Tensor, w: StreamingWhitener):
    """What training builds for each stream window whose PSD lies wholly before it: the sample
    ending with that window, and the PSD age the search gives it (``staleness``)."""
    first = -(-(data.psd_size + data.psd_staleness) // w.stride)
    ks = range(first, w.num_windows(X.shape[-1]))
    starts = [k * w.stride - data.psd_size - data.psd_staleness for k in ks]
    samples = torch.stack([X[:, s : s + data.sample_size] for s in starts])
    staleness = torch.tensor([k * w.stride - w.psd_of(k) * w.cadence - w.psd_size for k in ks])
    assert staleness.min() >= 0 and staleness.max() <= data.psd_staleness
    kernels, psds = data.psd_estimator(samples, staleness)
    return first, data.whitener(kernels, psds).float()


@pytest.mark.parametrize(
    "psd",
    [
        {"length": PSD_LENGTH, "cadence": 1.0},
        {"length": 8.0, "cadence": 0.0},
        {"length": 8.0, "cadence": 0.75},
        {"length": 7.5, "cadence": 1.0, "average": "mean"},
        {"length": 5.0, "cadence": 2.0, "fftlength": 1.5},
    ],
    ids=["even-segments", "fresh-psd", "cadence-off-stride-grid", "mean", "odd-fft"],
)
@pytest.mark.parametrize("highpass", [32.0, None], ids=["fast", "exact"])
def test_streaming_windows_equal_training_windows(psd, highpass, tmp_path):
    data = AframeDataset(
        str(tmp_path), IFOS, SAMPLE_RATE, kernel_length=1.0, fduration=1.0, highpass=highpass,
        psd=PsdPolicy(**psd),
    )  # fmt: skip
    streaming = StreamingWhitener(
        SAMPLE_RATE, 1.0, 1.0, data.psd_policy, STRIDE, highpass=highpass, psd_batch=7
    )
    X = torch.randn(2, int((psd["length"] + 2.0 + 30.0) * SAMPLE_RATE)) * 1e-21
    X += 3e-22  # a DC offset: the mean removal must match too
    got = streaming(X)
    assert got.shape == (streaming.num_windows(X.shape[-1]), 2, 256)
    assert len(got) == (X.shape[-1] - 512) // STRIDE + 1  # from the stream's first sample
    first, expected = training_windows(data, X, streaming)
    torch.testing.assert_close(got[first:], expected, atol=2e-5, rtol=1e-4)

    # the opening windows (no PSD of past data yet) use the PSD of the first psd.length s
    sd = SpectralDensity(
        SAMPLE_RATE, streaming.policy.fftlength, average=data.psd_policy.average,
        fast=highpass is not None,
    )  # fmt: skip
    opening = [k for k in range(len(got)) if k * STRIDE < streaming.psd_size]
    psd0 = sd(X[:, : streaming.psd_size].double())
    windows = torch.stack([X[:, k * STRIDE : k * STRIDE + 512] for k in opening])
    torch.testing.assert_close(
        got[opening], data.whitener(windows, psd0).float(), atol=2e-5, rtol=1e-4
    )
    # window k's kernel ends at kernel_end + k * stride: its start + fduration / 2 + kernel
    assert streaming.kernel_end == int(SAMPLE_RATE * 0.5) + data.kernel_size


@pytest.mark.parametrize("batch_size,psd_batch", [(50, 3), (3, 50), (16, 4)])
def test_batches_make_filters_as_needed_and_equal_the_whole_stream(batch_size, psd_batch):
    """Filters are made per batch (a batch may need several blocks of ``psd_batch`` PSDs, or
    share one with the next): the windows of any window range, read from any offset, equal
    those of the whole stream whitened at once."""
    policy = {"length": 8.0, "cadence": 1.0}
    reference = StreamingWhitener(SAMPLE_RATE, 1.0, 1.0, policy, STRIDE, highpass=32.0)
    w = StreamingWhitener(SAMPLE_RATE, 1.0, 1.0, policy, STRIDE, highpass=32.0, psd_batch=psd_batch)
    torch.manual_seed(3)
    X = torch.randn(2, int(60 * SAMPLE_RATE)) * 1e-21
    whole = reference(X)
    first, last = 37, len(whole) - 5
    start, stop = w.read_range(first, last)
    batches = list(w.batches(X[:, start:stop], batch_size, first, last, offset=start))
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    torch.testing.assert_close(torch.cat(batches), whole[first:last], atol=1e-6, rtol=1e-5)


def test_chunked_search_outputs_equal_the_whole_stream(oracle, noise_dir):
    """Scores of a linear model through Search (7 s chunks, batches of 5) == the whitener run
    over the whole span at once, stamped with the GPS times their kernels end."""
    from aframe_lib.search import Search, SearchSettings, find_spans

    torch.manual_seed(1)
    weights = torch.randn(2, 256)

    class Linear(torch.nn.Module):
        def forward(self, x):
            return (x * weights).sum((1, 2))[:, None]

    engine = Search(
        Linear(), IFOS, SAMPLE_RATE, 1.0, 1.0, psd={"length": PSD_LENGTH, "cadence": 1.0},
        highpass=32.0, settings=SearchSettings(chunk_length=7.0, batch_size=5, device="cpu"),
    )  # fmt: skip
    span = find_spans(str(noise_dir), IFOS, SAMPLE_RATE)[0]
    times, scores = engine.outputs(span)
    expected = Linear()(engine.whitener(torch.from_numpy(span.read())))[:, 0]
    assert len(scores) == len(expected) == (span.size - 512) // 64 + 1
    torch.testing.assert_close(torch.from_numpy(scores), expected, atol=1e-4, rtol=1e-4)
    k = np.arange(len(times))
    np.testing.assert_allclose(times, span.t0 + (128 + 256 + 64 * k) / SAMPLE_RATE)
    assert times[0] - span.t0 == pytest.approx(1.5)  # the first kernel ends 1.5 s in


def test_search_reads_the_training_policy_from_model_json(tmp_path):
    import json

    from helpers.search import DATA, export_oracle

    from aframe_lib.search import Search

    psd = {"length": 12.0, "fftlength": 1.5, "overlap": 0.5, "average": "mean", "cadence": 0.5}
    path = export_oracle(tmp_path / "model.pt")
    info = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**info, "psd": psd}))
    engine = Search.from_exported(str(path), device="cpu")
    assert engine.whitener.policy == PsdPolicy(**psd)
    assert engine.settings()["psd_length"] == 12.0
    # a model exported before the policy was stored: its training psd_length, fresh PSDs
    legacy_info = {**info, "psd": None, "data": {**DATA, "psd_length": 6.0}}
    (tmp_path / "model.json").write_text(json.dumps(legacy_info))
    legacy = Search.from_exported(str(path), device="cpu").whitener.policy
    assert (legacy.length, legacy.cadence, legacy.fftlength) == (6.0, 0.0, 2.0)
