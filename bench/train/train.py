"""Training throughput of each shipped model, and DDP with 2 CPU ranks against 1.

Run by ``nox -s bench`` as ``python bench/train/train.py``.

Per model (each shipped config in ``aframe_train/configs`` except ``callbacks.yaml``): the model
and data module are built from the config by ``AframeCLI`` exactly as ``aframe-train fit`` would,
on a small synthetic data set at the config's sample rate, and full training steps (sample
background on the device, augment + inject + whiten + transform, forward, backward, AdamW step)
are timed. On this CPU a full shipped batch (384) of the ResNets takes tens of seconds, so the
batch is capped at ``--batch-size`` (32) and throughput is reported in samples/s at that batch.

DDP: the quickstart config is trained for ``--ddp-batches`` batches with ``--trainer.devices=1``
and with ``--trainer.devices=2 --trainer.strategy=ddp`` (gloo), as real ``aframe-train fit``
subprocesses; a callback times the batches after a warm-up (start-up excluded), and the ratio of
total samples/s (2 ranks / 1 rank) is printed.

Headlines (``name: value``): ``train_samples_per_s_<config>`` for each config and
``ddp2_speedup``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "packages" / "aframe-train" / "aframe_train" / "configs"
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"
TINY_SYNTHETIC = {
    "background_duration": 768.0,
    "segment_duration": 256.0,
    "num_waveforms": 64,
    "num_val_waveforms": 16,
}


def model_throughput(config: Path, batch_size: int, steps: int, data_root: Path) -> float:
    import torch

    from aframe_train.cli import AframeCLI

    overrides = [
        f"--data.init_args.data_dir={data_root / config.stem}",
        f"--data.init_args.batch_size={batch_size}",
        "--data.init_args.valid_livetime=300",
        f"--data.init_args.synthetic={json.dumps(TINY_SYNTHETIC)}",
    ]
    cli = AframeCLI(args=["--config", str(config), *overrides], run=False)
    data, model = cli.datamodule, cli.model
    data.prepare_data()
    data.setup("fit")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        X, y = data.augment(data.sampler(batch_size))
        loss = model.compute_loss(X, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


TIMER = '''
import json, os, time
import lightning.pytorch as pl

class BatchTimer(pl.Callback):
    """Times training batches after a warm-up; rank zero writes samples/s to $AFRAME_BENCH_OUT."""

    def __init__(self, warmup: int = 2):
        self.warmup, self.times = warmup, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            t = self.times[self.warmup:]
            per_batch = (t[-1] - t[0]) / (len(t) - 1)
            size = trainer.datamodule.batch_size * trainer.world_size
            with open(os.environ["AFRAME_BENCH_OUT"], "w") as f:
                json.dump({"samples_per_s": size / per_batch}, f)
'''


def ddp_throughput(devices: int, batches: int, workdir: Path) -> float:
    (workdir / "aframe_bench_timer.py").write_text(TIMER)
    out = workdir / f"ddp{devices}.json"
    script = Path(sys.executable).parent / "aframe-train"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "aframe_train"]
    cmd = [
        *entry, "fit", "--config", str(QUICKSTART),
        f"--trainer.default_root_dir={workdir / f'run{devices}'}",
        f"--trainer.logger.init_args.save_dir={workdir / f'run{devices}'}",
        "--trainer.accelerator=cpu", f"--trainer.devices={devices}",
        "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0",
        "--trainer.callbacks+=aframe_bench_timer.BatchTimer",
        f"--data.init_args.data_dir={workdir / 'data'}",
        # the same global batch: each of N ranks draws batch_size / N
        f"--data.init_args.batch_size={64 // devices}",
        f"--data.init_args.batches_per_epoch={batches * devices}",
        f"--data.init_args.synthetic={json.dumps(TINY_SYNTHETIC)}",
    ]  # fmt: skip
    if devices > 1:
        cmd.append("--trainer.strategy=ddp")
    # one intra-op thread pool per core in all: N ranks x (cores / N) threads, no oversubscription
    threads = str(max(1, (os.cpu_count() or 1) // devices))
    env = {**os.environ, "AFRAME_BENCH_OUT": str(out), "OMP_NUM_THREADS": threads}
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(out.read_text())["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ddp-batches", type=int, default=12)
    parser.add_argument("--configs", nargs="*", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aframe-bench-train-") as tmp:
        tmp = Path(tmp)
        configs = (
            [Path(c) for c in args.configs]
            if args.configs
            else sorted(p for p in CONFIGS.glob("*.yaml") if "model:" in p.read_text())
        )
        for config in configs:
            rate = model_throughput(config, args.batch_size, args.steps, tmp)
            print(f"train_samples_per_s_{config.stem}: {rate:.1f}", flush=True)
        one = ddp_throughput(1, args.ddp_batches, tmp)
        two = ddp_throughput(2, args.ddp_batches, tmp)
        print(f"# quickstart model, global batch 64: 1 rank {one:.1f}, 2 ranks {two:.1f} samples/s")
        print(f"ddp2_speedup: {two / one:.2f}")


if __name__ == "__main__":
    main()
