"""``SnrCurriculum``: the schedule's values, its errors, and the Dataset stepping it with
``trainer.global_step`` in a real Lightning fit while validation stays on the schedule's end."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from helpers.tiny_data import dataset_kwargs

from aframe_lib.data import AframeDataset, SnrCurriculum


def test_the_minimum_falls_linearly_then_stays():
    c = SnrCurriculum(start_minimum=12.0, minimum=4.0, maximum=50.0, index=-3.0, steps=8)
    assert [c.at(s).current_minimum for s in (0, 2, 4, 8, 100)] == [12.0, 10.0, 8.0, 4.0, 4.0]
    torch.manual_seed(0)
    for step, low in ((0, 12.0), (4, 8.0), (20, 4.0)):
        x = c.at(step).sample((4000,))
        assert x.shape == (4000,) and x.min() >= low and x.max() <= 50.0
        assert x.min() < low * 1.05  # a power law piles up at its minimum
    assert SnrCurriculum(12.0, 4.0, 50.0, steps=0).current_minimum == 4.0
    assert ((c.target.sample((1000,)) >= 4.0) & (c.target.sample((1000,)) <= 50.0)).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(start_minimum=4.0, minimum=8.0, maximum=50.0), "at most start_minimum"),
        (dict(start_minimum=12.0, minimum=4.0, maximum=10.0), "must exceed start_minimum"),
        (dict(start_minimum=12.0, minimum=4.0, maximum=50.0, index=0.0), "index=0"),
        (dict(start_minimum=12.0, minimum=4.0, maximum=50.0, steps=-1), "steps=-1"),
    ],
)
def test_bad_schedules_are_refused_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SnrCurriculum(**kwargs)


class _Recorder(pl.LightningModule):
    """A one-parameter model that records the schedule's state at each training step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, int, float]] = []

    def training_step(self, batch, batch_idx):
        X, y = batch
        sampler = self.trainer.datamodule.snr_sampler
        self.seen.append((self.global_step, sampler.step, sampler.current_minimum))
        return ((X.mean() * self.w - y.mean()) ** 2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_the_dataset_steps_the_schedule_with_the_trainer(tiny_data_dir, tmp_path):
    curriculum = SnrCurriculum(start_minimum=40.0, minimum=10.0, maximum=50.0, steps=4)
    data = AframeDataset(**dataset_kwargs(
        data_dir=str(tiny_data_dir), batch_size=8, batches_per_epoch=6, valid_livetime=100.0,
        snr_sampler=curriculum,
    ))  # fmt: skip
    model = _Recorder()
    trainer = pl.Trainer(
        max_steps=6, accelerator="cpu", devices=1, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert [s for _, s, _ in model.seen] == [g for g, _, _ in model.seen] == list(range(6))
    assert [m for _, _, m in model.seen] == [40.0, 32.5, 25.0, 17.5, 10.0, 10.0]
    # validation drew its fixed SNRs from the schedule's end, not from its loud start
    snrs = data.valid_snrs
    assert ((snrs >= 10.0) & (snrs <= 50.0)).all() and (snrs < 40.0).float().mean() > 0.5
