"""The Lightning callback a trial's training process runs: one line per validation.

The training process of a trial is a plain LightningCLI ``fit`` (see :mod:`.worker`); it does not
talk to Ray. After each validation this callback saves a checkpoint into a fresh directory and
appends one JSON line (the epoch, the logged metrics, that directory) to a report file; the
trial's Ray side (:mod:`.trainable`) reads the lines and hands them to ``ray.tune.report``, with
retries on transient storage errors.

A validation is reported once ``ModelCheckpoint`` has judged it (it saves at the epoch's end,
after every other callback, when validation runs once per epoch), so that the checkpoint a
retried trial resumes from names that epoch's best; the checkpoint also carries a copy of the
files ``ModelCheckpoint`` keeps, written back on a retry where they are missing (as for a Ray
Train run: :mod:`aframe_lib.distributed.checkpoints`).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import lightning.pytorch as pl

from ..distributed.checkpoints import KEPT, after_model_checkpoints, copy_kept
from .config import EPOCHS_TRAINED


class TrialReporter(pl.Callback):
    """Write ``{"epoch", "epochs_trained", "metrics", "checkpoint", "last", "time"}`` per
    validation.

    ``epochs_trained`` is the training done at that validation in epochs (``epoch + 1`` at an
    epoch's end, ``1.5`` for a validation half-way through the second): ASHA's time, so that
    its ``max_t`` and grace period count epochs whatever ``val_check_interval`` is.

    Use :func:`trial_reporter`, which places it after ``ModelCheckpoint``.

    Args:
        report_file: the JSON-lines file the trial's Ray side reads (appended to).
        checkpoint_dir: where ``epoch=NNNN-step=SSSSSSSS/last.ckpt`` checkpoints go, one directory
            per validation (the Ray side uploads each one and then deletes it).
    """

    def __init__(self, report_file: str | os.PathLike, checkpoint_dir: str | os.PathLike) -> None:
        self.report_file = Path(report_file)
        self.checkpoint_dir = Path(checkpoint_dir)
        self._pending = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # reported at the next hook, after ModelCheckpoint's save for this validation
        # (at this hook's end, or at the epoch's end when validation runs once per epoch)
        self._pending = not trainer.sanity_checking

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not self._pending:  # every batch: nothing to do unless a validation just ran
            return
        # a validation within the epoch, after batch_idx of its batches
        batches = trainer.num_training_batches
        done = batch_idx / batches if 0 < batches < math.inf else 0.0
        self._flush(trainer, done)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer, 1.0)

    def _flush(self, trainer: pl.Trainer, done: float) -> None:
        if not self._pending:
            return
        self._pending = False
        epoch = trainer.current_epoch
        epochs = round(epoch + done, 6)  # epochs trained at this validation (ASHA's time)
        # one directory per validation: two within an epoch must not share one (the Ray side
        # may still be uploading the first when the second is saved)
        directory = self.checkpoint_dir / f"epoch={epoch:04d}-step={trainer.global_step:08d}"
        # every rank calls save_checkpoint (a collective under DDP); rank zero writes
        trainer.save_checkpoint(directory / "last.ckpt")
        if not trainer.is_global_zero:
            return
        copy_kept(trainer, directory / KEPT)
        metrics = {}
        for key, value in trainer.callback_metrics.items():
            value = value.item() if hasattr(value, "item") and value.numel() == 1 else value
            if isinstance(value, int | float) and math.isfinite(value):
                metrics[key] = float(value)
        record = {
            "epoch": epoch,
            EPOCHS_TRAINED: epochs,
            "metrics": metrics,
            "checkpoint": str(directory),
            # the Ray side holds back a possibly-last report until the export has been written
            "last": epochs >= (trainer.max_epochs or 0) or trainer.should_stop,
            "time": time.time(),
        }
        with open(self.report_file, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def trial_reporter(
    report_file: str | os.PathLike, checkpoint_dir: str | os.PathLike,
    enable_checkpointing: bool | None = True,
) -> TrialReporter:  # fmt: skip
    """A :class:`TrialReporter` in Lightning's checkpoint group (run after the config's
    ``ModelCheckpoint`` at the epoch's end); a plain one where checkpointing is off (Lightning
    refuses a ``Checkpoint`` callback then, and there is no ``ModelCheckpoint`` to wait for)."""
    if enable_checkpointing is False:
        return TrialReporter(report_file, checkpoint_dir)
    return _CheckpointGroupReporter(report_file, checkpoint_dir)


class _CheckpointGroupReporter(TrialReporter, pl.callbacks.Checkpoint):
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        after_model_checkpoints(self, trainer)  # one from the model's configure_callbacks too


class ExportReport(pl.Callback):
    """A multi-worker trial's last Ray Train report: the exported model, from rank zero's node.

    ``ExportModel`` writes the model into ``default_root_dir`` at ``on_train_end`` on rank zero,
    which may be another node than the trial's; at ``on_fit_end`` every rank reports (a
    collective in Ray Train) and rank zero's checkpoint carries the exported files, marked by
    the metric ``aframe_export`` (the trial's side adds them to its final report).
    """

    def __init__(self, files: tuple[str, ...]) -> None:
        self.files = tuple(files)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import shutil
        import tempfile

        import ray.train

        root = Path(trainer.default_root_dir)
        found = [root / f for f in self.files if (root / f).is_file()]
        if not (trainer.is_global_zero and found):
            ray.train.report({"aframe_export": 1.0}, checkpoint=None)
            return
        directory = tempfile.mkdtemp(prefix="aframe-export-")
        try:
            for path in found:
                shutil.copy2(path, Path(directory, path.name))
            checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report({"aframe_export": 1.0}, checkpoint=checkpoint)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
