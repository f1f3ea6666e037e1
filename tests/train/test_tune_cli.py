"""``aframe-train tune`` end to end on real Ray (all on 127.0.0.1), with tiny trials.

Default suite: a 2-trial, 2-epoch search of the quickstart detector on a local Ray, and the
shipped tune configs. Slow: the same through a ``ray start --head`` cluster by ``ray://``
(with W&B offline), storage on a real S3 server (moto), and a driver SIGKILLed mid-search then
rerun (finished trials are not run again).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.fixtures_ray import search_env

pytest.importorskip("ray.tune")

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart"
CONFIGS = ROOT / "packages" / "aframe-train" / "aframe_train" / "configs"


def tiny(data: Path) -> list[str]:
    return [
        f"--data.init_args.data_dir={data}",
        "--data.init_args.batches_per_epoch=2",
        "--data.init_args.batch_size=8",
        "--data.init_args.valid_livetime=200",
        "--data.init_args.valid_batch_size=32",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=32",
        "--data.init_args.synthetic.num_val_waveforms=8",
    ]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One synthetic data set for the module (the first search generates it)."""
    return tmp_path_factory.mktemp("tune-data") / "data"


def tune_cmd(storage: str, name: str, data: Path, *extra: str) -> list[str]:
    script = Path(sys.executable).parent / "aframe-train"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "aframe_train"]
    return [
        *entry, "tune", "--config", str(QUICKSTART / "train.yaml"),
        "--tune_config", str(QUICKSTART / "tune.yaml"),
        f"--tune.name={name}", f"--tune.storage_dir={storage}",
        "--tune.num_samples=2", "--tune.max_epochs=2", "--tune.grace_period=2",
        *tiny(data), *extra,
    ]  # fmt: skip


def run(cmd: list[str], cwd: Path, timeout: float = 400, **env: str):
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=search_env(**env)
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def check_search(search_dir: Path, num_trials: int = 2) -> dict:
    summary = json.loads((search_dir / "summary.json").read_text())
    assert len(summary["trials"]) == num_trials
    assert all(t["status"] == "completed" for t in summary["trials"]), summary["trials"]
    assert all(0 <= t["valid_auroc"] <= 1 for t in summary["trials"])
    best = summary["best"]
    assert best["score"] == max(t["valid_auroc"] for t in summary["trials"])
    assert set(best["config"]) == {
        "model.init_args.learning_rate",
        "data.init_args.waveform_prob",
    }
    return summary


def test_tiny_search_on_local_ray(tmp_path, data_dir, ray_temp_dir):
    cmd = tune_cmd(str(tmp_path / "runs"), "tiny", data_dir, "--tune.num_cpus=2",
                   f"--tune.temp_dir={ray_temp_dir}")  # fmt: skip
    proc = run(cmd, tmp_path)
    search_dir = tmp_path / "runs" / "tiny"
    summary = check_search(search_dir)
    assert "best trial:" in proc.stdout and "best config:" in proc.stdout
    # the best trial's exported model, copied to the search directory
    model = torch.jit.load(str(search_dir / "model.pt"))
    assert model(torch.randn(3, 2, 512)).shape == (3, 1)
    assert json.loads((search_dir / "model.json").read_text())["input_shape"] == [None, 2, 512]
    for trial in summary["trials"]:
        (trial_dir,) = search_dir.glob(f"*_{trial['trial_id']}")
        # the trial's values reached its training, and it logged to its own CSV
        config = (trial_dir / "trial.log").read_text().splitlines()[0]
        for key, value in trial["config"].items():
            assert f"--{key}={value}" in config
        rows = list(csv.DictReader(open(trial_dir / "logs" / "version_0" / "metrics.csv")))
        assert len([r for r in rows if r.get("valid_auroc")]) == 2
        assert (trial_dir / "model.pt").exists()
    # summary.csv: one row per trial
    rows = list(csv.DictReader(open(search_dir / "summary.csv")))
    assert len(rows) == 2 and {"trial_id", "valid_auroc"} <= set(rows[0])


def test_shipped_tune_configs_parse_and_their_spaces_fit_the_cli():
    from aframe_lib.tune.cli import parser
    from aframe_lib.tune.space import load_space
    from aframe_lib.tune.training import TrainingConfig, validate_space

    bbh = ROOT / "projects" / "bbh-cpu"
    for train_yaml, tune_yaml in (
        (QUICKSTART / "train.yaml", CONFIGS / "tune.yaml"),
        (QUICKSTART / "train.yaml", QUICKSTART / "tune.yaml"),
        (bbh / "train.yaml", bbh / "tune.yaml"),
    ):
        training = TrainingConfig("aframe_train.cli.AframeCLI", [str(train_yaml)])
        cfg = parser("aframe_train.cli.AframeCLI").parse_args(["--tune_config", str(tune_yaml)])
        space = load_space(tune_yaml.parent / cfg.tune.space)
        validate_space(training, space)


