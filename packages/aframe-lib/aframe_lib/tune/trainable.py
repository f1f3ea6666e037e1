"""What runs inside one Ray Tune trial: the LightningCLI ``fit`` as a child process (one worker)
or as a Ray Train run (``workers > 1``, below).

Why a child process rather than the CLI inside the Ray worker: the trial runs the very command a
user would run by hand (``trial.log`` starts with it), with its own torch threads, seeds and
global state; and stopping the trial (ASHA, a failure, a killed driver) kills the whole process
group. The cost is the CLI's start-up
(a few seconds of imports) per trial.

The child appends one JSON line per validation epoch (:class:`.callbacks.TrialReporter`); this
side reports each line with its checkpoint to ``ray.tune.report``. A line that may be the last
one is held back until the child has exited, so that the final report carries the exported
model (``model.pt`` ...) too: once the last epoch is reported, ASHA stops the trial at ``max_t``.

A multi-worker trial (``workers > 1``) trains through the distributed engine instead
(:mod:`aframe_lib.distributed`: ``worker_setup``, ``make_trainer``, ``train_loop``): a Ray Train
``TorchTrainer`` run inside this function trainable (Ray Train V2's way of tuning distributed
runs), whose N workers may sit on any nodes. Its controller (on this trial's node) writes the
same JSON lines from each Ray Train report (:func:`_report_writer`), and the same code hands
them to Tune; the exported model comes from rank zero's node in one more Ray Train report
(:class:`.callbacks.ExportReport`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils import fs
from .config import EPOCHS_TRAINED
from .space import format_value


@dataclass
class TrialSetup:
    """What every trial of a search shares (sent once through the object store).

    Args:
        cli: import path of the LightningCLI class.
        config_yaml: the resolved ``fit`` config (files + overrides) as YAML text.
        search_name: the search's name: the W&B group of every trial.
        max_epochs: epochs per trial (ASHA's ``max_t``).
        workers: processes per trial (> 1: Ray Train workers, on any nodes).
        gpus_per_worker: GPUs per process (0: CPU).
        threads_per_worker: ``OMP_NUM_THREADS`` of each process (its CPUs).
        workdir: directory the trials run in, so that relative paths of the config mean what
            they mean on the driver; ``None`` (or missing on the trial's node): the trial dir.
        env: extra environment variables for the training process.
        default_env: environment variables for the training process where the trial's node
            has none of that name (the driver's S3 endpoint: a cluster's own wins).
        export_files: files the training writes in ``default_root_dir`` at the end (the
            exported model) that go into the trial's final checkpoint.
        storage_path: the search's Ray storage path (multi-worker trials keep their Ray Train
            run in ``<it>/<search_name>/train_runs/<trial id>``, where every worker reaches it).
        storage_filesystem: its pyarrow file system (``None``: local).
    """

    cli: str
    config_yaml: str
    search_name: str
    max_epochs: int
    workers: int = 1
    gpus_per_worker: float = 0
    threads_per_worker: int = 1
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    default_env: dict[str, str] = field(default_factory=dict)
    export_files: tuple[str, ...] = ("model.pt", "model.json", "model.onnx")
    storage_path: str | None = None
    storage_filesystem: Any = None


def trial_config(setup: TrialSetup, trial_dir: Path, trial_name: str) -> dict[str, Any]:
    """The trial's config: the search's, with its own output dirs, logger, devices, epochs."""
    import yaml

    config = yaml.safe_load(setup.config_yaml)
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(trial_dir)
    trainer["max_epochs"] = setup.max_epochs
    trainer["enable_progress_bar"] = False
    trainer["accelerator"] = "gpu" if setup.gpus_per_worker else "cpu"
    trainer["devices"] = setup.workers
    trainer["num_nodes"] = 1
    if setup.workers > 1 and trainer.get("strategy") in (None, "auto"):
        trainer["strategy"] = "ddp"
    loggers = trainer.get("logger")
    loggers = loggers if isinstance(loggers, list) else [loggers]
    trainer["logger"] = [_trial_logger(lg, setup, trial_dir, trial_name) for lg in loggers]
    # explicit output dirs would make trials overwrite each other: use default_root_dir
    for callback in trainer.get("callbacks") or []:
        if isinstance(callback, dict) and "dirpath" in (callback.get("init_args") or {}):
            callback["init_args"]["dirpath"] = None
    return config


def _trial_logger(logger: Any, setup: TrialSetup, trial_dir: Path, name: str) -> dict:
    """W&B: the search is the group, the trial the run name; anything else: CSV per trial."""
    if isinstance(logger, dict) and "Wandb" in str(logger.get("class_path", "")):
        args = dict(logger.get("init_args") or {})
        args.update(group=setup.search_name, name=name, save_dir=str(trial_dir))
        return {**logger, "init_args": args}
    csv = "lightning.pytorch.loggers.CSVLogger"
    return {"class_path": csv, "init_args": {"save_dir": str(trial_dir), "name": "logs"}}


def run_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """The Ray Tune function trainable: ``params`` are the trial's sampled dotted keys."""
    import yaml
    from ray import tune

    start = time.time()
    context = tune.get_context()
    trial_dir = Path(context.get_trial_dir())
    trial_dir.mkdir(parents=True, exist_ok=True)
    name = context.get_trial_name()
    report_file = trial_dir / "report.jsonl"
    report_file.unlink(missing_ok=True)
    checkpoint_dir = trial_dir / "epoch_checkpoints"
    config_file = trial_dir / "trial.yaml"
    config_file.write_text(yaml.safe_dump(trial_config(setup, trial_dir, name), sort_keys=False))

    sampled = [f"--{key}={format_value(value)}" for key, value in params.items()]
    if setup.workers > 1:
        return _run_distributed(setup, trial_dir, name, sampled, report_file, checkpoint_dir, start)
    args = ["fit", "--config", str(config_file), *sampled]
    restored = tune.get_checkpoint()
    if restored is not None:  # a retried failure or a resumed search: go on from the last epoch
        local = trial_dir / "restored"
        shutil.rmtree(local, ignore_errors=True)
        restored.to_directory(str(local))
        args.append(f"--ckpt_path={local / 'last.ckpt'}")
        from ..distributed.checkpoints import restore_kept

        restore_kept(local)  # ModelCheckpoint's files a later save deleted before the failure
    cmd = [sys.executable, "-m", "aframe_lib.tune.worker", "--cli", setup.cli]
    cmd += ["--report-file", str(report_file), "--checkpoint-dir", str(checkpoint_dir), "--"]
    cmd += args
    env = {**setup.default_env, **os.environ, **setup.env, "PYTHONUNBUFFERED": "1"}
    env["OMP_NUM_THREADS"] = str(max(1, setup.threads_per_worker))
    workdir = setup.workdir if setup.workdir and Path(setup.workdir).is_dir() else trial_dir

    log = trial_dir / "trial.log"
    with open(log, "a") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            reported, held, _ = _relay(_follow(report_file, lambda: proc.poll() is not None), start)
        finally:
            if proc.poll() is None:  # stopped by Ray or failed here: take the children along
                _kill_group(proc)
    if proc.returncode != 0:
        lines = log.read_text(errors="replace").splitlines(keepends=True)
        tail = "".join(lines[-40:])
        # the first line says why (the summary shows only that): the training's own exception
        raise RuntimeError(
            f"trial {name}: training exited with {proc.returncode}"
            f"{_reason(lines, proc.returncode)}; see its trial.log\n{tail}"
        )
    exported = [trial_dir / f for f in setup.export_files if (trial_dir / f).is_file()]
    _final_report(name, log, reported, held, exported, checkpoint_dir, start)


def _final_report(name, log, reported, held, exported, checkpoint_dir: Path, start) -> None:
    final = held or reported
    if final is None:
        raise RuntimeError(
            f"trial {name}: the training reported no validation epoch (see {log}); "
            "does the model run validation and log the search metric?"
        )
    if held is None:  # stopped early by a callback after its last report: one more report
        final = {**final, "checkpoint": str(checkpoint_dir / "final")}
    _report(final, start, exported)


def _relay(records: Iterator[dict], start: float) -> tuple[dict | None, dict | None, str | None]:
    """Report each epoch's record to Tune, holding back one that may be the last (so that the
    final report carries the exported model); ``(last reported, held, export directory)``."""
    reported: dict[str, Any] | None = None
    held: dict[str, Any] | None = None
    export_dir = None
    for record in records:
        if record.get("export"):  # a multi-worker trial's exported model (after its last epoch)
            export_dir = record["checkpoint"]
            continue
        if held is not None:
            _report(held, start)
            reported = held
            held = None
        if record["last"]:
            held = record
        else:
            _report(record, start)
            reported = record
    return reported, held, export_dir


def _run_distributed(setup: TrialSetup, trial_dir: Path, name: str, sampled: list[str],
                     report_file: Path, checkpoint_dir: Path, start: float) -> None:  # fmt: skip
    """A multi-worker trial: the distributed engine's ``TorchTrainer`` run inside this trial."""
    import threading

    import yaml
    from ray import tune

    from ..distributed.trainer import (
        DistributedConfig,
        _worker_error,
        make_trainer,
        worker_setup,
    )
    from .callbacks import ExportReport

    trial_id = tune.get_context().get_trial_id()
    settings = DistributedConfig(
        num_workers=setup.workers,
        gpus_per_worker=setup.gpus_per_worker,
        cpus_per_worker=max(1, setup.threads_per_worker),
        name=trial_id,
        max_failures=0,  # Tune retries the trial (tune.max_failures); the run resumes then
        checkpoints_to_keep=1,
    )
    storage = f"{(setup.storage_path or str(trial_dir)).rstrip('/')}/{setup.search_name}/train_runs"
    config_yaml = yaml.safe_dump(trial_config(setup, trial_dir, name), sort_keys=False)
    loop_config = worker_setup(setup.cli, config_yaml, settings, f"{storage}/{trial_id}")
    loop_config["env"].update(setup.env)
    loop_config["default_env"] = {**setup.default_env, **loop_config["default_env"]}
    loop_config["env"]["OMP_NUM_THREADS"] = str(max(1, setup.threads_per_worker))
    if setup.workdir:
        loop_config["workdir"] = setup.workdir
    loop_config["args"] = sampled
    loop_config["callbacks"] = [ExportReport(setup.export_files)]
    writer = _report_writer(report_file, checkpoint_dir, setup.max_epochs)
    trainer = make_trainer(loop_config, settings, storage, setup.storage_filesystem, [writer])
    log = trial_dir / "trial.log"
    with open(log, "a") as out:
        out.write(f"Ray Train run {storage}/{trial_id}: {setup.workers} workers, "
                  f"fit --config trial.yaml {' '.join(sampled)}\n")  # fmt: skip
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the trial's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name=f"ray-train-{trial_id}", daemon=True)
    thread.start()
    reported, held, export_dir = _relay(_follow(report_file, lambda: not thread.is_alive()), start)
    if "error" in outcome:
        exc = outcome["error"]
        ours = _worker_error(exc)
        raise RuntimeError(f"trial {name}: training failed ({ours or exc})") from exc
    exported = [p for p in Path(export_dir).iterdir() if p.is_file()] if export_dir else []
    _final_report(name, log, reported, held, exported, checkpoint_dir, start)
    if export_dir:
        shutil.rmtree(export_dir, ignore_errors=True)


def _report_writer(report_file: Path, checkpoint_dir: Path, max_epochs: int) -> Any:
    """A Ray Train callback (run by the run's controller, on the trial's node) that writes one
    JSON line per Ray Train report, with its checkpoint copied into ``checkpoint_dir``."""
    from ray.train import UserCallback

    class TrialReportWriter(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            import math

            values = dict(metrics[0]) if metrics else {}
            export = bool(values.pop("aframe_export", 0))
            epoch = int(values.get("epoch", 0))
            directory = checkpoint_dir / ("export" if export else f"epoch={epoch:04d}")
            shutil.rmtree(directory, ignore_errors=True)
            if checkpoint is not None:
                fs.retry(lambda: checkpoint.to_directory(str(directory)), attempts=5, delay=1.0)
            directory.mkdir(parents=True, exist_ok=True)
            numbers = {
                k: float(v) for k, v in values.items()
                if isinstance(v, int | float) and math.isfinite(v) and k not in ("epoch", "step")
            }  # fmt: skip
            record = {
                "epoch": epoch,
                EPOCHS_TRAINED: epoch + 1,  # Ray Train reports at each epoch's end
                "metrics": numbers,
                "checkpoint": str(directory),
                "last": epoch + 1 >= max_epochs,
                "time": time.time(),
                "export": export,
            }
            with open(report_file, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())

    return TrialReportWriter()


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(:.*)?$")


def _reason(lines: list[str], returncode: int) -> str:
    """`` (ValueError: ...)``: the last exception line of the training's log, or its signal."""
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line.strip()):
            return f" ({line.strip()[:300]})"
    return f" (killed by signal {-returncode})" if returncode < 0 else ""


def _follow(path: Path, finished: Callable[[], bool], poll: float = 0.2) -> Iterator[dict]:
    """The JSON lines appended to ``path`` until ``finished()`` (and any left then)."""
    offset = 0
    while True:
        done = finished()
        if path.exists():
            with open(path) as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            offset += len(complete.encode())
            for line in complete.splitlines():
                if line.strip():
                    yield json.loads(line)
        if done:
            return
        time.sleep(poll)


def _report(record: dict[str, Any], start: float, extra: list[Path] = ()) -> None:
    from ray import tune

    directory = Path(record["checkpoint"])
    directory.mkdir(parents=True, exist_ok=True)
    for path in extra:
        shutil.copy2(path, directory / path.name)
    metrics = {**record["metrics"], "epoch": record["epoch"]}
    metrics[EPOCHS_TRAINED] = record[EPOCHS_TRAINED]
    # the trial's own clock: when it started and when this epoch ended (epoch seconds)
    metrics.update(trial_start_time=start, report_time=record["time"])
    checkpoint = tune.Checkpoint.from_directory(str(directory))
    fs.retry(lambda: tune.report(metrics, checkpoint=checkpoint), attempts=5, delay=1.0)
    shutil.rmtree(directory, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
