"""Ray Train's overhead: a 1-worker ``fit --distributed.*`` against a plain one-process ``fit``.

Run by ``nox -s bench`` as ``python bench/train/ray_train.py``.

The quickstart config (its batch of 64, on a small synthetic data set, CPU, one thread) is
trained for ``--batches`` batches twice per repetition, as real ``aframe-train fit``
subprocesses: plainly, and with ``--distributed.num_workers=1`` on a local Ray instance (Ray
Train's ``TorchTrainer`` with ``RayDDPStrategy``, ``RayLightningEnvironment`` and
``RayTrainReportCallback``). A callback times the training batches after a warm-up, so Ray's and
the CLI's start-up are not counted: the ratio is what a step costs under Ray Train.

Headlines (``name: value``): ``plain_step_s``, ``ray_train_step_s`` (medians over
``--repeats``) and ``ray_train_overhead`` = ray / plain (target <= 1.15).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
import _common  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"
TINY_SYNTHETIC = {
    "background_duration": 768.0,
    "segment_duration": 256.0,
    "num_waveforms": 64,
    "num_val_waveforms": 16,
    "waveform_duration": 4.0,
    "coalescence_time": 3.0,
}

TIMER = '''
import json, os, time
import lightning.pytorch as pl

class StepTimer(pl.Callback):
    """Times training steps after a warm-up; rank zero writes s/step to $AFRAME_BENCH_OUT."""

    def __init__(self, warmup: int = 3):
        self.warmup, self.times = warmup, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            t = self.times[self.warmup:]
            with open(os.environ["AFRAME_BENCH_OUT"], "w") as f:
                json.dump({"step_s": (t[-1] - t[0]) / (len(t) - 1)}, f)
'''


def fit(workdir: Path, name: str, batches: int, *extra: str) -> float:
    """One ``aframe-train fit``; its seconds per training step after the warm-up."""
    out, run = workdir / f"{name}.json", workdir / name
    script = Path(sys.executable).parent / "aframe-train"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "aframe_train"]
    cmd = [
        *entry, "fit", "--config", str(QUICKSTART),
        f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.accelerator=cpu", "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0",
        "--trainer.callbacks+=aframe_bench_step_timer.StepTimer",
        f"--data.init_args.data_dir={workdir / 'data'}",
        f"--data.init_args.batches_per_epoch={batches}",
        "--data.init_args.valid_livetime=100",
        f"--data.init_args.synthetic={json.dumps(TINY_SYNTHETIC)}",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "AFRAME_BENCH_OUT": str(out), "OMP_NUM_THREADS": "1"}
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
    return json.loads(out.read_text())["step_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aframe-bench-ray-") as tmp:
        tmp = Path(tmp)
        (tmp / "aframe_bench_step_timer.py").write_text(TIMER)
        with _common.stopwatch("data + warm-up fit"):
            fit(tmp, "warmup", 6)
        plain, ray = [], []
        for i in range(args.repeats):  # interleaved: the machine's load drifts
            plain.append(fit(tmp, f"plain{i}", args.batches))
            temp = f"/tmp/rb-{uuid.uuid4().hex[:8]}"  # short: Ray's socket paths
            ray.append(fit(tmp, f"ray{i}", args.batches, "--distributed.num_workers=1",
                           "--distributed.num_cpus=1", "--distributed.num_gpus=0",
                           f"--distributed.temp_dir={temp}"))  # fmt: skip
            _common.note(f"repetition {i}: plain {plain[-1]:.4f} s/step, ray {ray[-1]:.4f}")
    plain_s, ray_s = _common.median(plain), _common.median(ray)
    _common.headline("plain_step_s", plain_s)
    _common.headline("ray_train_step_s", ray_s)
    _common.headline("ray_train_overhead", ray_s / plain_s, ".3f")
    if ray_s / plain_s > 1.15:
        _common.note("ray_train_overhead above the 1.15 target")


if __name__ == "__main__":
    main()
