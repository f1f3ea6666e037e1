"""Validate and fit an AframeDataset under a plain ``lightning.Trainer`` (Lightning's defaults).

    python plain_trainer_ddp.py DATA_DIR OUT.json DEVICES

This is what another project does that subclasses ``AframeDataset`` with its own Trainer:
nothing of ``aframe_train.cli`` (in particular ``use_distributed_sampler`` keeps Lightning's
default, True). With ``DEVICES=2`` the Trainer is ``Trainer(strategy="ddp", devices=2,
accelerator="cpu")`` and Lightning re-runs this script once per extra rank. Rank zero writes
``OUT.json``: the validation score of a seeded (untrained) model, the number of background
windows it scored, and the training batches per rank of a one-epoch fit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning
import torch

from aframe_lib.data import AframeDataset
from aframe_lib.metrics import TimeSlideAUROC
from aframe_train.architectures import SupervisedTimeDomainResNet
from aframe_train.models import SupervisedAframe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the tiny data set
from helpers.tiny_data import SAMPLE_RATE, dataset_kwargs  # noqa: E402


class CountingAframe(SupervisedAframe):
    """Also counts the (non-padding) background windows it scores, summed over ranks."""

    def on_validation_epoch_start(self) -> None:
        self.scored = torch.zeros(())

    def validation_step(self, batch, batch_idx):
        self.scored += (batch["shift_id"] >= 0).sum()
        super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self.windows = int(self.all_gather(self.scored).sum())
        super().on_validation_epoch_end()


def main(data_dir: str, out: str, devices: int) -> None:
    lightning.seed_everything(0)  # identical initial weights on every rank and every run
    data = AframeDataset(data_dir, **dataset_kwargs(batches_per_epoch=4, valid_livetime=300.0))
    arch = SupervisedTimeDomainResNet(2, SAMPLE_RATE, 1.0, layers=[1, 1], norm_groups=8)
    model = CountingAframe(arch, TimeSlideAUROC(max_fpr=1.0, pool_length=2.0, stride=1.0))
    kwargs = dict(accelerator="cpu", logger=False, enable_progress_bar=False, max_epochs=1)
    kwargs.update(enable_checkpointing=False, enable_model_summary=False)
    trainer = (
        lightning.Trainer(strategy="ddp", devices=2, **kwargs)
        if devices == 2
        else lightning.Trainer(devices=1, **kwargs)
    )
    assert trainer._accelerator_connector.use_distributed_sampler  # Lightning's default
    (scores,) = trainer.validate(model, datamodule=data, verbose=False)
    windows = model.windows
    trainer.fit(model, datamodule=data)
    if trainer.is_global_zero:
        result = {
            "valid_auroc": scores["valid_auroc"],
            "windows": windows,
            "train_batches": trainer.num_training_batches,
            "world_size": trainer.world_size,
        }
        with open(out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
