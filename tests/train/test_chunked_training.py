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
    out = fit_two_ranks(
        tmp_path, PROBE, "chunk_probe.ChunkProbe",
        f"--data.init_args.data_dir={tmp_path / 'data'}",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=64",
        "--data.init_args.synthetic.num_val_waveforms=16",
        "--data.init_args.max_memory=0.0019",
    )  # fmt: skip
    ranks = [json.loads((out / f"chunks-rank{r}.json").read_text()) for r in range(2)]
    for epoch in ("0", "1"):
        shares = [{c for load in r[epoch] for c in load} for r in ranks]
        assert len(shares[0]) == len(shares[1]) == 4  # 2 loads x 2 chunks each
        assert not shares[0] & shares[1]
    assert (out / "model.pt").exists()


def fit_two_ranks(tmp_path: Path, probe: str, callback: str, *args: str) -> Path:
    """``aframe-train fit`` of the quickstart model with 2 gloo DDP ranks, chunked background
    (2 epochs of 4 batches, 4 chunks of 32 s per rank and epoch), the probe module ``probe``
    importable and its ``callback`` added; ``args`` name the data. Returns the run directory."""
    (tmp_path / f"{callback.split('.')[0]}.py").write_text(probe)
    out = tmp_path / "run"
    cmd = [
        *aframe_train(), "fit", "--config", str(QUICKSTART),
        f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
        "--trainer.max_epochs=2", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--data.init_args.batches_per_epoch=4", "--data.init_args.batch_size=16",
        "--data.init_args.valid_livetime=300", "--data.init_args.valid_batch_size=32",
        "--data.init_args.background_loading=chunked", "--data.init_args.chunk_length=32",
        "--data.init_args.chunks_per_epoch=4", f"--trainer.callbacks+={callback}", *args,
    ]  # fmt: skip
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


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


S3_PROBE = '''
import collections, json, os
import lightning.pytorch as pl
import s3fs

from aframe_lib.utils import fs

fs.HDF5_BLOCK = 2048  # read-ahead well below a file, so fetches show what is read
FETCHED = collections.Counter()
_fetch = s3fs.core._inner_fetch


async def _spy(fs_, bucket, key, version_id, start, end, *args, **kwargs):
    FETCHED[key.rsplit("/", 1)[-1]] += end - start
    return await _fetch(fs_, bucket, key, version_id, start, end, *args, **kwargs)


s3fs.core._inner_fetch = _spy


class S3Probe(pl.Callback):
    """Each rank writes its chunks, their bytes and the bytes it fetched per file (rank 0's
    include the export after training, which reads each training file's provenance)."""

    def __init__(self):
        self.epochs, self.share = {}, 0

    def on_train_epoch_start(self, trainer, pl_module):
        data = trainer.datamodule.chunked
        ids = data.chunk_ids(trainer.current_epoch)
        self.epochs[trainer.current_epoch] = ids.tolist()
        for c in ids.ravel():
            self.share += len(data.ifos) * 4 * (int(data.table.starts[c]) + data.sample_size - 1)

    def on_train_end(self, trainer, pl_module):
        dm = trainer.datamodule
        record = {
            "epochs": self.epochs, "share": self.share, "fetched": dict(FETCHED),
            "train": [os.path.basename(s.path) for s in dm._split_paths["train"]],
            "cached": sorted(os.listdir(dm.local_dir)),
        }
        path = os.path.join(trainer.default_root_dir, f"s3-rank{trainer.global_rank}.json")
        with open(path, "w") as f:
            json.dump(record, f)
'''


@pytest.mark.slow  # two DDP ranks streaming from the moto server: ~1 min of CPU
@pytest.mark.s3
def test_ddp_ranks_stream_their_own_chunks_from_s3(tiny_data_dir, s3_bucket, tmp_path):
    """Two real gloo DDP ranks of ``aframe-train fit`` on an ``s3://`` data set (the moto
    server): each rank fetches about its own chunks' bytes of the training files, never the
    whole set; their chunks are disjoint; the local cache holds only the small files."""
    import shutil

    import numpy as np

    from aframe_lib.data.background import background_fname, write_background
    from aframe_lib.utils import fs

    local, size, ifos = tmp_path / "local", int(512 * SAMPLE_RATE), ["H1", "L1"]
    local.mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):  # 4 training files, 1 validation, 1 test
        t0 = 1_000_000_000 + 600 * k
        strain = {ifo: rng.normal(size=size) for ifo in ifos}
        write_background(str(local / background_fname(t0, 512)), strain, t0, SAMPLE_RATE,
                         chunk_size=512)  # fmt: skip
    for name in ("waveforms.hdf5", "val_waveforms.hdf5"):
        shutil.copy(tiny_data_dir / name, local / name)
    store, inner = fs.filesystem(f"{s3_bucket}/data")
    for path in sorted(local.iterdir()):
        store.put_file(str(path), f"{inner}/{path.name}")

    out = fit_two_ranks(
        tmp_path, S3_PROBE, "s3_probe.S3Probe",
        f"--data.init_args.data_dir={s3_bucket}/data", "--data.init_args.synthetic=null",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        f"--data.init_args.sample_rate={SAMPLE_RATE:g}", "--data.init_args.valid_frac=0.15",
        "--data.init_args.test_frac=0.15",
    )  # fmt: skip
    ranks = [json.loads((out / f"s3-rank{r}.json").read_text()) for r in range(2)]
    train = ranks[0]["train"]
    assert len(train) == 4 and ranks[1]["train"] == train
    whole = 4 * len(ifos) * size * 4  # bytes of the training files' samples
    for epoch in ("0", "1"):
        shares = [{c for load in r["epochs"][epoch] for c in load} for r in ranks]
        assert len(shares[0]) == len(shares[1]) == 4 and not shares[0] & shares[1]
    for r in ranks:
        fetched = sum(b for name, b in r["fetched"].items() if name in train)
        # its 8 chunks (2 epochs x 4) of ~32 s, at most one more load read ahead for a third
        # epoch (4 chunks), the HDF5 headers and B-tree nodes (2 KiB HDF5 chunks here) and the
        # 2 KiB read-ahead; before HDF5_BLOCK, rank 0's export read every training file whole
        # for its provenance (5.5 MB here)
        assert r["share"] <= fetched <= 2.5 * r["share"], (fetched, r["share"])
        assert fetched < 0.5 * whole
        # nothing but the waveforms and the latest background file reached the disk
        assert r["cached"] == sorted([sorted(os.listdir(local))[-3], "val_waveforms.hdf5",
                                      "waveforms.hdf5"])  # fmt: skip
    assert (out / "model.pt").exists()
