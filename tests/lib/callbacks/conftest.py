"""A tiny model and data module (not aframe-train's) that drive aframe-lib's callbacks.

The validation batch has the layout of ``AframeDataset.validation_batch``: ``background``
``(B, C, T)``, ``foreground`` ``(B, V, C, T)``, ``snr`` ``(B,)``, ``shift_id`` ``(B,)`` with row 0
marked as padding (-1), and ``index``. Scores are known: ``background`` scores come from the
network; the SNRs are ``8 + row``.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from aframe_lib.callbacks import ValidationScores

NUM_IFOS, SIZE, VIEWS = 2, 64, 3


class TinyModule(pl.LightningModule):
    """A one-logit conv net, or (``autoencoder``) a grouped conv that reconstructs its input.

    Args:
        autoencoder: Reconstruct the input instead of scoring it.
        note: Free text (lets tests put a secret into the config).
        api_key: A config value whose name marks it as secret.
    """

    def __init__(self, autoencoder: bool = False, note: str = "", api_key: str | None = None):
        super().__init__()
        self.autoencoder = autoencoder
        if autoencoder:
            self.model = torch.nn.Conv1d(NUM_IFOS, NUM_IFOS, 3, padding=1, groups=NUM_IFOS)
        else:
            self.model = torch.nn.Sequential(
                torch.nn.Conv1d(NUM_IFOS, 4, 3),
                torch.nn.AdaptiveAvgPool1d(1),
                torch.nn.Flatten(),
                torch.nn.Linear(4, 1),
            )

    def forward(self, X):
        return self.model(X)

    def export_module(self):
        return self.model

    def score(self, X):
        out = self.model(X)
        return out.mean(dim=(1, 2)) if self.autoencoder else out[:, 0]

    def training_step(self, batch, batch_idx):
        return self.model(batch[0]).square().mean()

    def validation_step(self, batch, batch_idx):
        fg = batch["foreground"]
        bg_scores = self.score(batch["background"])
        fg_scores = self.score(fg.flatten(0, 1)).view(fg.shape[:2])
        return ValidationScores(background_scores=bg_scores, foreground_scores=fg_scores)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class TinyData(pl.LightningDataModule):
    """Random ``(N, 2, 64)`` windows; ``ifos``/``sample_rate`` as AframeDataset has them."""

    def __init__(self, ifos: list[str] = ["H1", "L1"], sample_rate: float = 64.0):  # noqa: B006
        super().__init__()
        self.ifos, self.sample_rate = ifos, sample_rate
        self.X = torch.randn(16, NUM_IFOS, SIZE)

    def _loader(self):
        dataset = torch.utils.data.TensorDataset(self.X)
        return torch.utils.data.DataLoader(dataset, batch_size=4)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if self.trainer is not None and self.trainer.training:
            return batch
        return validation_batch(batch[0])


def validation_batch(X):
    """The layout of ``AframeDataset.validation_batch`` (see the module docstring)."""
    fg = X.unsqueeze(1) + torch.linspace(0, 1, VIEWS).view(1, VIEWS, 1, 1)
    shift_id = torch.zeros(len(X), dtype=torch.long)
    shift_id[0] = -1
    return {
        "background": X,
        "foreground": fg,
        "snr": 8.0 + torch.arange(len(X), dtype=torch.float32),
        "shift_id": shift_id,
        "index": torch.arange(len(X)),
    }


@pytest.fixture
def tiny():
    """``(TinyModule, TinyData)``."""
    return TinyModule, TinyData


@pytest.fixture
def fit(tmp_path):
    """``fit(callbacks, epochs=2, logger=False, autoencoder=False)``: train the tiny model."""

    def run(callbacks, epochs=2, logger=False, autoencoder=False):
        trainer = pl.Trainer(
            default_root_dir=tmp_path,
            max_epochs=epochs,
            limit_train_batches=2,
            limit_val_batches=2,
            num_sanity_val_steps=1,
            log_every_n_steps=1,
            callbacks=callbacks,
            logger=logger,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(TinyModule(autoencoder=autoencoder), TinyData())
        return trainer

    return run
