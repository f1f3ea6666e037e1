"""ValidationPlotter: which samples are drawn, when, what the figures show, where PNGs go."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from aframe_lib.callbacks import ValidationPlotter, ValidationScores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[3]


def fake_batch(shape=(5, 2, 64), views=3):
    """Row 0 is padding; foreground = background + view offset; SNR = 8 + row."""
    X = torch.randn(*shape)
    fg = X.unsqueeze(1) + torch.arange(views, dtype=torch.float32).view(
        1, views, *[1] * (X.ndim - 1)
    )
    shift_id = torch.zeros(len(X), dtype=torch.long)
    shift_id[0] = -1
    batch = {
        "background": X,
        "foreground": fg,
        "snr": 8.0 + torch.arange(len(X), dtype=torch.float32),
        "shift_id": shift_id,
        "index": torch.arange(len(X)),
    }
    fg_scores = torch.arange(len(X) * views, dtype=torch.float32).view(len(X), views) / 10
    return batch, -torch.arange(len(X), dtype=torch.float32), fg_scores


def fake_trainer(epoch=0, rank_zero=True, root="."):
    datamodule = SimpleNamespace(ifos=["H1", "L1"], sample_rate=64.0)
    return SimpleNamespace(
        current_epoch=epoch,
        global_step=10,
        is_global_zero=rank_zero,
        sanity_checking=False,
        default_root_dir=str(root),
        datamodule=datamodule,
        loggers=[],
    )


def test_pngs_are_written_for_the_first_validation_batch_of_each_epoch(fit, tmp_path):
    plotter = ValidationPlotter(num_samples=2, num_background=1)
    fit([plotter], epochs=2)
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    # row 0 is padding (shift_id -1): samples start at row 1; the sanity check is not plotted
    assert names == [
        f"epoch={e:03d}-{kind}-{i}.png"
        for e in (0, 1)
        for kind, i in [("background", 1), ("foreground", 1), ("foreground", 2)]
    ]
    for path in (tmp_path / "plots").iterdir():
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert len(plotter.written) == 6


def test_every_n_epochs(fit, tmp_path):
    fit([ValidationPlotter(num_samples=1, num_background=0, every_n_epochs=2)], epochs=3)
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["epoch=000-foreground-1.png", "epoch=002-foreground-1.png"]


def test_figures_show_snr_score_and_one_panel_per_ifo(tmp_path):
    batch, bg_scores, fg_scores = fake_batch()
    plotter = ValidationPlotter(num_samples=3, num_background=1, view=2)
    plots = plotter.make_plots(fake_trainer(epoch=4), None, batch, bg_scores, fg_scores)
    assert [(p.kind, p.sample) for p in plots] == [
        ("foreground", 1),
        ("foreground", 2),
        ("foreground", 3),
        ("background", 1),
    ]
    fg = plots[1]
    assert fg.snr == 10.0 and fg.score == pytest.approx(float(fg_scores[2, 2]))
    title = fg.figure._suptitle.get_text()
    assert "epoch 4" in title and "SNR 10.0" in title and f"score {fg.score:.3g}" in title
    axes = fg.figure.axes
    labels = [[line.get_label() for line in ax.get_lines()] for ax in axes]
    assert labels == [["H1 input", "H1 injected signal"], ["L1 input", "L1 injected signal"]]
    # the plotted data are the requested view of the sample, time in seconds; the signal is
    # foreground - background (here the view's offset, 2)
    (t, y), (_, signal) = (line.get_data() for line in axes[1].get_lines())
    assert torch.allclose(torch.as_tensor(y), batch["foreground"][2, 2, 1])
    assert t[-1] == pytest.approx(63 / 64)
    assert signal == pytest.approx(2.0)
    assert len(plots[3].figure.axes[0].get_lines()) == 1  # background: input only
    assert plots[3].snr is None and plots[3].score == float(bg_scores[1])
    assert fg.png().startswith(PNG_MAGIC)


def test_autoencoder_reconstruction_is_overlaid(tiny):
    TinyModule, _ = tiny
    batch, bg_scores, fg_scores = fake_batch()
    trainer = fake_trainer()
    plotter = ValidationPlotter(num_samples=1, num_background=0)
    ae = TinyModule(autoencoder=True)
    (plot,) = plotter.make_plots(trainer, ae, batch, bg_scores, fg_scores)
    lines = plot.figure.axes[0].get_lines()
    labels = [line.get_label() for line in lines]
    assert labels == ["H1 input", "H1 injected signal", "H1 reconstruction"]
    with torch.no_grad():
        expected = ae.model(batch["foreground"][1:2, 1])[0, 0]
    assert torch.allclose(torch.as_tensor(lines[2].get_ydata()), expected)

    # a classifier's output is not a reconstruction: nothing overlaid, unless forced (an error)
    classifier = TinyModule()
    (plot,) = plotter.make_plots(trainer, classifier, batch, bg_scores, fg_scores)
    assert len(plot.figure.axes[0].get_lines()) == 2
    forced = ValidationPlotter(num_samples=1, num_background=0, plot_reconstruction=True)
    with pytest.raises(ValueError, match="not a reconstruction"):
        forced.make_plots(trainer, classifier, batch, bg_scores, fg_scores)


def test_2d_inputs_are_drawn_as_images():
    batch, bg_scores, fg_scores = fake_batch(shape=(3, 2, 8, 16))
    plotter = ValidationPlotter(num_samples=1, num_background=0)
    (plot,) = plotter.make_plots(fake_trainer(), None, batch, bg_scores, fg_scores)
    assert all(len(ax.images) == 1 for ax in plot.figure.axes)
    assert plot.figure.axes[0].images[0].get_array().shape == (8, 16)


def test_only_rank_zero_first_batch_and_not_the_sanity_check(tmp_path):
    batch, bg_scores, fg_scores = fake_batch()
    plotter = ValidationPlotter(num_samples=1, num_background=0)
    args = (None, batch, bg_scores, fg_scores)
    plotter.on_validation_score(fake_trainer(rank_zero=False, root=tmp_path), *args, 0)
    plotter.on_validation_score(fake_trainer(root=tmp_path), *args, 1)
    sanity = fake_trainer(root=tmp_path)
    sanity.sanity_checking = True
    plotter.on_validation_score(sanity, *args, 0)
    assert not (tmp_path / "plots").exists()
    plotter.on_validation_score(fake_trainer(root=tmp_path), *args, 0)
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["epoch=000-foreground-1.png"]


def test_pngs_can_go_to_s3(s3_bucket):
    from aframe_lib.utils import fs

    batch, bg_scores, fg_scores = fake_batch()
    plotter = ValidationPlotter(num_samples=1, num_background=0, dirpath=f"{s3_bucket}/run")
    plotter.on_validation_score(fake_trainer(epoch=3), None, batch, bg_scores, fg_scores, 0)
    filesystem, inner = fs.filesystem(f"{s3_bucket}/run/plots/epoch=003-foreground-1.png")
    with filesystem.open(inner, "rb") as f:
        assert f.read().startswith(PNG_MAGIC)


def test_importing_callbacks_loads_no_wandb():
    code = "import sys, aframe_lib.callbacks; print('wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class OwnModule(pl.LightningModule):
    """Another project's detector: only lightning and aframe-lib, no aframe-train base class."""

    def __init__(self, return_scores: bool = True):
        super().__init__()
        self.net = torch.nn.Conv1d(2, 1, 64)
        self.return_scores = return_scores

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).square().mean()

    def validation_step(self, batch, batch_idx):
        fg = batch["foreground"]
        bg_scores = self.net(batch["background"])[:, 0, 0]
        fg_scores = self.net(fg.flatten(0, 1))[:, 0, 0].view(fg.shape[:2])
        if self.return_scores:
            return ValidationScores(background_scores=bg_scores, foreground_scores=fg_scores)
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def train_own_module(tmp_path, tiny, return_scores):
    _, TinyData = tiny
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1,
        num_sanity_val_steps=0, callbacks=[ValidationPlotter(num_samples=1, num_background=1)],
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(OwnModule(return_scores), TinyData())
    return trainer


def test_any_lightning_module_returning_scores_gets_the_plots(tmp_path, tiny):
    """The hook's caller is Lightning (on_validation_batch_end), not aframe-train's model."""
    train_own_module(tmp_path, tiny, return_scores=True)
    files = sorted((tmp_path / "plots").iterdir())
    assert [p.name for p in files] == ["epoch=000-background-1.png", "epoch=000-foreground-1.png"]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in files)


def test_a_step_returning_no_scores_warns_once_and_plots_nothing(tmp_path, tiny):
    with pytest.warns(RuntimeWarning, match=r"OwnModule.validation_step returned NoneType.*"
                      r"ValidationScores\(background_scores") as record:  # fmt: skip
        train_own_module(tmp_path, tiny, return_scores=False)
    assert sum("draws nothing" in str(w.message) for w in record) == 1
    assert not (tmp_path / "plots").exists()
