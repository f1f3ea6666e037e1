"""The semi-supervised autoencoder model: the correlation loss, extra loss terms, export,
configs and an end-to-end run of ``aframe-train`` on a tiny CPU config (the architecture's IFO
independence: tests/train/architectures/test_grouped_autoencoder.py)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.console import aframe_train
from ml4gw.transforms import ShiftedPearsonCorrelation

from aframe_lib.metrics import TimeSlideAUROC
from aframe_train.architectures import GroupedAutoencoder
from aframe_train.losses import CrossIfoCorrelation, SlicedShiftedPearsonCorrelation, VICRegTerm
from aframe_train.models import AutoencoderAframe

ROOT = Path(__file__).resolve().parents[3]
PROJECT = ROOT / "projects" / "autoencoder"
PACKAGED = ROOT / "packages" / "aframe-train" / "aframe_train" / "configs" / "autoencoder.yaml"
SAMPLE_RATE, TIME = 128.0, 200  # odd sizes on purpose: stride-2 stages must crop/pad back


def make_arch(num_ifos: int, **kwargs) -> GroupedAutoencoder:
    kwargs.setdefault("encode_channels", [4, 6, 8])  # 4 and 8 are not multiples of 3 IFOs
    return GroupedAutoencoder(num_ifos, SAMPLE_RATE, TIME / SAMPLE_RATE, **kwargs)


def make_model(num_ifos: int = 2, **kwargs) -> AutoencoderAframe:
    return AutoencoderAframe(make_arch(num_ifos), TimeSlideAUROC(), **kwargs)


# ---------------------------------------------------------------- (b, c) loss and score
def numpy_score(prediction: np.ndarray, X: np.ndarray, max_shift: int) -> np.ndarray:
    """Max over shifts of the Pearson correlation of prediction i (shifted, zero-filled) with
    input (i + 1) % N, combined as sqrt(mean_i c_i**2)."""
    batch, num_ifos, T = X.shape
    out = np.zeros((batch, num_ifos))
    for b in range(batch):
        for i in range(num_ifos):
            y = X[b, (i + 1) % num_ifos]
            best = -np.inf
            for k in range(2 * max_shift + 1):
                x = np.pad(prediction[b, i], max_shift)[k : k + T]
                x, yc = x - x.mean(), y - y.mean()
                best = max(best, (x * yc).sum() / np.sqrt((x**2).sum() * (yc**2).sum()))
            out[b, i] = best
    return np.sqrt((out**2).mean(-1))


@pytest.mark.parametrize("num_ifos", [2, 3])
def test_loss_and_score_match_an_independent_numpy_computation(num_ifos):
    model = make_model(num_ifos, max_shift=0.05).eval()  # int(0.05 * 128) = 6 samples
    X = torch.randn(4, num_ifos, TIME, dtype=torch.float64)
    model.double()
    with torch.no_grad():
        prediction = model(X)
        expected = numpy_score(prediction.numpy(), X.numpy(), 6)
        np.testing.assert_allclose(model.score(X).numpy(), expected, rtol=1e-10)
        np.testing.assert_allclose(model.compute_loss(X, None).item(), -expected.mean(), 1e-10)
        # the statistic itself, on unrelated random "predictions"
        P = torch.randn_like(X)
        ours = CrossIfoCorrelation(6)(P, X).numpy()
        np.testing.assert_allclose(ours, numpy_score(P.numpy(), X.numpy(), 6), rtol=1e-10)


@pytest.mark.parametrize("shape", [(2, 3, 100), (3, 100), (100,)])
def test_sliced_pearson_is_ml4gw_shifted_pearson(shape):
    x, y = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    ours, theirs = SlicedShiftedPearsonCorrelation(7)(x, y), ShiftedPearsonCorrelation(7)(x, y)
    assert ours.shape == theirs.shape == (15, *shape[:-1])
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("num_ifos", [2, 3])
def test_a_perfect_predictor_scores_one(num_ifos):
    correlation = CrossIfoCorrelation(4)
    X = torch.randn(3, num_ifos, 512)
    partner = X.roll(-1, dims=1)
    assert torch.allclose(correlation(partner, X), torch.ones(3), atol=1e-5)
    # a prediction off by a lag within max_shift still scores ~1; an unrelated one does not
    delayed = torch.nn.functional.pad(partner, (3, 0))[..., :512]
    assert (correlation(delayed, X) > 0.99).all()
    assert (correlation(torch.randn_like(X), X) < 0.3).all()
    # and through the model's loss
    model = make_model(num_ifos)
    features = torch.zeros(3, num_ifos, 1, 1)
    model.model.forward_features = lambda X: (X.roll(-1, dims=1), features)
    assert model.compute_loss(X, None).item() == pytest.approx(-1.0, abs=1e-5)


# ---------------------------------------------------------------- (d) extra loss terms
def test_vicreg_invariance_is_zero_for_identical_latents_and_positive_otherwise():
    term = VICRegTerm()
    same = torch.randn(8, 1, 5, 7).expand(8, 3, 5, 7)
    assert term(None, None, None, same).item() == pytest.approx(0.0, abs=1e-12)
    different = same + 0.1 * torch.randn(8, 3, 5, 7)
    assert term(None, None, None, different).item() > 0
    assert VICRegTerm(pool=False)(None, None, None, different).item() > 0


def test_vicreg_variance_and_covariance_penalise_collapse_and_correlated_dims():
    collapsed = torch.ones(8, 2, 4, 3)  # identical across IFOs but constant over the batch
    assert VICRegTerm()(None, None, None, collapsed).item() == 0
    assert VICRegTerm(invariance=0, variance=1)(None, None, None, collapsed).item() > 0.9
    z = torch.randn(64, 2, 1, 1)
    correlated = torch.cat([z, z, torch.randn(64, 2, 1, 1)], dim=2)  # dims 0 and 1 equal
    covariance = VICRegTerm(invariance=0, covariance=1)
    assert covariance(None, None, None, correlated).item() > 0.1
    assert covariance(None, None, None, correlated[:, :, :1]).item() == 0  # one dim: none


def test_extra_losses_are_off_by_default_and_added_with_their_weight():
    X = torch.randn(6, 2, TIME)
    plain = make_model()
    assert len(plain.extra_losses) == 0
    with torch.no_grad():
        base = plain.compute_loss(X, None)
        assert torch.equal(base, -plain.score(X).mean())  # train mode: same batch statistics
        term = VICRegTerm(weight=0.5)
        with_term = make_model(extra_losses=[term])
        with_term.load_state_dict(plain.state_dict())
        _, features = with_term.model.forward_features(X)
        expected = base + 0.5 * term(with_term.model, X, None, features)
        assert torch.allclose(with_term.compute_loss(X, None), expected)


# ---------------------------------------------------------------- (e) export
@pytest.mark.parametrize("num_ifos", [2, 3])
def test_torchscript_export_outputs_the_score_and_matches_eager(num_ifos, tmp_path):
    model = make_model(num_ifos).eval()
    X = torch.randn(4, num_ifos, TIME)
    module = model.export_module().eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, X)
        torch.jit.save(traced, str(tmp_path / "model.pt"))
        loaded = torch.jit.load(str(tmp_path / "model.pt"))
        Z = torch.randn(7, num_ifos, TIME)
        eager = module(Z)
        assert eager.shape == (7, 1)
        assert torch.allclose(eager[:, 0], model.score(Z))
        assert torch.allclose(loaded(Z), eager, atol=1e-6)


def test_onnx_export_of_the_score(tmp_path):
    pytest.importorskip("onnxruntime")
    export_onnx = pytest.importorskip("aframe_lib.export.onnx").export_onnx
    module = make_model(3).eval().export_module()
    assert export_onnx(module, torch.randn(4, 3, TIME), tmp_path / "model.onnx") < 1e-5


# ---------------------------------------------------------------- (f) configs and CLI
@pytest.mark.parametrize(
    "config, num_ifos",
    [(PROJECT / "train.yaml", 2), (PROJECT / "train_hlv.yaml", 3), (PACKAGED, 2)],
    ids=["project", "project-hlv", "packaged"],
)
def test_shipped_configs_build_the_autoencoder(config, num_ifos, tmp_path, monkeypatch):
    from aframe_train.cli import AframeCLI

    monkeypatch.chdir(tmp_path)
    cli = AframeCLI(
        args=["--config", str(config), f"--data.init_args.data_dir={tmp_path}"], run=False
    )
    assert isinstance(cli.model, AutoencoderAframe)
    assert cli.model.model.num_ifos == num_ifos == len(cli.datamodule.ifos)
    assert cli.model.model.sample_rate == cli.datamodule.sample_rate
    assert cli.datamodule.hparams.waveform_prob == 1.0


def test_end_to_end_fit_exports_a_scoring_model(tmp_path):
    out = tmp_path / "run"
    cmd = [
        *aframe_train(),
        "fit",
        "--config",
        str(PROJECT / "train.yaml"),
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.data_dir={tmp_path / 'data'}",
        "--data.init_args.batches_per_epoch=3",
        "--data.init_args.batch_size=16",
        "--data.init_args.valid_livetime=200",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=64",
        "--data.init_args.synthetic.num_val_waveforms=16",
        "--model.init_args.extra_losses=[{class_path: aframe_train.losses.VICRegTerm}]",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = torch.jit.load(str(out / "model.pt"))
    info = json.loads((out / "model.json").read_text())
    assert info["input_shape"] == [None, 2, 512] and info["max_abs_diff"] < 1e-5
    scores = model(torch.randn(3, 2, 512))
    assert scores.shape == (3, 1) and ((scores >= 0) & (scores <= 1)).all()
    rows = list(csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")))
    assert len([r for r in rows if r.get("valid_auroc")]) == 2
    assert any(r.get("train_vicregterm") for r in rows)


# ---------------------------------------------------------------- validation plots
class Oracle(torch.nn.Module):
    """A perfect cross-IFO predictor: output channel i is IFO i+1's input."""

    def forward(self, X):
        return X.roll(-1, dims=1)


