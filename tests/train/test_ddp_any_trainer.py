"""DDP correctness under Lightning's defaults, not only under ``aframe-train``'s Trainer.

``plain_trainer_ddp.py`` validates a seeded model and fits it for one epoch with a plain
``lightning.Trainer`` (``use_distributed_sampler`` left True), on one process and on two DDP
ranks (CPU, gloo). The Dataset splits the data by rank itself; the score, the number of windows
scored and the training batches per rank must not depend on the Trainer's sampler setting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("plain_trainer_ddp.py")
# 2 ranks x 1 thread on 2 cores: torch's default (all cores per process) oversubscribes
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(data_dir: Path, out: Path, devices: int) -> dict:
    cmd = [sys.executable, str(SCRIPT), str(data_dir), str(out), str(devices)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_plain_lightning_trainer_ddp_scores_like_one_process(tiny_data_dir, tmp_path):
    single = run(tiny_data_dir, tmp_path / "one.json", 1)
    ddp = run(tiny_data_dir, tmp_path / "two.json", 2)
    assert ddp["world_size"] == 2
    # every validation window is scored exactly once over the two ranks
    assert ddp["windows"] == single["windows"] > 0
    assert ddp["valid_auroc"] == pytest.approx(single["valid_auroc"], abs=1e-6)
    # batches_per_epoch=4 is over all devices: 2 per rank, not halved again by a sampler
    assert single["train_batches"] == 4 and ddp["train_batches"] == 2
