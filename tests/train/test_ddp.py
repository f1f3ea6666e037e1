"""Data-distributed training on CPU (gloo, 2 processes) through the real ``aframe-train`` script.

A short single-process fit gives a checkpoint; ``aframe-train validate`` of that checkpoint with
one process and with two DDP ranks must log the same score (the timeslides and validation
waveforms are split across ranks, the metric states gathered), and a 2-rank fit must finish
(equal batch counts per rank: no hang).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers.console import aframe_train as console_script
from helpers.tiny_data import TINY_FIT as TINY

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"


def aframe_train_cmd(subcommand: str, out: Path, data: Path, *extra: str) -> list[str]:
    return [
        *console_script(), subcommand, "--config", str(QUICKSTART),
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        f"--data.init_args.data_dir={data}",
        "--trainer.accelerator=cpu",
        *TINY, *extra,
    ]  # fmt: skip


def aframe_train(subcommand: str, out: Path, data: Path, *extra: str) -> None:
    cmd = aframe_train_cmd(subcommand, out, data, *extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]


# 2 ranks x 1 thread on 2 cores: torch's default (all cores per process) oversubscribes under DDP
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def logged(out: Path, key: str) -> list[float]:
    values = []
    for path in sorted(out.glob("logs/version_*/metrics.csv")):
        for row in csv.DictReader(open(path)):
            if row.get(key):
                values.append(float(row[key]))
    return values


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    aframe_train("fit", root / "single", root / "data", "--trainer.max_epochs=1")
    ckpt = root / "single" / "checkpoints" / "last.ckpt"
    return root, ckpt


def test_ddp_validation_score_equals_single_process(trained):
    root, ckpt = trained
    aframe_train("validate", root / "v1", root / "data", f"--ckpt_path={ckpt}")
    aframe_train(
        "validate", root / "v2", root / "data", f"--ckpt_path={ckpt}",
        "--trainer.devices=2", "--trainer.strategy=ddp",
    )  # fmt: skip
    single, ddp = logged(root / "v1", "valid_auroc"), logged(root / "v2", "valid_auroc")
    assert len(single) == 1 and len(ddp) == 1
    assert ddp[0] == pytest.approx(single[0], abs=1e-6)


def test_ddp_fit_finishes_and_exports(trained):
    root, _ = trained
    out = root / "fit2"
    aframe_train(
        "fit", out, root / "data", "--trainer.max_epochs=1",
        "--trainer.devices=2", "--trainer.strategy=ddp",
    )  # fmt: skip
    assert (out / "model.pt").exists()
    assert len(logged(out, "valid_auroc")) == 1


def test_killed_training_resumes_from_its_last_checkpoint(trained):
    """SIGKILL a 3-epoch fit once epoch 0 is checkpointed; ``--ckpt_path`` finishes epochs 1-2."""
    import signal
    import time

    root, _ = trained
    out = root / "killed"
    cmd = aframe_train_cmd("fit", out, root / "data", "--trainer.max_epochs=3")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # let the checkpoint write finish
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (out / "model.pt").exists()
    aframe_train("fit", out, root / "data", "--trainer.max_epochs=3", f"--ckpt_path={last}")
    rows = []
    for path in sorted(out.glob("logs/version_*/metrics.csv")):
        rows += [(int(r["epoch"]), float(r["valid_auroc"]))
                 for r in csv.DictReader(open(path)) if r.get("valid_auroc")]  # fmt: skip
    epochs = [e for e, _ in rows]
    assert epochs[-2:] == [1, 2] and 0 not in epochs[1:]
    assert (out / "model.pt").exists()
    # the export is the best epoch of both attempts (the resumed run kept ModelCheckpoint's
    # score: one checkpoint folder, not the logger's version_N)
    scores = dict(rows)
    best = max(scores, key=scores.get)
    exported = json.loads((out / "model.json").read_text())["checkpoint"]
    assert Path(exported).name.startswith(f"epoch={best}-"), (scores, exported)


def test_test_subcommand_scores_the_test_split_not_validation(trained):
    """The quickstart holds out ``test_frac`` of the files: ``test`` scores those, not the
    validation files that chose the checkpoint (which files: tests/lib/data/test_splits.py)."""
    root, ckpt = trained
    aframe_train("validate", root / "tv", root / "data", f"--ckpt_path={ckpt}")
    aframe_train("test", root / "tt", root / "data", f"--ckpt_path={ckpt}")
    (test,), (valid,) = logged(root / "tt", "test_auroc"), logged(root / "tv", "valid_auroc")
    assert 0.0 <= test <= 1.0 and test != valid