@pytest.mark.slow
def test_search_on_a_ray_cluster_by_address_with_wandb(tmp_path, data_dir, ray_head):
    cmd = tune_cmd(str(tmp_path / "runs"), "remote", data_dir, f"--tune.address={ray_head}",
                   "--trainer.logger=WandbLogger", "--trainer.logger.project=aframe")  # fmt: skip
    proc = run(cmd, tmp_path)
    search_dir = tmp_path / "runs" / "remote"
    summary = check_search(search_dir)
    assert "2 trial(s) fit side by side" in proc.stdout
    assert (search_dir / "model.pt").exists()
    from helpers.wandb_files import run_info

    for trial in summary["trials"]:
        (trial_dir,) = search_dir.glob(f"*_{trial['trial_id']}")
        info = run_info(trial_dir)
        assert info["group"] == "remote" and info["name"] == trial_dir.name


@pytest.mark.slow
def test_search_with_two_workers_per_trial(tmp_path, data_dir, ray_temp_dir):
    """Multi-worker trials run through the distributed engine (Ray Train workers, gloo)."""
    cmd = tune_cmd(str(tmp_path / "runs"), "mw", data_dir, "--tune.num_cpus=2",
                   f"--tune.temp_dir={ray_temp_dir}", "--tune.workers_per_trial=2",
                   "--tune.cpus_per_worker=1", "--tune.num_samples=1")  # fmt: skip
    proc = run(cmd, tmp_path)
    assert "Started training worker group of size 2" in proc.stdout + proc.stderr
    search_dir = tmp_path / "runs" / "mw"
    summary = check_search(search_dir, num_trials=1)
    (trial,) = summary["trials"]
    assert trial["epochs"] == 2
    # the sampled values reached the workers' training, as in a single-worker trial
    (trial_dir,) = search_dir.glob(f"*_{trial['trial_id']}")
    first = (trial_dir / "trial.log").read_text().splitlines()[0]
    assert first.startswith(f"Ray Train run {search_dir}/train_runs/{trial['trial_id']}: 2 workers")
    for key, value in trial["config"].items():
        assert f"--{key}={value}" in first
    rows = list(csv.DictReader(open(trial_dir / "logs" / "version_0" / "metrics.csv")))
    assert len([r for r in rows if r.get("valid_auroc")]) == 2  # rank zero logs, once per epoch
    # the best trial's exported model (from rank zero, through the final report)
    assert summary["best"]["model"] == str(search_dir / "model.pt")
    model = torch.jit.load(str(search_dir / "model.pt"))
    assert model(torch.randn(3, 2, 512)).shape == (3, 1)
    (final,) = search_dir.glob(f"*_{trial['trial_id']}/checkpoint_000001")
    assert {"model.pt", "model.json", "checkpoint.ckpt"} <= {p.name for p in final.iterdir()}


@pytest.mark.slow
@pytest.mark.s3
def test_search_with_storage_on_s3(tmp_path, data_dir, ray_temp_dir, s3_bucket):
    import s3fs

    storage = f"{s3_bucket}/searches"
    cmd = tune_cmd(storage, "s3", data_dir, "--tune.num_cpus=2",
                   f"--tune.temp_dir={ray_temp_dir}")  # fmt: skip
    run(cmd, tmp_path)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    root = f"{s3_bucket[5:]}/searches/s3"
    summary = json.loads(fs.cat(f"{root}/summary.json"))
    assert summary["search_dir"] == f"{storage}/s3"
    assert len(summary["trials"]) == 2 and summary["best"]["model"] == f"{storage}/s3/model.pt"
    with fs.open(f"{root}/model.pt", "rb") as f:
        model = torch.jit.load(f)
    assert model(torch.randn(2, 2, 512)).shape == (2, 1)
    assert fs.glob(f"{root}/experiment_state-*.json")
    assert len(fs.glob(f"{root}/run_trial_*/checkpoint_*")) >= 2


@pytest.mark.slow
def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path, data_dir, ray_temp_dir):
    """3 trials of 2 CPUs on 2 CPUs (one at a time); SIGKILL the driver once the first has
    finished and the experiment state records it; the same command then completes the search."""
    cmd = tune_cmd(str(tmp_path / "runs"), "resume", data_dir, "--tune.num_cpus=2",
                   f"--tune.temp_dir={ray_temp_dir}", "--tune.num_samples=3",
                   "--tune.cpus_per_worker=2")  # fmt: skip
    search_dir = tmp_path / "runs" / "resume"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=search_env(), stdout=log, stderr=log)
    deadline = time.time() + 400
    try:
        while time.time() < deadline and proc.poll() is None:
            states = list(search_dir.glob("experiment_state-*.json"))
            if states and '\\"TERMINATED\\"' in states[0].read_text().replace(" ", ""):
                break
            if states and "TERMINATED" in states[0].read_text():
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the search finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.time()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (search_dir / "summary.json").exists()
    time.sleep(2)
    second = run(cmd, tmp_path)
    assert "resuming the search" in second.stdout
    summary = check_search(search_dir, num_trials=3)
    before = [t for t in summary["trials"] if t["trial_start_time"] < killed_at]
    assert before, summary["trials"]
    for trial in summary["trials"]:
        (trial_dir,) = search_dir.glob(f"*_{trial['trial_id']}")
        epochs = [json.loads(x)["epoch"] for x in open(trial_dir / "result.json")]
        assert sorted(epochs) == [0, 1], (trial["trial_id"], epochs)  # no epoch run twice
    # a finished trial kept its result: its only run started before the kill
    finished_first = [t for t in before if t["report_time"] < killed_at]
    assert finished_first
