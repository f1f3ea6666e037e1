"""Searches over a LightningCLI that is not aframe's (``tune_tiny_cli.TinyCLI``), on real Ray.

The concurrency test is the guard against the 2023 bug (one trial at a time, holding every
device): on a 2-CPU local Ray, two 1-CPU trials must overlap in time, by their own clocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.fixtures_ray import free_port, search_env

pytest.importorskip("ray.tune")

HERE = Path(__file__).resolve().parent


def search(tmp_path: Path, temp_dir: str, *args: str, timeout: float = 300):
    cmd = [
        sys.executable, "-m", "aframe_lib.tune", "--lightning_cli_cls=tune_tiny_cli.TinyCLI",
        "--config", str(HERE / "tiny.yaml"), f"--tune.space={HERE / 'tiny_space.yaml'}",
        "--tune.metric=valid_score", f"--tune.storage_dir={tmp_path / 'runs'}",
        "--tune.num_cpus=2", f"--tune.temp_dir={temp_dir}", *args,
    ]  # fmt: skip
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=search_env(), cwd=tmp_path
    )


def test_two_one_cpu_trials_run_side_by_side_on_two_cpus(tmp_path, ray_temp_dir):
    proc = search(
        tmp_path, ray_temp_dir, "--tune.name=overlap", "--tune.num_samples=2",
        "--tune.max_epochs=2", "--tune.grace_period=2", "--tune.cpus_per_worker=1",
        "--model.sleep=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 trial(s) fit side by side" in proc.stdout
    summary = json.loads((tmp_path / "runs" / "overlap" / "summary.json").read_text())
    trials = summary["trials"]
    assert [t["status"] for t in trials] == ["completed", "completed"]
    starts = [t["trial_start_time"] for t in trials]
    ends = [t["report_time"] for t in trials]  # the end of each trial's last epoch
    # each interval lies inside the other's: they ran at the same time
    assert max(starts) < min(ends), (starts, ends)
    overlap = min(ends) - max(starts)
    assert overlap > 0.5 * min(e - s for s, e in zip(starts, ends, strict=True))
    best = summary["best"]
    assert best["score"] == max(t["valid_score"] for t in trials)
    assert set(best["config"]) == {"model.learning_rate"}
    csv = (tmp_path / "runs" / "overlap" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("trial_id,status") and len(csv) == 3


def test_asha_counts_epochs_with_validation_twice_an_epoch(tmp_path, ray_temp_dir):
    """ASHA's ``max_t`` is ``tune.max_epochs`` epochs: with ``val_check_interval`` 0.5 its
    four reports must not stop the trial after its first epoch (the second report)."""
    proc = search(
        tmp_path, ray_temp_dir, "--tune.name=half", "--tune.num_samples=1",
        "--tune.max_epochs=2", "--tune.grace_period=1", "--trainer.val_check_interval=0.5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((tmp_path / "runs" / "half" / "summary.json").read_text())
    [trial] = summary["trials"]
    assert (trial["status"], trial["epochs"]) == ("completed", 2)
    # what the training itself wrote: both epochs, two validations each
    [report] = (tmp_path / "runs" / "half").glob("*/report.jsonl")
    records = [json.loads(line) for line in report.read_text().splitlines()]
    trained = [(r["epoch"], r["epochs_trained"]) for r in records]
    assert trained == [(0, 0.5), (0, 1), (1, 1.5), (1, 2)]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("model.bogus: uniform(0, 1)", ["model.bogus", "bogus", "Fix"]),
        ("model.learning_rate: unifrom(0, 1)", ["model.learning_rate", "unifrom"]),
        ("data.batch_size: uniform(0.1, 0.5)", ["data.batch_size", "int"]),
    ],
)
def test_bad_search_space_fails_before_ray_starts(tmp_path, ray_temp_dir, entry, words):
    space = tmp_path / "space.yaml"
    space.write_text(entry + "\n")
    proc = search(tmp_path, ray_temp_dir, f"--tune.space={space}", timeout=120)
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stderr, proc.stderr[-3000:]
    assert not Path(ray_temp_dir).exists()  # no Ray instance was started
    assert not (tmp_path / "runs" / "search").exists()


def test_unreachable_address_fails_fast_before_any_trial(tmp_path, ray_temp_dir):
    address = f"ray://127.0.0.1:{free_port()}"
    start = time.time()
    proc = search(tmp_path, ray_temp_dir, f"--tune.address={address}",
                  "--tune.connect_timeout=3", timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert address in proc.stderr and "--tune.address" in proc.stderr
    assert "in 3 s (--tune.connect_timeout" in proc.stderr
    assert time.time() - start < 60
    assert not (tmp_path / "runs" / "search").exists()


def test_training_config_errors_name_the_argument(tmp_path, ray_temp_dir):
    proc = search(tmp_path, ray_temp_dir, "--data.nope=3", timeout=120)
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "does not parse" in proc.stderr
