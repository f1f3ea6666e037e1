"""The Lightning callback a trial's training process runs: one line per validation epoch.

The training process of a trial is a plain LightningCLI ``fit`` (see :mod:`.worker`); it does not
talk to Ray. After each validation epoch this callback saves a checkpoint into a fresh directory
and appends one JSON line (the epoch, the logged metrics, that directory) to a report file; the
trial's Ray side (:mod:`.trainable`) reads the lines and hands them to ``ray.tune.report``, with
retries on transient storage errors.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import lightning.pytorch as pl


class TrialReporter(pl.Callback):
    """Write ``{"epoch", "metrics", "checkpoint", "last", "time"}`` per validation epoch.

    Args:
        report_file: the JSON-lines file the trial's Ray side reads (appended to).
        checkpoint_dir: where ``epoch=NNNN/last.ckpt`` checkpoints go, one directory per epoch
            (the Ray side uploads each one and then deletes it).
    """

    def __init__(self, report_file: str | os.PathLike, checkpoint_dir: str | os.PathLike) -> None:
        self.report_file = Path(report_file)
        self.checkpoint_dir = Path(checkpoint_dir)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        directory = self.checkpoint_dir / f"epoch={epoch:04d}"
        # every rank calls save_checkpoint (a collective under DDP); rank zero writes
        trainer.save_checkpoint(directory / "last.ckpt")
        if not trainer.is_global_zero:
            return
        metrics = {}
        for key, value in trainer.callback_metrics.items():
            value = value.item() if hasattr(value, "item") and value.numel() == 1 else value
            if isinstance(value, int | float) and math.isfinite(value):
                metrics[key] = float(value)
        record = {
            "epoch": epoch,
            "metrics": metrics,
            "checkpoint": str(directory),
            # the Ray side holds back a possibly-last report until the export has been written
            "last": epoch + 1 >= (trainer.max_epochs or 0) or trainer.should_stop,
            "time": time.time(),
        }
        with open(self.report_file, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
