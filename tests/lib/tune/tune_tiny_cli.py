"""A LightningCLI that is not aframe's: the tuning library must work for any CLI.

A linear model on a fixed synthetic regression; it logs ``valid_score`` (higher is better,
best at ``learning_rate`` near 0.1) and can sleep per epoch, so that trials take known time;
``kick_epoch`` knocks the weights off at that epoch's start (its score drops);
``own_checkpoint`` returns a ``ModelCheckpoint`` from ``configure_callbacks``.
"""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LightningCLI
from torch.utils.data import DataLoader, TensorDataset


class TinyModel(pl.LightningModule):
    def __init__(self, learning_rate: float = 0.01, sleep: float = 0.0, fail: bool = False,
                 kick_epoch: int = -1, own_checkpoint: bool = False):  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        if self.hparams.fail:
            raise RuntimeError("this trial was asked to fail")
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("valid_score", -torch.nn.functional.mse_loss(self.layer(x), y))

    def on_train_epoch_start(self):
        if self.current_epoch == self.hparams.kick_epoch:  # a worse epoch after better ones
            with torch.no_grad():
                self.layer.weight.add_(5.0)

    def on_train_epoch_end(self):
        time.sleep(self.hparams.sleep)

    def configure_callbacks(self):
        if not self.hparams.own_checkpoint:
            return []
        # the model's own ModelCheckpoint: Lightning attaches it after the trainer's callbacks
        from lightning.pytorch.callbacks import ModelCheckpoint

        return [
            ModelCheckpoint(monitor="valid_score", mode="max", filename="{epoch}-{valid_score:.6f}")
        ]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


class TinyData(pl.LightningDataModule):
    def __init__(self, n: int = 64, batch_size: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 4, generator=g)
        self.data = TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]))
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)


class TinyCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        super().__init__(TinyModel, TinyData, *args, **kwargs)
