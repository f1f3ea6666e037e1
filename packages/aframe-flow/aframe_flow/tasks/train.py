"""``Train``: ``aframe-train fit`` on the data of :class:`~aframe_flow.tasks.data.Data`.

The task's parameters become command-line overrides of the training config; the command runs on
the host or in the train image (``--image``), with ``--gpus`` made visible and DDP across them
when there are several. The output is the exported model (``model.pt`` + ``model.json``, both
written atomically by aframe-lib's exporter at the end of training), by default in
``<paths.base_dir>/run/<data key>/<config name>-<hash>``: the hash covers the training config's
content, ``--train-args`` and an explicit ``--data-dir``, so changing any of them (or a data
parameter) trains a new model, and rerunning with the same ones finds the finished run.
Where it runs (``--gpus``, ``--image``, ``--dev``, ``--num-workers`` ...) and how it logs
(``--use-wandb`` ...) do not key the location.

Beyond one machine: ``--num-workers N`` trains the same config data-parallel over N Ray Train
workers (``aframe-train fit ... --distributed.num_workers=N``, see aframe_lib.distributed):

- default: a local Ray instance that the command starts (``--gpus`` are its GPUs, one per worker);
- ``--address ray://HOST:10001``: an existing cluster;
- ``--kubernetes``: a cluster that this task starts on Kubernetes (as for Tune: settings in
  ``[kubernetes]``/``[ray_head]``/``[ray_worker]``), waits for, hands to the command as
  ``--distributed.address`` and deletes afterwards, also when the training fails; the run
  directory must then be ``s3://`` (the pods cannot write to this machine's disk).

Rerunning an interrupted distributed training resumes it from its latest checkpoint (kept in
``<run dir>/ray_train``).
"""

from __future__ import annotations

import json
import logging
import os
import re

import luigi

from .. import config
from ..base import DataParameters, RayClusterTask, SandboxTask, digest, file_digest
from ..parameters import ParameterError, PathParameter
from ..targets import file_target, join
from .data import Data, DataTask

logger = logging.getLogger(__name__)


def resolve_config(path: str, flag: str = "config") -> str:
    """The absolute path of an existing config file (a :class:`PathParameter`'s value is already
    absolute: relative to the ``.cfg`` that set it, or to the working directory).

    Raises:
        ParameterError: when there is no such file.
    """
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise ParameterError(
            f"--{flag}={path}: no such file (a relative path in a .cfg is read beside that "
            "file, on the command line from the working directory); give the path of one such "
            "as projects/quickstart/train.yaml"
        )
    return full


