"""The frequency-domain detector: Q-transform Dataset, 2D ResNet, their joint TorchScript export,
and an end-to-end ``aframe-train fit`` of projects/spectrogram/train.yaml (the 2D ResNet alone:
tests/train/architectures/test_resnet2d.py)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from helpers.console import aframe_train
from helpers.tiny_data import SAMPLE_RATE, dataset_kwargs
from ml4gw.transforms import SingleQTransform

from aframe_lib.data.config import DataConfigError
from aframe_train.architectures import SupervisedSpectrogramResNet
from aframe_train.data import QSpectrogram, SpectrogramAframeDataset

ROOT = Path(__file__).resolve().parents[3]
PROJECT = ROOT / "projects" / "spectrogram" / "train.yaml"
SHAPE = [16, 32]  # spectrogram (num_f_bins, num_t_bins)


# one thread: on a small shared CPU, OpenMP threads waiting on each other make the 2D
# convolutions and the Q-transform's many small ops an order of magnitude slower
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tiny_data_dir):
    return tiny_data_dir


def make(data_dir, **kwargs) -> SpectrogramAframeDataset:
    defaults = dataset_kwargs(
        valid_livetime=60.0,
        valid_batch_size=8,
        q=12.0,
        spectrogram_shape=SHAPE,
        frange=[20.0, 100.0],
    )
    return SpectrogramAframeDataset(str(data_dir), **{**defaults, **kwargs})


@pytest.fixture(scope="module")
def dataset(data_dir):
    ds = make(data_dir)
    ds.setup("fit")
    return ds


# ---------------------------------------------------------------------- dataset
def test_training_batch_is_one_spectrogram_per_ifo(dataset):
    X, y = dataset.augment(dataset.sampler(8))
    assert isinstance(dataset.transform, SingleQTransform)
    assert X.shape == (8, 2, *SHAPE) and X.dtype == torch.float32
    assert y.shape == (8, 1)
    # median-normalised tile energies, of order one (bicubic resampling can overshoot a little
    # below zero, so no sign check)
    assert torch.isfinite(X).all()
    assert 0.1 < X.median().item() < 10.0


def test_validation_batches_are_spectrograms(dataset):
    batch = dataset.validation_batch(*next(iter(dataset.val_dataloader())))
    n = len(batch["shift_id"])
    assert batch["background"].shape == (n, 2, *SHAPE)
    assert batch["foreground"].shape == (n, 2, 2, *SHAPE)  # (batch, views, ifos, H, W)


@pytest.mark.parametrize("batch, num_ifos", [(1, 2), (3, 1), (1, 1)])
def test_size_one_axes_survive(batch, num_ifos):
    """ml4gw's SingleQTransform squeezes every size-1 axis; QSpectrogram keeps them."""
    transform = QSpectrogram(1.0, SAMPLE_RATE, SHAPE, q=12.0, frange=[20.0, 100.0])
    X = torch.randn(batch, num_ifos, int(SAMPLE_RATE))
    assert transform(X).shape == (batch, num_ifos, *SHAPE)
    assert transform.qtiles is None  # the per-row tiles are not kept between calls


def test_frange_list_is_not_modified_and_defaults_apply(data_dir):
    frange = [0.0, float("inf")]  # 0 / inf: ml4gw's default bounds
    ds = make(data_dir, frange=frange)
    assert frange == [0.0, float("inf")]
    low, high = ds.transform.frange
    assert low == pytest.approx(50 * 12.0 / (2 * torch.pi * 1.0))
    assert high < SAMPLE_RATE / 2


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"q": 13.0}, "data.q"),  # max is pi * 1 s * 256 Hz / 50 - sqrt(11) ~ 12.77
        ({"spectrogram_shape": [16]}, "data.spectrogram_shape"),
        ({"frange": [100.0, 20.0]}, "data.frange"),
        ({"frange": [20.0, 300.0]}, "data.frange"),
    ],
)
def test_bad_spectrogram_arguments_name_the_field(data_dir, kwargs, field):
    with pytest.raises(DataConfigError, match=field):
        make(data_dir, **kwargs)


