"""The template LightningModule: the loop, validation scoring, logging and the optimiser.

Subclasses implement only :meth:`AframeModel.compute_loss` and :meth:`AframeModel.score`.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from aframe_lib.callbacks import ValidationScores
from aframe_lib.metrics import TimeSlideAUROC

from ..architectures import Architecture


class AframeModel(pl.LightningModule):
    """Base of aframe's detectors.

    Args:
        arch: The network (its ``num_ifos``/``sample_rate``/``kernel_length`` are linked from
            the data section by ``aframe-train``).
        metric: Validation metric; its value is logged as ``valid_auroc`` and drives
            checkpointing and early stopping.
        learning_rate: Peak learning rate of the one-cycle schedule (per device; scaled by
            the number of devices under DDP so the effective step matches one device's).
        pct_lr_ramp: Fraction of all steps spent ramping the learning rate up.
        weight_decay: AdamW weight decay.
    """

    def __init__(
        self,
        arch: Architecture,
        metric: TimeSlideAUROC,
        learning_rate: float = 1e-3,
        pct_lr_ramp: float = 0.1,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = arch
        self.metric = metric
        self.save_hyperparameters(ignore=["arch", "metric"])

    def forward(self, X: Tensor) -> Tensor:
        return self.model(X)

    # -- what subclasses implement
    def compute_loss(self, X: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, X: Tensor) -> Tensor:
        """Detection statistic per sample, ``(batch,)``; larger is more signal-like."""
        raise NotImplementedError

    def export_module(self) -> torch.nn.Module:
        """What deployment runs on the (transformed) input: by default the network itself."""
        return self.model

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint whose network does not fit this one, saying why (e.g. its IFOs).

        Lightning calls this before loading the weights, which would otherwise fail with a raw
        ``size mismatch for model.resnet.conv1.weight``.
        """
        check_checkpoint_fits(self, checkpoint)

    # -- the loop
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        X, y = batch
        loss = self.compute_loss(X, y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> ValidationScores:
        """Score a validation batch; the scores go to callbacks (``on_validation_batch_end``)."""
        background, foreground = batch["background"], batch["foreground"]
        keep = batch["shift_id"] >= 0
        bg_scores = self.score(background)
        fg_scores = self.score(foreground.flatten(0, 1)).view(foreground.shape[:2])
        self.metric.update(bg_scores, batch["shift_id"], batch["index"], fg_scores[keep])
        return ValidationScores(background_scores=bg_scores, foreground_scores=fg_scores)

    def on_validation_epoch_end(self) -> None:
        # the metric's "cat" states are gathered over ranks inside compute()
        self.log("valid_auroc", self.metric.compute(), prog_bar=True, sync_dist=False)
        self.metric.reset()

    # ``aframe-train test`` scores the held-out (validation) set the same way, as test_auroc
    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> ValidationScores:
        return self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self.log("test_auroc", self.metric.compute(), sync_dist=False)
        self.metric.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        world_size = self.trainer.world_size if self._trainer is not None else 1
        lr = self.hparams.learning_rate * world_size
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=lr, weight_decay=self.hparams.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=lr,
            pct_start=self.hparams.pct_lr_ramp,
            total_steps=self.trainer.estimated_stepping_batches,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def check_checkpoint_fits(module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
    """Raise a ``ModelFileError`` when ``checkpoint``'s weights do not fit ``module``'s shapes.

    The message names the checkpoint, its IFOs (from the data section it was trained with) and
    the data's, or else the first parameter whose shape differs, and the fix.
    """
    from aframe_lib.utils.errors import ModelFileError

    own = module.state_dict()
    saved = checkpoint.get("state_dict", {})
    diff = [
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in saved.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
    ]
    if not diff:
        return
    trainer = module._trainer
    path = getattr(trainer, "ckpt_path", None) if trainer is not None else None
    name = f"checkpoint {path}" if path else "the checkpoint"
    ckpt_ifos = (checkpoint.get("datamodule_hyper_parameters") or {}).get("ifos")
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    data_ifos = list(getattr(datamodule, "ifos", []) or [])
    key, was, now = diff[0]
    if ckpt_ifos is not None and data_ifos and list(ckpt_ifos) != data_ifos:
        raise ModelFileError(
            f"{name} was trained on {len(ckpt_ifos)} IFOs {list(ckpt_ifos)}, but the data have "
            f"{len(data_ifos)} (data.ifos={data_ifos}); set data.ifos={list(ckpt_ifos)} or use a "
            f"checkpoint trained on {data_ifos} ({key}: {was} there, {now} here)"
        )
    raise ModelFileError(
        f"{name} does not fit the configured network: {key} has shape {was} there and {now} "
        f"here ({len(diff)} parameter(s) differ); use the config the checkpoint was trained with "
        "(config.yaml beside its logs)"
    )
