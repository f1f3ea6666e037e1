"""``aframe-train fit --distributed.*``: the same config trained data-parallel by Ray Train.

Fast: bad settings and an unreachable address fail in seconds with exit status 2.
Slow, on a real Ray head (``ray start --head`` on 127.0.0.1, reached by ``ray://``) with 2 CPUs:
2 CPU workers (gloo) train the quickstart-size detector with checkpoints on the moto S3 server;
the score they log equals a single-process ``validate`` of their checkpoint; the best model is
exported as a one-node fit exports it; one W&B run for the job; more workers than the cluster
holds fail at once; and a worker killed mid-epoch is survived by re-running the command.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.checkpoints import model_checkpoint_state
from helpers.console import aframe_train as console_script
from helpers.fixtures_ray import free_port, pids_using, search_env, start_ray_head
from helpers.fixtures_s3 import CREDENTIALS
from helpers.tiny_data import TINY_FIT as TINY

from aframe_train.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"


def fit_args(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(QUICKSTART),
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        f"--data.init_args.data_dir={data}",
        "--trainer.accelerator=cpu",
        *TINY, *extra,
    ]  # fmt: skip


def run_main(capsys, args: list[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "setting, named",
    [
        ("--distributed.num_workers=0", "num_workers=0: must be at least 1"),
        ("--distributed.gpus_per_worker=-1", "gpus_per_worker=-1"),
        ("--distributed.name=a/b", "plain directory name"),
        ("--distributed.bogus=1", "bogus"),
        ("--distributed.num_workers=two", "num_workers"),
    ],
)
def test_bad_settings_fail_with_exit_2_naming_them(tmp_path, capsys, setting, named):
    start = time.monotonic()
    code, err = run_main(capsys, fit_args(tmp_path / "o", tmp_path / "d", setting))
    assert code == 2 and named in err
    assert time.monotonic() - start < 10
    assert not (tmp_path / "o").exists()


def test_a_bad_training_config_fails_before_ray(tmp_path, capsys):
    args = fit_args(
        tmp_path / "o", tmp_path / "d", "--distributed.num_workers=2", "--model.bogus=1"
    )
    code, err = run_main(capsys, args)
    assert code == 2 and "bogus" in err


def test_an_unreachable_address_fails_in_seconds(tmp_path, capsys):
    address = f"ray://127.0.0.1:{free_port()}"
    start = time.monotonic()
    code, err = run_main(capsys, fit_args(
        tmp_path / "o", tmp_path / "d", "--distributed.num_workers=2",
        f"--distributed.address={address}", "--distributed.connect_timeout=0",
    ))  # fmt: skip
    assert code == 2, err
    assert address in err and "--distributed.address" in err and "--tune." not in err
    assert time.monotonic() - start < 30


def test_a_missing_bucket_fails_before_ray(tmp_path, capsys, s3_bucket):
    storage = f"{s3_bucket}-missing/ray"
    code, err = run_main(capsys, fit_args(tmp_path / "o", tmp_path / "d",
                                          "--distributed.num_workers=2",
                                          f"--distributed.storage_dir={storage}"))  # fmt: skip
    assert code == 2 and "does not exist" in err and "--distributed.storage_dir" in err


# --- slow: a real Ray head --------------------------------------------------------------------


def logged(out: Path, key: str) -> list[tuple[int, float]]:
    rows = []
    paths = sorted(out.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    for path in paths:
        rows += [(int(r["epoch"]), float(r[key])) for r in csv.DictReader(open(path)) if r.get(key)]
    return rows


def assert_exports_the_best_epoch(out: Path, storage: Path) -> None:
    """The exported model is the checkpoint of the best-scoring epoch over the whole run (each
    epoch's last logged score, attempts before and after the resume alike), and the run's latest
    Ray checkpoint says so too, carrying a copy of that file."""
    scores = dict(logged(out, "valid_auroc"))  # the latest logging of each epoch
    best_epoch = max(scores, key=scores.get)
    info = json.loads((out / "model.json").read_text())
    assert Path(info["checkpoint"]).name.startswith(f"epoch={best_epoch}-"), (scores, info)
    assert Path(info["checkpoint"]).parent == out / "checkpoints"  # one folder for all attempts
    latest = max(p for p in storage.glob("fit/checkpoint_*") if p.is_dir())
    state = model_checkpoint_state(latest / "checkpoint.ckpt")
    assert state["best_model_path"] == info["checkpoint"]
    assert float(state["best_model_score"]) == pytest.approx(scores[best_epoch], abs=1e-6)
    manifest = json.loads((latest / "model_checkpoint" / "manifest.json").read_text())
    (copy,) = [name for name, path in manifest.items() if path == info["checkpoint"]]
    kept = (latest / "model_checkpoint" / copy).read_bytes()
    assert kept == Path(info["checkpoint"]).read_bytes()


def aframe_train(args: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*console_script(), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def head_and_data(tmp_path_factory, s3_server):
    """A real Ray head (2 CPUs) whose workers reach the moto S3 server, and the tiny data set
    (generated by a short single-process fit)."""
    root = tmp_path_factory.mktemp("dist")
    env = search_env(OMP_NUM_THREADS="1")
    proc = aframe_train(fit_args(root / "single", root / "data", "--trainer.max_epochs=1"), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with start_ray_head(num_cpus=2, AWS_ENDPOINT_URL=s3_server, **CREDENTIALS) as address:
        yield address, root


def csv_and_wandb(tmp_path: Path, out: Path) -> Path:
    """A config file whose loggers are CSV and W&B (offline), both in ``out``."""
    loggers = tmp_path / "loggers.yaml"
    csv_logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(out), "name": "logs"},
    }
    wandb_logger = {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"save_dir": str(out), "project": "aframe-tests", "offline": True},
    }
    loggers.write_text(json.dumps({"trainer": {"logger": [csv_logger, wandb_logger]}}))
    return loggers


@pytest.mark.slow
def test_two_workers_score_equals_one_process_and_export(head_and_data, s3_bucket, tmp_path):
    address, root = head_and_data
    out = tmp_path / "run"
    loggers = csv_and_wandb(tmp_path, out)
    args = fit_args(out, root / "data", "--config", str(loggers), "--trainer.max_epochs=1",
                    "--distributed.num_workers=2", f"--distributed.address={address}",
                    f"--distributed.storage_dir={s3_bucket}/ray")  # fmt: skip
    env = search_env(WANDB_MODE="offline")
    proc = aframe_train(args, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # the best model exported as a one-node fit exports it
    info = json.loads((out / "model.json").read_text())
    assert (out / "model.pt").is_file() and info["checkpoint"].endswith(".ckpt")
    assert info["data"]["batches_per_epoch"] == 4
    # one W&B run for the job (rank zero), with the validation score logged
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # Ray Train's checkpoint went to S3
    import s3fs

    store = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    saved = store.glob(f"{s3_bucket[5:]}/ray/fit/checkpoint_*/checkpoint.ckpt")
    assert len(saved) == 1
    # the 2-rank score equals a single-process validation of the same weights
    ((epoch, ray_score),) = logged(out, "valid_auroc")
    last = out / "checkpoints" / "last.ckpt"
    check = tmp_path / "check"
    proc = aframe_train(["validate", *fit_args(check, root / "data", f"--ckpt_path={last}")[1:]],
                        search_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ((_, single),) = logged(check, "valid_auroc")
    assert ray_score == pytest.approx(single, abs=1e-6)


@pytest.mark.slow
def test_more_workers_than_the_cluster_holds_fail_at_once(head_and_data, tmp_path):
    address, root = head_and_data
    start = time.monotonic()
    proc = aframe_train(fit_args(tmp_path / "o", root / "data", "--distributed.num_workers=3",
                                 f"--distributed.address={address}"), search_env())  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "--distributed.num_workers=3" in proc.stderr and "hold 2" in proc.stderr
    assert time.monotonic() - start < 60


def train_worker_pids(temp_marker: str) -> list[int]:
    """PIDs of Ray Train workers that are descendants of the raylet of our head (only ours)."""
    raylets = [p for p in pids_using(temp_marker) if "raylet" in _cmdline(p)]
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().split(")")[-1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], list(raylets)
    while stack:
        pid = stack.pop()
        for child in children.get(pid, []):
            if "RayTrainWorker" in _cmdline(child):
                found.append(child)
            stack.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        )
    except OSError:
        return ""


@pytest.mark.slow
def test_a_killed_worker_is_survived_by_rerunning_the_command(head_and_data, tmp_path):
    from helpers.fixtures_ray import HEADS

    address, root = head_and_data
    out, storage = tmp_path / "run", tmp_path / "ray"
    args = fit_args(
        out, root / "data", "--config", str(csv_and_wandb(tmp_path, out)),
        # 5 epochs, for margin: the kill must land before training ends, however late the
        # driver's snapshot of epoch 0's checkpoint appears (with 3, a loaded run once found
        # model.pt already written when the killed run exited)
        "--trainer.max_epochs=5", "--data.init_args.batches_per_epoch=40",
        "--distributed.num_workers=2", f"--distributed.address={address}",
        f"--distributed.storage_dir={storage}", "--distributed.max_failures=0",
    )  # fmt: skip
    proc = subprocess.Popen(
        [*console_script(), *args], env=search_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    # Ray Train has recorded the first epoch's checkpoint (its manager's snapshot in storage)
    first = storage / "fit" / "checkpoint_manager_snapshot.json"
    deadline = time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.exists(), proc.communicate()[0][-4000:]
    time.sleep(2.0)  # into epoch 1
    workers = train_worker_pids(HEADS[address][1])
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, output[-3000:]
    assert not (out / "model.pt").exists()
    # the same command again: continues from the latest checkpoint and finishes
    again = aframe_train(args, search_env())
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    assert "resuming from" in again.stdout + again.stderr
    epochs = [e for e, _ in logged(out, "valid_auroc")]
    assert epochs[-1] == 4 and epochs.count(0) == 1  # epoch 0 was not trained again
    assert (out / "model.pt").is_file()
    assert_exports_the_best_epoch(out, storage)
    # one W&B run for the job: the resumed run logs into the first one (same id)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[-1] for r in runs}) == 1


@pytest.mark.slow
def test_a_killed_driver_is_survived_by_rerunning_the_command(head_and_data, tmp_path,
                                                              ray_temp_dir):  # fmt: skip
    """A local Ray instance: SIGKILL the driver (its Ray goes with it) once epoch 0 is
    checkpointed; the same command continues from that checkpoint and finishes."""
    from helpers.fixtures_ray import stop_processes

    _, root = head_and_data
    out, storage = tmp_path / "run", tmp_path / "ray"
    args = fit_args(
        out, root / "data", "--trainer.max_epochs=2", "--data.init_args.batches_per_epoch=40",
        "--distributed.num_workers=2", "--distributed.num_cpus=2", "--distributed.num_gpus=0",
        f"--distributed.temp_dir={ray_temp_dir}", f"--distributed.storage_dir={storage}",
    )  # fmt: skip
    proc = subprocess.Popen([*console_script(), *args], env=search_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    first = storage / "fit" / "checkpoint_manager_snapshot.json"
    deadline = time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.exists()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop_processes(ray_temp_dir)  # what of its local Ray instance did not die with it
    assert not (out / "model.pt").exists()
    again = aframe_train(args, search_env())
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    assert "resuming from" in again.stdout + again.stderr
    epochs = [e for e, _ in logged(out, "valid_auroc")]
    assert epochs[-1] == 1 and epochs.count(0) == 1
    assert (out / "model.pt").is_file()
    assert_exports_the_best_epoch(out, storage)
    # the best checkpoint file lost (deleted by a later save before the driver died, or on a
    # node's local disk): the run's checkpoint carries it, and the command again exports it
    best = Path(json.loads((out / "model.json").read_text())["checkpoint"])
    content = best.read_bytes()
    for path in (best, out / "model.pt", out / "model.json"):
        path.unlink()
    again = aframe_train(args, search_env())
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    assert best.read_bytes() == content and (out / "model.pt").is_file()
    assert json.loads((out / "model.json").read_text())["checkpoint"] == str(best)