class TrainBase(DataParameters, SandboxTask):
    """Parameters of a training run (shared by Train and, later, Tune)."""

    exclude_index = True

    data_image = DataTask.data_image
    config = PathParameter(
        description="training config (YAML) given to aframe-train --config, e.g. "
        "projects/quickstart/train.yaml"
    )
    run_dir = PathParameter(
        default="",
        description="run directory, local or s3://, used as it is; empty: "
        "<paths.base_dir>/run/<data key>/<config name>-<hash> (keyed by the parameters)",
    )
    train_args = luigi.ListParameter(
        default=[],
        description='more aframe-train overrides as a JSON list, e.g. ["--trainer.max_epochs=1"]',
    )
    use_wandb = luigi.BoolParameter(default=False, description="log to Weights & Biases")
    wandb_name = luigi.Parameter(default="", description="W&B run name; empty: the task id")
    wandb_group = luigi.Parameter(default="", description="W&B group; empty: wandb_settings.group")
    wandb_tags = luigi.Parameter(
        default="", description="comma-separated W&B tags; empty: wandb_settings.tags"
    )
    wandb_project = luigi.Parameter(
        default="", description="W&B project; empty: wandb_settings.project"
    )
    wandb_entity = luigi.Parameter(
        default="", description="W&B entity; empty: wandb_settings.entity"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config_path = resolve_config(self.config)

    @property
    def train_key(self) -> str:
        """``<config name>-<hash of the config's content, --train-args, explicit --data-dir>``."""
        stem = os.path.splitext(os.path.basename(self.config_path))[0]
        return f"{stem}-{digest(file_digest(self.config_path), self.train_args, self.data_dir)}"

    def store_parts(self) -> tuple[str, ...]:
        return ("run", self.data_key, self.train_key)

    def explicit_dir(self) -> str:
        return self.run_dir

    @property
    def run_root(self) -> str:
        return self.default_dir(self.run_dir, *self.store_parts())

    def requires(self):
        return Data.req(self)

    def binds(self) -> list[str]:
        return [self.data_root, self.run_root, os.path.dirname(self.config_path)]

    def record_code(self, where: str) -> None:
        """Write ``code.json`` in ``where`` (beside the model it trained): the hash of the code
        that trained it (:mod:`~aframe_flow.code`). Training outputs stay keyed by their
        parameters (a code change does not force a retrain); this says what made them."""
        from ..code import source_digest
        from ..targets import write_bytes_atomic

        record = {"code_hash": source_digest(self.image_path, self.dev)}
        path = join(where, "code.json")
        try:
            write_bytes_atomic(path, json.dumps(record).encode())
        except Exception as exc:  # the training itself is done: say so, do not fail it
            logger.warning("could not record the code hash in %s (%s: %s)", path,
                           type(exc).__name__, exc)  # fmt: skip

    def wandb_args(self) -> list[str]:
        settings = config.wandb_settings()
        tags = [t for t in (self.wandb_tags or settings.tags).split(",") if t.strip()]
        args = [
            "--trainer.logger=WandbLogger",
            f"--trainer.logger.save_dir={self.run_root}",
            f"--trainer.logger.name={self.wandb_name or self.task_id}",
            f"--trainer.logger.project={self.wandb_project or settings.project}",
        ]
        if entity := self.wandb_entity or settings.entity:
            args.append(f"--trainer.logger.entity={entity}")
        if group := self.wandb_group or settings.group:
            args.append(f"--trainer.logger.group={group}")
        if tags:
            args.append(f"--trainer.logger.tags=[{','.join(t.strip() for t in tags)}]")
        return args

    def train_overrides(self) -> list[str]:
        """Overrides that point aframe-train at this task's data, run directory and devices."""
        args = [
            "--config", self.config_path,
            f"--seed_everything={self.seed}",
            f"--data.init_args.ifos=[{','.join(self.ifos)}]",
            f"--data.init_args.sample_rate={self.sample_rate:g}",
            f"--data.init_args.data_dir={self.data_root}",
            "--data.init_args.synthetic=null",  # the data come from the data tasks
            f"--trainer.default_root_dir={self.run_root}",
        ]  # fmt: skip
        if self.use_wandb:
            args += self.wandb_args()
        else:
            args += [
                "--trainer.logger=CSVLogger",
                f"--trainer.logger.save_dir={self.run_root}",
                "--trainer.logger.name=logs",
            ]
        return args + self.device_args() + [str(a) for a in self.train_args]

    def device_args(self) -> list[str]:
        """The trainer's devices: ``--gpus`` (DDP when several); none for CPU."""
        if not self.gpus:
            return []
        # CUDA_VISIBLE_DEVICES maps the chosen GPUs to 0..n-1 inside the process
        args = ["--trainer.accelerator=gpu", f"--trainer.devices={len(self.gpus)}"]
        if len(self.gpus) > 1:
            args.append("--trainer.strategy=ddp")
        return args


_RAY_ADDRESS = re.compile(r"^ray://[^\s:/]+:\d+$")


class Train(TrainBase, RayClusterTask):
    """Train a detector with ``aframe-train fit``; the output is its exported model."""

    num_workers = luigi.IntParameter(
        default=0,
        description="Ray Train workers to train data-parallel over (on any nodes of the Ray "
        "cluster); 0: a one-node fit (DDP over --gpus)",
    )
    gpus_per_worker = luigi.FloatParameter(
        default=0.0,
        description="with --address/--kubernetes: GPUs per Ray Train worker (0: CPU); with a "
        "local Ray instance each worker gets one of --gpus",
    )
    address = luigi.Parameter(
        default="",
        description="with --num-workers: the Ray cluster, ray://HOST:10001; empty: a local Ray "
        "instance (or the Kubernetes cluster of --kubernetes)",
    )
    kubernetes = luigi.BoolParameter(
        default=False,
        description="with --num-workers: start a Ray cluster on Kubernetes for this training and "
        "delete it afterwards (settings: [kubernetes], [ray_head], [ray_worker])",
    )
    external = luigi.BoolParameter(
        default=False,
        description="with --kubernetes: reach the Ray head through a LoadBalancer (when this "
        "task runs outside the Kubernetes cluster)",
    )
    distributed_args = luigi.ListParameter(
        default=[],
        description="more --distributed.* settings as a JSON list, e.g. "
        '["--distributed.cpus_per_worker=4", "--distributed.max_failures=5"]',
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # every check here runs when the task is built: before any upstream task or cluster
        if self.num_workers < 0:
            raise ParameterError(f"--num-workers={self.num_workers}: give 0 (one node) or more")
        ray_only = [f for f, v in (("--address", self.address), ("--kubernetes", self.kubernetes),
                                   ("--gpus-per-worker", self.gpus_per_worker),
                                   ("--distributed-args", self.distributed_args)) if v]  # fmt: skip
        if ray_only and not self.num_workers:
            raise ParameterError(
                f"{ray_only[0]} applies to a Ray Train run: add --num-workers N (e.g. "
                "--num-workers 4; luigi's own --workers is its scheduler's)"
            )
        if self.gpus_per_worker < 0:
            raise ParameterError(f"--gpus-per-worker={self.gpus_per_worker:g}: must be >= 0")
        if self.address and not _RAY_ADDRESS.match(self.address):
            raise ParameterError(
                f"--address={self.address}: expected a Ray client address ray://HOST:PORT, "
                "e.g. ray://10.0.0.5:10001 (leave it empty for a local Ray instance)"
            )
        if self.address and self.kubernetes:
            raise ParameterError(
                "--address and --kubernetes exclude each other: use an existing cluster "
                "(--address) or let the task start one (--kubernetes)"
            )
        if self.external and not self.kubernetes:
            raise ParameterError("--external only applies with --kubernetes")
        if self.num_workers and self.gpus and (self.address or self.kubernetes):
            raise ParameterError(
                f"--gpus={','.join(map(str, self.gpus))}: selects GPUs of the local Ray "
                "instance; a cluster's GPUs are its workers' (--gpus-per-worker)"
            )
        if self.num_workers and self.gpus and len(self.gpus) < self.num_workers:
            raise ParameterError(
                f"--num-workers={self.num_workers} on a local Ray instance with --gpus="
                f"{','.join(map(str, self.gpus))}: one GPU per worker; give as many GPUs"
            )
        if self.kubernetes and not self.run_root.startswith("s3://"):
            raise ParameterError(
                f"--kubernetes: the run directory {self.run_root} must be s3://..., since the "
                "cluster's pods cannot write to this machine's disk (--run-dir, or "
                "paths.base_dir)"
            )

    def device_args(self) -> list[str]:
        # a Ray Train run: Ray sets each worker's devices and strategy
        return [] if self.num_workers else super().device_args()

    def distributed(self, address: str = "") -> list[str]:
        """The ``--distributed.*`` arguments; ``address`` is the cluster's (empty: local Ray)."""
        if not self.num_workers:
            return []
        args = [f"--distributed.num_workers={self.num_workers}"]
        if address:
            args.append(f"--distributed.address={address}")
            if self.gpus_per_worker:
                args.append(f"--distributed.gpus_per_worker={self.gpus_per_worker:g}")
        else:  # the local instance gets exactly the GPUs asked for (none: CPU), like one node
            args.append(f"--distributed.num_gpus={len(self.gpus)}")
            if self.gpus:
                args.append("--distributed.gpus_per_worker=1")
        return args + [str(a) for a in self.distributed_args]

    def command(self, address: str = "") -> list[str]:
        address = address or self.address
        overrides = [*self.train_overrides(), *self.distributed(address)]
        return [*self.executable("aframe-train"), "fit", *overrides]

    def output(self):
        return {
            "model": file_target(join(self.run_root, "model.pt")),
            "info": file_target(join(self.run_root, "model.json")),
        }

    def run_training(self, address: str = "") -> None:
        # RAY_* (e.g. RAY_AUTH_MODE) reach the driver also inside an image (--cleanenv)
        env = {k: v for k, v in os.environ.items() if k.startswith("RAY_")}
        self.sandbox(env).run(self.command(address))

    def run(self):
        if self.kubernetes:
            cluster = self.ray_cluster()
            cluster.external = self.external
            with cluster:  # created and ready here; deleted on leaving, also after an error
                self.run_training(cluster.address)
        else:
            self.run_training()
        self.record_code(self.run_root)
