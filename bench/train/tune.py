"""Concurrent trials: 4 one-CPU trials on a 2-CPU local Ray, side by side vs one at a time.

Run by ``nox -s bench`` as ``python bench/train/tune.py``.

Two real ``aframe-train tune`` searches of the quickstart detector (tiny data, 2 epochs, ASHA's
grace period = max epochs so no trial is stopped and both searches do the same work): one with
as many trials as fit (2 on 2 CPUs), one with ``--tune.max_concurrent_trials=1``. The wall time
of each is read from the trials' own clocks (first trial start to last epoch end, so Ray's and
the data's start-up are not counted), and the ratio parallel / serial is printed as
``tune_parallel_ratio`` (target <= 0.6; 0.5 is perfect on 2 CPUs).

Headlines: ``tune_parallel_s``, ``tune_serial_s``, ``tune_parallel_ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
import _common  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart"


def search(workdir: Path, name: str, epochs: int, *extra: str) -> float:
    """Run one search; the seconds from its first trial's start to its last trial's end."""
    temp = f"/tmp/rb-{uuid.uuid4().hex[:8]}"
    script = Path(sys.executable).parent / "aframe-train"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "aframe_train"]
    cmd = [
        *entry, "tune", "--config", str(QUICKSTART / "train.yaml"),
        "--tune_config", str(QUICKSTART / "tune.yaml"),
        f"--tune.name={name}", f"--tune.storage_dir={workdir / 'runs'}",
        "--tune.num_samples=4", f"--tune.max_epochs={epochs}", f"--tune.grace_period={epochs}",
        "--tune.cpus_per_worker=1", "--tune.num_cpus=2", f"--tune.temp_dir={temp}",
        f"--data.init_args.data_dir={workdir / 'data'}",
        "--data.init_args.batches_per_epoch=4",
        "--data.init_args.batch_size=16",
        "--data.init_args.valid_livetime=200",
        "--data.init_args.valid_batch_size=32",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=32",
        "--data.init_args.synthetic.num_val_waveforms=8",
        *extra,
    ]  # fmt: skip
    # RAY_AUTH_MODE: a local throwaway cluster on 127.0.0.1; without it Ray (>= 2.5x) writes a
    # token to ~/.ray/auth_token, which turns token auth on for every later `ray start`
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"search {name} failed:\n{proc.stderr[-4000:]}")
    trials = json.loads((workdir / "runs" / name / "summary.json").read_text())["trials"]
    if len(trials) != 4 or any(t["status"] != "completed" for t in trials):
        sys.exit(f"search {name}: expected 4 completed trials, got {trials}")
    start = min(t["trial_start_time"] for t in trials)
    return max(t["report_time"] for t in trials) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        workdir = Path(tmp)
        with _common.stopwatch("parallel search (4 trials, 2 at a time)"):
            parallel = search(workdir, "parallel", args.epochs)
        with _common.stopwatch("serial search (4 trials, 1 at a time)"):
            serial = search(workdir, "serial", args.epochs, "--tune.max_concurrent_trials=1")
    _common.headline("tune_parallel_s", parallel, ".1f")
    _common.headline("tune_serial_s", serial, ".1f")
    ratio = parallel / serial
    _common.headline("tune_parallel_ratio", ratio, ".2f")
    if ratio > 0.6:
        _common.note(f"tune_parallel_ratio {ratio:.2f} misses the target 0.6 (2 shared CPUs?)")


if __name__ == "__main__":
    main()
