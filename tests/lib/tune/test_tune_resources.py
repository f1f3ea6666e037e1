"""What a trial gets and what happens when it fails, on real Ray (a local 2-CPU instance).

- ``workers_per_trial=2`` on CPU: the trial drives a Ray Train run (the distributed engine):
  two Ray Train workers of one CPU each, one gloo group, seen by a callback in each worker; the
  trial holds no CPU itself. A fast test checks the resource arithmetic and the refusal of
  trials whose workers the nodes cannot hold.
- ``max_failures``: a trial whose training raises once (a callback that leaves a marker file in
  the trial directory before raising) is retried from its last epoch checkpoint and completes;
  with ``max_failures=0`` the same search ends with the trial errored, its own exception in the
  summary, and a non-zero exit status.

The callbacks live in a module written to the test's directory (on the trials' ``PYTHONPATH``)
and are added to the tiny CLI's config by a second ``--config`` file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.fixtures_ray import search_env

pytest.importorskip("ray.tune")

HERE = Path(__file__).resolve().parent

PROBE = '''
import json
import os
from pathlib import Path

import lightning.pytorch as pl
import torch


class RankProbe(pl.Callback):
    """Each rank writes rank-<global rank>.json into the trial directory at the start of fit."""

    def on_train_start(self, trainer, pl_module):
        dist = torch.distributed
        initialized = dist.is_available() and dist.is_initialized()
        total = torch.tensor([float(trainer.global_rank)])
        if initialized:  # a real collective over the process group
            dist.all_reduce(total)
        record = {
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "backend": dist.get_backend() if initialized else None,
            "group_size": dist.get_world_size() if initialized else 1,
            "rank_sum": total.item(),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }
        path = Path(trainer.default_root_dir, f"rank-{trainer.global_rank}.json")
        path.write_text(json.dumps(record))


class FailOnce(pl.Callback):
    """Raise at the start of ``epoch`` unless the trial directory has the marker file."""

    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        marker = Path(trainer.default_root_dir, "failed-once")
        if trainer.current_epoch == self.epoch and not marker.exists():
            marker.write_text(str(os.getpid()))
            raise RuntimeError(f"FailOnce: planned failure at epoch {self.epoch}")
'''


def search(tmp_path: Path, temp_dir: str, callback: dict, *args: str, timeout: float = 300):
    """A search over the tiny CLI with ``callback`` added; ``(process, search dir, seconds)``."""
    (tmp_path / "tune_probe.py").write_text(PROBE)
    extra = tmp_path / "callbacks.yaml"
    extra.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    cmd = [
        sys.executable, "-m", "aframe_lib.tune", "--lightning_cli_cls=tune_tiny_cli.TinyCLI",
        "--config", str(HERE / "tiny.yaml"), "--config", str(extra),
        f"--tune.space={HERE / 'tiny_space.yaml'}", "--tune.metric=valid_score",
        f"--tune.storage_dir={tmp_path / 'runs'}", "--tune.num_cpus=2",
        f"--tune.temp_dir={temp_dir}", "--tune.name=search", "--tune.num_samples=1", *args,
    ]  # fmt: skip
    env = search_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    start = time.time()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path
    )
    return proc, tmp_path / "runs" / "search", time.time() - start


def ray_trial(search_dir: Path):
    """Ray's own record of the search's only trial (from its experiment state)."""
    from ray.tune import ExperimentAnalysis

    (trial,) = ExperimentAnalysis(str(search_dir)).trials
    return trial


def commands(trial_dir: Path) -> list[str]:
    """The training command lines of a trial, one per attempt, from its ``trial.log``."""
    lines = (trial_dir / "trial.log").read_text().splitlines()
    return [line for line in lines if "-m aframe_lib.tune.worker --cli" in line]


@pytest.mark.slow
def test_two_workers_per_trial_train_as_ray_train_workers(tmp_path, ray_temp_dir):
    """``workers_per_trial=2``: the trial drives a Ray Train run of the distributed engine."""
    proc, search_dir, seconds = search(
        tmp_path, ray_temp_dir, {"class_path": "tune_probe.RankProbe"},
        "--tune.workers_per_trial=2", "--tune.cpus_per_worker=1", "--tune.max_epochs=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "each trial gets 2 Ray Train workers of {'CPU': 1.0}; 1 trial(s) fit side by side" in (
        proc.stdout
    )
    # the trial itself holds no CPU (only some memory): the workers hold the 2 CPUs
    trial = ray_trial(search_dir)
    from aframe_lib.tune.tuner import DRIVER_MEMORY

    assert trial.placement_group_factory.bundles == [{"memory": float(DRIVER_MEMORY)}]
    (trial_dir,) = search_dir.glob("run_trial_*")
    log = (trial_dir / "trial.log").read_text()
    assert f"Ray Train run {search_dir}/train_runs/{trial.trial_id}: 2 workers" in log
    assert "-m aframe_lib.tune.worker" not in log  # not the child-process path
    assert (search_dir / "train_runs" / trial.trial_id).is_dir()
    ranks = [json.loads((trial_dir / f"rank-{r}.json").read_text()) for r in (0, 1)]
    for rank, record in enumerate(ranks):
        assert record["global_rank"] == rank
        assert (record["world_size"], record["group_size"]) == (2, 2)
        assert (record["strategy"], record["backend"]) == ("RayDDPStrategy", "gloo")
        assert record["rank_sum"] == 1.0  # the all_reduce saw both ranks
        assert record["omp_num_threads"] == "1"  # one CPU per worker
    assert ranks[0]["pid"] != ranks[1]["pid"]
    assert ranks[1]["ppid"] != ranks[0]["pid"]  # two Ray actors, not a launcher's child
    summary = json.loads((search_dir / "summary.json").read_text())
    (row,) = summary["trials"]
    assert (row["status"], row["epochs"]) == ("completed", 1)
    assert math.isfinite(row["valid_score"]) and summary["best"]["score"] == row["valid_score"]
    print(f"Ray Train trial search: {seconds:.0f} s")


def test_multi_worker_trials_are_checked_against_the_nodes(ray_temp_dir):
    """Each of a trial's workers must fit on one node; too many fail before any trial runs."""
    import ray

    from aframe_lib.tune.config import TuneSettings
    from aframe_lib.tune.tuner import check_fits

    with pytest.raises(ValueError, match="cpus_per_worker must be at least 1"):
        TuneSettings(space="s.yaml", workers_per_trial=2, cpus_per_worker=0)
    settings = TuneSettings(space="s.yaml", workers_per_trial=2, cpus_per_worker=1)
    assert settings.worker_resources() == {"CPU": 1.0}
    assert settings.trial_resources() == {"CPU": 2.0}
    gpus = TuneSettings(space="s.yaml", workers_per_trial=3, gpus_per_worker=0.5, cpus_per_gpu=2)
    assert gpus.worker_resources() == {"CPU": 1.0, "GPU": 0.5}
    assert gpus.trial_resources() == {"CPU": 3.0, "GPU": 1.5}
    ray.init(num_cpus=3, _temp_dir=ray_temp_dir, include_dashboard=False, log_to_driver=False)
    try:
        assert check_fits(settings) == 1  # 3 CPUs: one 2-worker trial at a time
        assert check_fits(TuneSettings(space="s.yaml", workers_per_trial=3)) == 1
        two_cpus = TuneSettings(space="s.yaml", workers_per_trial=2, cpus_per_worker=2)
        with pytest.raises(ValueError, match=r"one trial's 2 workers do not fit .* hold 1;"):
            check_fits(two_cpus)  # 2 x 2 CPUs on one 3-CPU node: one worker fits
        with pytest.raises(ValueError, match="workers do not fit.*GPU"):
            check_fits(gpus)
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("fail_epoch", [0, 1])
def test_failed_trial_is_retried_and_completes(tmp_path, ray_temp_dir, fail_epoch):
    """Epoch 1: the retry goes on from the epoch-0 checkpoint; epoch 0: it starts afresh."""
    callback = {"class_path": "tune_probe.FailOnce", "init_args": {"epoch": fail_epoch}}
    proc, search_dir, seconds = search(
        tmp_path, ray_temp_dir, callback, "--tune.max_epochs=2", "--tune.grace_period=2",
        "--tune.max_failures=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "The trial terminated successfully after retrying" in proc.stdout
    assert ray_trial(search_dir).num_failures == 1
    (trial_dir,) = search_dir.glob("run_trial_*")
    assert (trial_dir / "failed-once").exists()
    log = (trial_dir / "trial.log").read_text()
    assert log.count(f"RuntimeError: FailOnce: planned failure at epoch {fail_epoch}") == 1
    first, second = commands(trial_dir)
    assert "--ckpt_path" not in first
    if fail_epoch:
        assert second.endswith("/restored/last.ckpt") and "--ckpt_path=" in second
    else:  # nothing was reported before the failure: nothing to restore
        assert "--ckpt_path" not in second
    # every epoch reported once, in order, across the two attempts
    results = [json.loads(line) for line in open(trial_dir / "result.json")]
    assert [r["epoch"] for r in results] == [0, 1]
    assert [r["training_iteration"] for r in results] == [1, 2]
    summary = json.loads((search_dir / "summary.json").read_text())
    (row,) = summary["trials"]
    assert (row["status"], row["epochs"], row["error"]) == ("completed", 2, None)
    assert math.isfinite(row["valid_score"]) and summary["best"]["score"] == row["valid_score"]
    print(f"retried trial search (failure at epoch {fail_epoch}): {seconds:.0f} s")


def test_failed_trial_without_retries_ends_the_search_as_errored(tmp_path, ray_temp_dir):
    callback = {"class_path": "tune_probe.FailOnce", "init_args": {"epoch": 1}}
    proc, search_dir, seconds = search(
        tmp_path, ray_temp_dir, callback, "--tune.max_epochs=2", "--tune.grace_period=2",
        "--tune.max_failures=0", timeout=240,
    )  # fmt: skip
    # the search ends (no hang, no retry) and says so: every trial failed, with the reason
    assert proc.returncode != 0
    assert "every trial of the search failed" in proc.stderr, proc.stderr[-3000:]
    reason = "training exited with 1 (RuntimeError: FailOnce: planned failure at epoch 1)"
    assert reason in proc.stderr
    assert ray_trial(search_dir).num_failures == 1
    (trial_dir,) = search_dir.glob("run_trial_*")
    assert len(commands(trial_dir)) == 1  # not retried
    summary = json.loads((search_dir / "summary.json").read_text())
    (row,) = summary["trials"]
    assert (row["status"], row["epochs"]) == ("error", 1)  # epoch 0 was reported
    assert row["error"].startswith(f"trial {trial_dir.name}: {reason}")
    assert "\x1b" not in row["error"]
    assert summary["best"] is None  # a failed trial's partial score is no result
    assert f"trial {row['trial_id']} failed: trial {trial_dir.name}: {reason}" in proc.stdout
    assert "no trial finished without error" in proc.stdout
    csv = (search_dir / "summary.csv").read_text()
    assert "error" in csv and "FailOnce" in csv
    print(f"errored trial search: {seconds:.0f} s")
