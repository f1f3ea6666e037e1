"""``Train``: ``aframe-train fit`` on the data of :class:`~aframe_flow.tasks.data.Data`.

The task's parameters become command-line overrides of the training config; the command runs on
the host or in the train image (``--image``), with ``--gpus`` made visible and DDP across them
when there are several. The output is the exported model (``model.pt`` + ``model.json``, both
written atomically by aframe-lib's exporter at the end of training), by default in
``<paths.base_dir>/run/<data key>/<config name>-<hash>``: the hash covers the training config's
content, ``--train-args`` and an explicit ``--data-dir``, so changing any of them (or a data
parameter) trains a new model, and rerunning with the same ones finds the finished run.
Where it runs (``--gpus``, ``--image``, ``--dev``) and how it logs (``--use-wandb`` ...) do not
key the location.
"""

from __future__ import annotations

import os

import luigi

from .. import config
from ..base import DataParameters, SandboxTask, digest, file_digest
from ..parameters import ParameterError, PathParameter
from ..sandbox import local_executable
from ..targets import file_target, join
from .data import Data, DataTask


def aframe_train_executable() -> list[str]:
    """The ``aframe-train`` console script beside this interpreter, else on PATH."""
    return [local_executable("aframe-train")]


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
        if self.gpus:
            # CUDA_VISIBLE_DEVICES maps the chosen GPUs to 0..n-1 inside the process
            args += ["--trainer.accelerator=gpu", f"--trainer.devices={len(self.gpus)}"]
            if len(self.gpus) > 1:
                args.append("--trainer.strategy=ddp")
        return args + [str(a) for a in self.train_args]


class Train(TrainBase):
    """Train a detector with ``aframe-train fit``; the output is its exported model."""

    def command(self) -> list[str]:
        return [*self.executable("aframe-train"), "fit", *self.train_overrides()]

    def output(self):
        return {
            "model": file_target(join(self.run_root, "model.pt")),
            "info": file_target(join(self.run_root, "model.json")),
        }

    def run(self):
        self.sandbox().run(self.command())
