"""Training through the chunked background path, in process and with 2 real DDP ranks (gloo).

In process: ``Trainer.fit`` with Lightning's defaults on the tiny data set, background chunked
(two loads per epoch) and waveforms read as subsets. DDP (slow suite): the real ``aframe-train``
script with 2 ranks records each rank's chunks per epoch through a callback; the shares must be
disjoint, the run must finish and export.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from helpers.console import aframe_train
from helpers.tiny_data import SAMPLE_RATE
from ml4gw.distributions import PowerLaw

from aframe_lib.data import AframeDataset
from aframe_lib.metrics import TimeSlideAUROC
from aframe_train.architectures import SupervisedTimeDomainResNet
from aframe_train.models import SupervisedAframe

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"
CHUNKED = dict(background_loading="chunked", chunk_length=32.0, chunks_per_epoch=4)


class Batches(pl.Callback):
    """Keeps the shape of every training batch and the chunks of every epoch."""

    def __init__(self):
        self.shapes, self.chunks = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.chunks.append(trainer.datamodule.chunked.chunk_ids(trainer.current_epoch))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.shapes.append((tuple(batch[0].shape), tuple(batch[1].shape)))


def test_trainer_fit_with_chunked_background(tiny_data_dir, tmp_path):
    data = AframeDataset(
        str(tiny_data_dir), sample_rate=SAMPLE_RATE, kernel_length=1.0, fduration=1.0,
        psd_length=4.0, highpass=20.0, batch_size=8, batches_per_epoch=4, valid_frac=0.34,
        valid_livetime=100.0, valid_stride=2.0, valid_batch_size=32, num_valid_views=2,
        snr_sampler=PowerLaw(10.0, 20.0, -3.0), max_memory=0.001, **CHUNKED,
    )  # fmt: skip
    arch = SupervisedTimeDomainResNet(2, SAMPLE_RATE, 1.0, layers=[1, 1], norm_groups=4)
    model = SupervisedAframe(arch, TimeSlideAUROC(max_fpr=0.1, pool_length=2.0, stride=2.0))
    probe = Batches()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe],
        default_root_dir=tmp_path, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert data.loading == "chunked"
    assert data.chunked.budget.loads_per_epoch == 2 and data.chunked.budget.waveform_rows
    assert probe.shapes == [((8, 2, int(SAMPLE_RATE)), (8, 1))] * 8
    assert len(probe.chunks) == 2 and not (probe.chunks[0] == probe.chunks[1]).all()
    assert torch.isfinite(torch.as_tensor(trainer.callback_metrics["valid_auroc"]))
    assert data.chunked._pool is None  # teardown stopped the reader thread


@pytest.mark.slow  # ~25 s of CPU, over a minute on a busy 2-core machine
def test_ddp_ranks_read_disjoint_chunks(tmp_path):
    (tmp_path / "chunk_probe.py").write_text(PROBE)
    out = tmp_path / "run"
    cmd = [
        *aframe_train(), "fit", "--config", str(QUICKSTART),
        f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}",
        f"--data.init_args.data_dir={tmp_path / 'data'}", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--trainer.max_epochs=2",
        "--trainer.devices=2", "--trainer.strategy=ddp",
        "--data.init_args.batches_per_epoch=4", "--data.init_args.batch_size=16",
        "--data.init_args.valid_livetime=300", "--data.init_args.valid_batch_size=32",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=64",
        "--data.init_args.synthetic.num_val_waveforms=16",
        "--data.init_args.background_loading=chunked", "--data.init_args.chunk_length=32",
        "--data.init_args.chunks_per_epoch=4", "--data.init_args.max_memory=0.0019",
        "--trainer.callbacks+=chunk_probe.ChunkProbe",
    ]  # fmt: skip
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((out / f"chunks-rank{r}.json").read_text()) for r in range(2)]
    for epoch in ("0", "1"):
        shares = [{c for load in r[epoch] for c in load} for r in ranks]
        assert len(shares[0]) == len(shares[1]) == 4  # 2 loads x 2 chunks each
        assert not shares[0] & shares[1]
    assert (out / "model.pt").exists()


PROBE = '''
import json, os
import lightning.pytorch as pl

class ChunkProbe(pl.Callback):
    """Each rank writes the chunk ids it read per epoch to chunks-rank<r>.json."""

    def __init__(self):
        self.epochs = {}

    def on_train_epoch_start(self, trainer, pl_module):
        ids = trainer.datamodule.chunked.chunk_ids(trainer.current_epoch)
        self.epochs[trainer.current_epoch] = ids.tolist()

    def on_train_end(self, trainer, pl_module):
        path = os.path.join(trainer.default_root_dir, f"chunks-rank{trainer.global_rank}.json")
        with open(path, "w") as f:
            json.dump(self.epochs, f)
'''
