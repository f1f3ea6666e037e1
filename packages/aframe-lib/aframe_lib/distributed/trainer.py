"""A LightningCLI ``fit`` over N Ray Train workers: settings, checks, the driver, the worker loop.

What runs where:

- the driver (:func:`run_fit`) resolves the training config with the CLI's own parser (a bad
  config fails before Ray), checks the storage, connects to Ray (a local instance, or
  ``ray://HOST:10001`` with the retries and TCP probe of the Tune search), checks that the N
  workers can be placed on the cluster's nodes, then runs a ``ray.train.torch.TorchTrainer``;
- each worker (:func:`train_loop`) runs the very same CLI ``fit`` on the resolved config, its
  trainer given Ray's strategy (``RayDDPStrategy``: DDP over the process group that Ray Train
  set up, gloo on CPU, NCCL on GPU), cluster environment (``RayLightningEnvironment``: rank
  and world size from Ray) and ``RayTrainReportCallback`` (each epoch's checkpoint and metrics
  to the run's storage, reported after ``ModelCheckpoint`` judged that epoch and carrying its
  kept files: :mod:`.checkpoints`), checked by ``prepare_trainer``.

Everything else is the one-node ``fit``: the data module splits its data by the trainer's rank
(each worker reads its own share of the training chunks and validation batches, equal counts per
rank), the loggers write on rank zero only (one W&B run for the job), ``ModelCheckpoint`` keeps
the best checkpoint (in ``<default_root_dir>/checkpoints`` unless its ``dirpath`` is set) and
``ExportModel`` exports it on rank zero into ``default_root_dir``. A
restarted or resumed run goes on logging into the same W&B run (:func:`worker_setup`).

Resume: the run's checkpoints live in ``<storage_dir>/<name>`` (local or ``s3://``). A failed
worker restarts the whole group from the latest checkpoint (``FailureConfig.max_failures``);
running the same command again after the driver died finds the run there and continues from its
latest checkpoint (Ray Train restores its checkpoint manager from storage). For several nodes,
``default_root_dir`` (where the best checkpoint and the exported model go) and the data should
be on storage every node reaches (``s3://`` or a shared file system).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils import fs
from ..utils.errors import AframeError, ConfigError, InputError

logger = logging.getLogger(__name__)

PREFIX = "--distributed."


class ClusterError(InputError, ConnectionError):
    """The Ray cluster cannot be reached, or cannot place the workers asked for (exit 2)."""


@dataclass
class DistributedConfig:
    """The ``--distributed.*`` settings of a data-parallel ``fit``.

    Args:
        num_workers: Training processes (Ray Train workers, one DDP rank each), on any nodes.
        gpus_per_worker: GPUs per worker; 0 trains on CPU (gloo).
        cpus_per_worker: CPUs per worker (its torch threads).
        address: Ray cluster (``ray://HOST:10001``, or ``HOST:6379``/``auto`` from a cluster
            node); ``None``: start a local Ray instance.
        storage_dir: Where the run's checkpoints live, local directory or
            ``s3://bucket/prefix``; must be reachable from every worker. ``None``:
            ``<trainer.default_root_dir>/ray_train``.
        name: The run's directory under ``storage_dir``; rerunning with the same name resumes.
        max_failures: Times the worker group is restarted from the latest checkpoint after a
            worker failed (-1: without limit).
        checkpoints_to_keep: Latest Ray Train checkpoints kept (the best model is kept by the
            config's ``ModelCheckpoint``).
        connect_timeout: Seconds the first connection to ``address`` is retried while nothing
            answers there (a cluster still starting).
        num_cpus: CPUs of the local Ray instance (``None``: all of this machine's).
        num_gpus: GPUs of the local Ray instance (``None``: all of this machine's).
        temp_dir: Session directory of the local Ray instance (``None``: Ray's default).
    """

    num_workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: int = 1
    address: str | None = None
    storage_dir: str | None = None
    name: str = "fit"
    max_failures: int = 2
    checkpoints_to_keep: int = 2
    connect_timeout: float = 30.0
    num_cpus: int | None = None
    num_gpus: int | None = None
    temp_dir: str | None = None

    def __post_init__(self) -> None:
        for key in ("num_workers", "cpus_per_worker", "checkpoints_to_keep"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{PREFIX}{key}={getattr(self, key)}: must be at least 1")
        if self.gpus_per_worker < 0:
            raise ConfigError(
                f"{PREFIX}gpus_per_worker={self.gpus_per_worker:g}: must be >= 0 (0: CPU)"
            )
        if self.max_failures < -1:
            raise ConfigError(f"{PREFIX}max_failures={self.max_failures}: give -1 or more")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ConfigError(f"{PREFIX}name={self.name!r}: give a plain directory name")
        if self.connect_timeout < 0:
            raise ConfigError(f"{PREFIX}connect_timeout={self.connect_timeout:g}: must be >= 0")

    def worker_resources(self) -> dict[str, float]:
        """One worker's Ray resources."""
        need = {"CPU": float(self.cpus_per_worker)}
        if self.gpus_per_worker:
            need["GPU"] = float(self.gpus_per_worker)
        return need


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(--distributed.* arguments, the rest)`` of a command line (``--k=v`` or ``--k v``)."""
    ours, rest = [], []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith(PREFIX):
            takes_next = "=" not in token and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            ours += argv[i : i + 1 + takes_next]
            i += 1 + takes_next
        else:
            rest.append(token)
            i += 1
    return ours, rest


def parse_settings(args: list[str]) -> DistributedConfig:
    """The :class:`DistributedConfig` of ``--distributed.*`` arguments (jsonargparse types).

    Raises:
        argparse.ArgumentError: an unknown key or a value of the wrong type (exit status 2).
        ConfigError: a value out of range.
    """
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="aframe-train fit --distributed.*", exit_on_error=False)
    parser.add_class_arguments(DistributedConfig, "distributed", fail_untyped=False)
    cfg = parser.parse_args(args)
    return DistributedConfig(**dict(cfg.distributed))


# --- the driver ------------------------------------------------------------------------------


def connect(settings: DistributedConfig) -> bool:
    """``ray.init`` (local, or ``settings.address`` with retries); whether this call started Ray.

    Raises:
        ClusterError: nothing answers at ``address`` within ``connect_timeout`` seconds.
    """
    from ..utils.ray_connect import connect as ray_connect

    try:
        return ray_connect(settings, PREFIX)
    except ConnectionError as exc:
        raise ClusterError(str(exc)) from None


def check_placement(settings: DistributedConfig) -> None:
    """Refuse a run whose workers the cluster's live nodes cannot all hold at once.

    Each worker needs :meth:`DistributedConfig.worker_resources` on one node; this counts how
    many fit on each node and compares the sum with ``num_workers``. (Ray Train would otherwise
    wait for resources without end.)

    Raises:
        ClusterError: naming what one worker needs, what each node has, and the fix.
    """
    from ..utils.ray_connect import worker_places

    need = settings.worker_resources()
    places, nodes = worker_places(need)
    described = [_fmt(node) for node in nodes]
    if places < settings.num_workers:
        where = settings.address or "the local Ray instance"
        raise ClusterError(
            f"{PREFIX}num_workers={settings.num_workers}: each worker needs "
            f"{_fmt(need)} on one node, and the {len(nodes)} node(s) of {where} "
            f"({', '.join(described) or 'none'}) hold {places}; lower {PREFIX}num_workers, "
            f"{PREFIX}cpus_per_worker or {PREFIX}gpus_per_worker, or add nodes"
        )
    print(f"{settings.num_workers} worker(s), each {_fmt(need)}", flush=True)


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"


def worker_setup(
    cli: str, config_yaml: str, settings: DistributedConfig, run_dir: str
) -> dict[str, Any]:
    """What :func:`train_loop` gets (``train_loop_config``): the CLI, the config, the env.

    W&B: rank zero logs (Lightning's loggers are rank-zero only); a restarted worker group or a
    resumed run logs into the same W&B run, whose id comes from the run's directory
    (``WANDB_RUN_ID``, ``WANDB_RESUME=allow``, unless set here already).
    """
    import hashlib

    from ..utils.ray_connect import DEFAULT_ENV, FORWARDED_ENV

    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if "WANDB_RUN_ID" not in os.environ:
        env["WANDB_RUN_ID"] = hashlib.sha1(run_dir.encode()).hexdigest()[:16]
        env["WANDB_RESUME"] = os.environ.get("WANDB_RESUME", "allow")
    return {
        "cli": cli,
        "config_yaml": config_yaml,
        "accelerator": "gpu" if settings.gpus_per_worker else "cpu",
        "workdir": os.getcwd(),
        "env": env,
        "default_env": {k: os.environ[k] for k in DEFAULT_ENV if k in os.environ},
    }


def make_trainer(setup: dict[str, Any], settings: DistributedConfig, storage_path: str,
                 storage_fs: Any, callbacks: list | tuple = ()) -> Any:  # fmt: skip
    """The ``TorchTrainer`` of a run (also used inside a multi-worker Tune trial: one code path);
    ``callbacks``: Ray Train callbacks of the run (a trial's report writer)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        train_loop,
        train_loop_config=setup,
        scaling_config=ScalingConfig(
            num_workers=settings.num_workers,
            use_gpu=bool(settings.gpus_per_worker),
            resources_per_worker=settings.worker_resources(),
        ),
        run_config=RunConfig(
            name=settings.name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=settings.checkpoints_to_keep),
            callbacks=list(callbacks) or None,
        ),
    )


def resolved_config(training: Any) -> tuple[str, str]:
    """``(config YAML, default_root_dir)``: the resolved ``fit`` config with an absolute
    ``default_root_dir`` (the workers' working directory may not be the driver's)."""
    import yaml

    config = yaml.safe_load(training.yaml)
    trainer = config.setdefault("trainer", {})
    root = trainer.get("default_root_dir") or os.getcwd()
    if not fs.is_remote(root):
        root = str(Path(root).expanduser().resolve())
    trainer["default_root_dir"] = root
    return yaml.safe_dump(config, sort_keys=False), root


def run_fit(cli_cls: str | type, args: list[str], settings: DistributedConfig) -> Any:
    """Train ``fit args`` (``--config`` files and overrides) over ``settings.num_workers`` Ray
    workers; resumes the run in ``<storage_dir>/<name>`` if there is one. Returns Ray's Result.

    Raises:
        TrainingConfigError: the config does not parse (before Ray starts).
        StorageError: the storage cannot be reached.
        ClusterError: no cluster at the address, or the workers do not fit on it.
        AframeError: a worker's own error (e.g. bad data) once retries are used up.
    """
    from ..tune.storage import ray_storage
    from ..tune.training import TrainingConfig, cli_path

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    training = TrainingConfig(cli_cls, [], args)  # a bad config fails here, before Ray
    config_yaml, root = resolved_config(training)
    storage_dir = settings.storage_dir or fs.join(root, "ray_train")
    storage_path, storage_fs = ray_storage(storage_dir, f"{PREFIX}storage_dir")
    run_dir = fs.join(storage_dir if fs.is_remote(storage_dir) else storage_path, settings.name)
    setup = worker_setup(cli_path(training.cli_cls), config_yaml, settings, run_dir)
    started = connect(settings)
    try:
        check_placement(settings)
        print(f"Ray Train run {run_dir} (rerun the same command to resume it)", flush=True)
        trainer = make_trainer(setup, settings, storage_path, storage_fs)
        try:
            result = trainer.fit()
        except Exception as exc:
            ours = _worker_error(exc)
            if ours is None:
                raise
            raise ours from exc
        print(f"finished; the model and checkpoints are in {root}", flush=True)
        return result
    finally:
        if started:
            import ray

            ray.shutdown()


def _worker_error(exc: BaseException) -> AframeError | None:
    """A worker's own aframe error (bad input found on the worker) inside Ray's error."""
    failures = getattr(exc, "worker_failures", None) or {}
    for error in failures.values():
        seen = error
        while seen is not None:
            if isinstance(seen, AframeError):
                return seen
            seen = seen.__cause__ or getattr(seen, "cause", None)
    return None


# --- on each worker --------------------------------------------------------------------------


def ray_cli(cli_cls: type, accelerator: str, extra_callbacks: list | tuple = ()) -> type:
    """``cli_cls`` whose trainer runs under Ray Train (strategy, environment, report callback),
    with ``extra_callbacks`` (a Tune trial's export report) after Ray's."""

    class RayTrainCLI(cli_cls):  # type: ignore[misc, valid-type]
        def _instantiate_trainer(self, config, callbacks):
            from lightning.pytorch.plugins.environments import ClusterEnvironment
            from ray.train.lightning import (
                RayDDPStrategy,
                RayLightningEnvironment,
                prepare_trainer,
            )

            plugins = config.get("plugins") or []
            plugins = plugins if isinstance(plugins, list) else [plugins]
            plugins = [p for p in plugins if not isinstance(p, ClusterEnvironment)]
            config = {
                **config,
                "strategy": RayDDPStrategy(),
                "plugins": [*plugins, RayLightningEnvironment()],
                "accelerator": accelerator,
                "devices": "auto",  # the GPUs Ray made visible to this worker, or one CPU
                "num_nodes": 1,
            }
            from .checkpoints import default_model_checkpoint, reporter, stable_dirpath

            # Ray's report after ModelCheckpoint's save of the same epoch (see .checkpoints)
            default = default_model_checkpoint(config, callbacks)
            report = reporter(config.get("enable_checkpointing"))
            callbacks = [*callbacks, *default, report, *extra_callbacks]
            trainer = super()._instantiate_trainer(config, callbacks)
            stable_dirpath(trainer)
            return prepare_trainer(trainer)

    return RayTrainCLI


def train_loop(setup: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: the CLI's ``fit`` on this worker's rank, from the
    run's latest checkpoint when there is one (a restarted group, a resumed run).

    Optional keys a Tune trial adds to ``setup``: ``args`` (its sampled ``--key=value``
    overrides, after the config) and ``callbacks`` (Lightning callbacks for its trainer)."""
    import ray.train
    from ray.train.lightning import RayTrainReportCallback

    from ..tune.training import import_cli
    from .checkpoints import restore_kept

    for key, value in setup["default_env"].items():
        os.environ.setdefault(key, value)
    os.environ.update(setup["env"])
    if setup["workdir"] and Path(setup["workdir"]).is_dir():
        os.chdir(setup["workdir"])  # relative paths of the config mean what they do there
    tmp = tempfile.mkdtemp(prefix="aframe-ray-train-")
    try:
        config = Path(tmp, "fit.yaml")
        config.write_text(setup["config_yaml"])
        args = ["fit", "--config", str(config), *setup.get("args", ())]
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            local = Path(tmp, "restored")
            fs.retry(lambda: checkpoint.to_directory(str(local)), attempts=5, delay=1.0)
            args.append(f"--ckpt_path={local / RayTrainReportCallback.CHECKPOINT_NAME}")
            if ray.train.get_context().get_world_rank() == 0:
                restore_kept(local)  # ModelCheckpoint's files since deleted or out of reach
            print(f"resuming from {checkpoint.path}", flush=True)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = ray_cli(import_cli(setup["cli"]), setup["accelerator"], setup.get("callbacks", ()))
        cli(args=args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