# ---------------------------------------------------------------------- export
def test_spectrogram_and_network_trace_together(dataset):
    """What ExportModel traces: ``Sequential(transform, network)`` on real whitened samples."""
    arch = SupervisedSpectrogramResNet(2, SAMPLE_RATE, 1.0, norm_groups=8)
    model = torch.nn.Sequential(copy.deepcopy(dataset.transform), arch).eval()
    X = dataset.example_batch(4)
    assert X.shape == (4, 2, int(SAMPLE_RATE))
    with torch.no_grad(), warnings.catch_warnings():
        # SingleQTransform turns its (constant) tile paddings into Python ints and loops over
        # its frequency rows: both are fixed by construction, so the TracerWarnings are benign
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, X, check_trace=False)  # compared below instead
        assert (traced(X) - model(X)).abs().max().item() < 1e-4
        # the batch size is free in the trace, including a single sample
        other = torch.randn(1, 2, int(SAMPLE_RATE))
        assert (traced(other) - model(other)).abs().max().item() < 1e-4


def test_matmul_form_equals_the_fft_transform(dataset):
    """The ONNX-exportable matrix form is ml4gw's transform, on real whitened samples."""
    X = dataset.example_batch(6)
    with torch.no_grad():
        expected = dataset.transform(X)
        got = dataset.transform.forward_matmul(X)
        single = dataset.transform.forward_matmul(X[:1])
    assert got.shape == expected.shape == (6, 2, *SHAPE)
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() < 1e-5 * scale
    torch.testing.assert_close(single, got[:1])


def test_spectrogram_model_exports_to_onnx_with_parity(dataset, tmp_path):
    """Transform + network -> ONNX; checked with onnxruntime on a batch it was not traced on."""
    from aframe_lib.export import export_onnx, load_onnx

    arch = SupervisedSpectrogramResNet(2, SAMPLE_RATE, 1.0, norm_groups=8)
    transform = QSpectrogram(1.0, SAMPLE_RATE, SHAPE, q=12.0, frange=[20.0, 100.0])  # fresh
    model = torch.nn.Sequential(transform, arch).eval()
    example, check = dataset.example_batch(4), dataset.example_batch(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        diff = export_onnx(model, example, tmp_path / "model.onnx", check=check)
    assert diff < 1e-3
    session, info = load_onnx(tmp_path / "model.onnx")
    assert info["input_shape"] == [None, 2, int(SAMPLE_RATE)]
    other = dataset.example_batch(5)
    (got,) = session.run(["output"], {"input": other.numpy()})
    with torch.no_grad():
        expected = model(other).numpy()
    assert got.shape == (5, 1) and abs(got - expected).max() < 1e-3


# ---------------------------------------------------------------------- end to end
def test_fit_exports_spectrogram_and_network_as_one_model(tmp_path):
    cmd = [
        *aframe_train(),
        "fit",
        "--config",
        str(PROJECT),
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0",
        f"--data.init_args.data_dir={tmp_path / 'data'}",
        "--data.init_args.q=20",
        "--data.init_args.spectrogram_shape=[16,32]",
        "--data.init_args.batches_per_epoch=2",
        "--data.init_args.batch_size=8",
        "--data.init_args.valid_livetime=30",
        "--data.init_args.valid_batch_size=64",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=64",
        "--data.init_args.synthetic.num_val_waveforms=16",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see _one_thread
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["input_shape"] == [None, 2, 512]  # whitened strain: 2 IFOs x (1 s at 512 Hz)
    assert info["max_abs_diff"] < 1e-4
    # the Q-transform is in the ONNX model too, checked with onnxruntime on a second batch
    assert info["onnx"]["filename"] == "model.onnx" and info["onnx"]["max_abs_diff"] < 1e-3
    assert info["parity"]["onnx"] == info["onnx"]["max_abs_diff"]
    assert info["data"]["q"] == 20.0 and info["data"]["spectrogram_shape"] == [16, 32]
    model = torch.jit.load(str(tmp_path / "model.pt"))
    assert model(torch.randn(3, 2, 512)).shape == (3, 1)
    config = (tmp_path / "logs" / "version_0" / "config.yaml").read_text()
    assert "q: 20.0" in config and "SupervisedSpectrogramResNet" in config