def test_validation_plot_draws_each_ifos_prediction_over_that_ifo():
    """Output channel i predicts IFO i+1, so IFO j's panel shows output channel j-1."""
    from types import SimpleNamespace

    from aframe_lib.callbacks import ValidationPlotter

    ifos = ["H1", "L1", "V1"]  # three: with two, channel i-1 and i+1 are the same
    model = make_model(3)
    X = torch.randn(2, 3, TIME)
    batch = {
        "background": X,
        "foreground": X[:, None],
        "snr": torch.tensor([10.0, 12.0]),
        "shift_id": torch.zeros(2, dtype=torch.long),
        "index": torch.arange(2),
    }
    datamodule = SimpleNamespace(ifos=ifos, sample_rate=SAMPLE_RATE)
    trainer = SimpleNamespace(current_epoch=0, datamodule=datamodule)
    plotter = ValidationPlotter(num_samples=0, num_background=1)

    def drawn(module):
        (plot,) = plotter.make_plots(trainer, module, batch, torch.zeros(2), torch.zeros(2, 1))
        curves = {}
        for axis, ifo in zip(plot.figure.axes, ifos, strict=True):
            lines = {line.get_label(): line.get_ydata() for line in axis.get_lines()}
            curves[ifo] = (lines[f"{ifo} input"], lines[f"{ifo} reconstruction"])
        return curves

    # the oracle's prediction of every IFO lies exactly on that IFO's input, and scores 1
    model.model = Oracle()
    for inputs, prediction in drawn(model).values():
        np.testing.assert_array_equal(prediction, inputs)
    assert torch.allclose(model.score(X), torch.ones(2))

    # a trained-shape network: IFO j's panel holds output channel j - 1 (computed from IFO j-1)
    model = make_model(3).eval()
    with torch.no_grad():
        output = model.model(X)[0]
    for j, (_, prediction) in enumerate(drawn(model).values()):
        np.testing.assert_allclose(prediction, output[(j - 1) % 3].numpy(), rtol=1e-5, atol=1e-6)
