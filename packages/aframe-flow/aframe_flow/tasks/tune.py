"""``Tune``: ``aframe-train tune`` (Ray Tune + ASHA) on the data of :class:`~.data.Data`.

The training side takes Train's parameters (``--config``, ``--ifos``, ``--seed``, ``--data-dir``,
``--use-wandb`` ..., ``--train-args``) turned into the same overrides, except the run directory,
logger directory and devices, which the search sets per trial. The search side is
``--tune-config`` (a YAML with a ``tune:`` section), ``--space``, ``--num-samples``, ``--name``,
``--storage-dir`` (local or ``s3://``) and ``--tune-args`` (any other ``--tune.*`` setting).

Where the trials run:

- default: a local Ray instance that the search starts (``--gpus`` are its GPUs);
- ``--address ray://HOST:10001``: an existing cluster;
- ``--kubernetes``: a cluster that this task starts on Kubernetes (:class:`RayClusterTask`,
  settings in ``[luigi_kubernetes]``/``[luigi_ray_head]``/``[luigi_ray_worker]``), waits for,
  hands to the search as ``--tune.address``, and deletes afterwards, also when the search fails.

The command runs on the host or in the train image (``--image``), like Train. The outputs are
the search directory's ``summary.json`` (written last by the search) and the best trial's
``model.pt``/``model.json``: ``<storage-dir>/<name>/``, where ``<storage-dir>`` defaults to
``<paths.base_dir>/tune/<data key>/<config name>-<hash>``; the hash covers the training config's
and the tune config's and search space's contents, ``--train-args``, ``--num-samples``,
``--tune-args`` and an explicit ``--data-dir``. Rerunning with the same parameters finds the
finished search (or resumes an interrupted one); changing one starts a new search.

:class:`TunePipeline` is data -> search -> :class:`ExportTuned` (the best trial's model as a
deployable folder) and :class:`EvaluateTuned` (that model scored on held-out data).
"""

from __future__ import annotations

import os
import re

import law
import luigi
from luigi.util import inherits

from ..base import RayClusterTask, digest, file_digest
from ..parameters import ParameterError, PathParameter
from ..targets import file_target, join
from .evaluate import Evaluate
from .export import Export
from .train import TrainBase, resolve_config

_RAY_ADDRESS = re.compile(r"^ray://[^\s:/]+:\d+$")


class Tune(TrainBase, RayClusterTask):
    """Search hyper-parameters with ``aframe-train tune``; the output is the search summary and
    the best model."""

    tune_config = PathParameter(
        default="",
        description="search settings (YAML with a `tune:` section) given to aframe-train "
        "--tune_config, e.g. projects/quickstart/tune.yaml; empty: only the settings below",
    )
    space = PathParameter(
        default="",
        description="search space file (YAML or .py); empty: the one named in --tune-config",
    )
    num_samples = luigi.OptionalIntParameter(
        default=None, description="trials to sample; empty: --tune-config's (else 4)"
    )
    name = luigi.Parameter(
        default="search",
        description="name of the search: its directory under --storage-dir (overrides the "
        "name in --tune-config)",
    )
    storage_dir = PathParameter(
        default="",
        description="where searches are kept, local or s3://, used as it is; empty: "
        "<paths.base_dir>/tune/<data key>/<config name>-<hash> (keyed by the parameters); the "
        "search is <storage-dir>/<name> (rerunning an interrupted one resumes it)",
    )
    address = luigi.Parameter(
        default="",
        description="Ray cluster to run the trials on, ray://HOST:10001; empty: a local Ray "
        "instance (or the Kubernetes cluster of --kubernetes)",
    )
    kubernetes = luigi.BoolParameter(
        default=False,
        description="start a Ray cluster on Kubernetes for this search and delete it afterwards "
        "(settings: [luigi_kubernetes], [luigi_ray_head], [luigi_ray_worker])",
    )
    external = luigi.BoolParameter(
        default=False,
        description="with --kubernetes: reach the Ray head through a LoadBalancer (when this "
        "task runs outside the Kubernetes cluster)",
    )
    tune_args = luigi.ListParameter(
        default=[],
        description='more --tune.* settings as a JSON list, e.g. ["--tune.max_epochs=4", '
        '"--tune.num_cpus=2"]',
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # every check here runs when the task is built: before any upstream task or cluster
        self.tune_config_path = _resolve(
            "tune-config", self.tune_config, "projects/quickstart/tune.yaml"
        )
        self.space_path = _resolve("space", self.space, "projects/quickstart/search_space.yaml")
        if not (self.tune_config_path or self.space_path):
            raise ParameterError(
                "Tune needs a search space: give --space FILE (e.g. "
                "projects/quickstart/search_space.yaml) or --tune-config FILE with a `space:`"
            )
        if self.num_samples is not None and self.num_samples < 1:
            raise ParameterError(
                f"--num-samples={self.num_samples}: a search needs at least one trial"
            )
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ParameterError(
                f"--name={self.name!r}: give a plain directory name such as quickstart-search"
            )
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
        if self.gpus and (self.address or self.kubernetes):
            raise ParameterError(
                f"--gpus={','.join(map(str, self.gpus))}: selects GPUs of the local Ray "
                "instance; a cluster's GPUs are its workers' ([luigi_ray_worker] gpus) and a "
                "trial's are --tune-args '[\"--tune.gpus_per_worker=1\"]'"
            )
        if self.kubernetes and not self.storage_root.startswith("s3://"):
            raise ParameterError(
                f"--kubernetes: the search directory {self.storage_root} must be s3://..., "
                "since the cluster's pods cannot write to this machine's disk (--storage-dir)"
            )

    @property
    def tune_key(self) -> str:
        """``<config name>-<hash of everything that changes the search's outcome>``."""
        stem = os.path.splitext(os.path.basename(self.config_path))[0]
        key = digest(
            file_digest(self.config_path), self.train_args, self.data_dir,
            file_digest(self.tune_config_path), file_digest(self.space_path),
            self.num_samples, self.tune_args,
        )  # fmt: skip
        return f"{stem}-{key}"

    def store_parts(self) -> tuple[str, ...]:
        return ("tune", self.data_key, self.tune_key, self.name)

    def explicit_dir(self) -> str:
        return self.storage_dir and self.search_dir

    @property
    def storage_root(self) -> str:
        # absolute: trials run in Ray's worker processes, whose working directory is not ours
        return _absolute(self.default_dir(self.storage_dir, *self.store_parts()[:-1]))

    @property
    def search_dir(self) -> str:
        return join(self.storage_root, self.name)

    def binds(self) -> list[str]:
        paths = [self.data_root, self.storage_root, os.path.dirname(self.config_path)]
        for p in (self.tune_config_path, self.space_path):
            if p:
                paths.append(os.path.dirname(p))
        return paths

    def output(self):
        return {
            "summary": file_target(join(self.search_dir, "summary.json")),
            "model": file_target(join(self.search_dir, "model.pt")),
            "info": file_target(join(self.search_dir, "model.json")),
        }

    def train_overrides(self) -> list[str]:
        """The training config: Train's overrides less those the search sets per trial (run
        directory, logger directory, devices)."""
        args = [
            "--config", self.config_path,
            f"--seed_everything={self.seed}",
            f"--data.init_args.ifos=[{','.join(self.ifos)}]",
            f"--data.init_args.sample_rate={self.sample_rate:g}",
            f"--data.init_args.data_dir={_absolute(self.data_root)}",
            "--data.init_args.synthetic=null",  # the data come from the data tasks
        ]  # fmt: skip
        if self.use_wandb:  # the search names each trial's run and groups them by search name
            args += [a for a in self.wandb_args() if not a.startswith("--trainer.logger.save_dir")]
        return args + [str(a) for a in self.train_args]

    def search_args(self, address: str = "") -> list[str]:
        """The ``--tune*`` arguments; ``address`` is the cluster's (empty: local Ray)."""
        args = []
        if self.tune_config_path:
            args += ["--tune_config", self.tune_config_path]
        if self.space_path:
            args.append(f"--tune.space={self.space_path}")
        if self.num_samples is not None:
            args.append(f"--tune.num_samples={self.num_samples}")
        args += [f"--tune.name={self.name}", f"--tune.storage_dir={self.storage_root}"]
        if address:
            args.append(f"--tune.address={address}")
        else:  # the local instance gets exactly the GPUs asked for (none: CPU), like Train
            args.append(f"--tune.num_gpus={len(self.gpus)}")
            if self.gpus:
                args.append("--tune.gpus_per_worker=1")
        return args + [str(a) for a in self.tune_args]

    def command(self, address: str = "") -> list[str]:
        entry = self.executable("aframe-train")
        return [*entry, "tune", *self.train_overrides(), *self.search_args(address)]

    def run_tune(self, address: str = "") -> None:
        # RAY_* (e.g. RAY_AUTH_MODE) reach the driver also inside an image (--cleanenv)
        env = {k: v for k, v in os.environ.items() if k.startswith("RAY_")}
        self.sandbox(env).run(self.command(address))

    def run(self):
        if self.kubernetes:
            cluster = self.ray_cluster()
            cluster.external = self.external
            with cluster:  # created and ready here; deleted on leaving, also after an error
                self.run_tune(cluster.address)
        else:
            self.run_tune(self.address)
        if not self.output()["model"].exists():
            raise RuntimeError(
                f"the search finished but wrote no best model to {self.search_dir} (no trial "
                f"reported its metric?); see {join(self.search_dir, 'summary.json')}"
            )
        self.record_code(self.search_dir)  # the best trial's model, as Train's


def _resolve(flag: str, path: str, example: str) -> str | None:
    """``path`` as found by :func:`resolve_config` (``None`` when empty), or a ParameterError
    naming ``--flag``."""
    if not path:
        return None
    try:
        return resolve_config(path, flag)
    except ParameterError:
        raise ParameterError(
            f"--{flag}={path}: no such file (a relative path in a .cfg is read beside that "
            f"file, on the command line from the working directory); give the path of one such "
            f"as {example}"
        ) from None


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


@inherits(Tune)
class ExportTuned(Export):
    """The best trial's model of :class:`Tune` as a deployable folder (every parameter of Tune
    and Export); default ``<paths.base_dir>/export/<data key>/<tune key>/<name>``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tune = Tune.req(self)  # Tune's checks, now: before anything runs

    def requires(self):
        return self.tune

    def store_parts(self) -> tuple[str, ...]:
        return ("export", self.tune.data_key, self.tune.tune_key, self.name)


@inherits(Tune)
class EvaluateTuned(Evaluate):
    """The best trial's model of :class:`Tune` scored by ``aframe-train evaluate`` on held-out
    data (every parameter of Tune and Evaluate)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tune = None if self.model else Tune.req(self)  # Tune's checks, now

    def model_requirement(self):
        return self.tune

    def model_key(self) -> str:
        if self.model:
            return super().model_key()
        return f"{self.tune.tune_key}-{self.name}"


@inherits(ExportTuned, EvaluateTuned)
class TunePipeline(law.WrapperTask):
    """Data -> ``aframe-train tune`` -> the best model exported and evaluated on held-out data,
    configured from one ``.cfg`` (every parameter of Tune, Export and Evaluate)."""

    def requires(self):
        return {"export": ExportTuned.req(self), "evaluate": EvaluateTuned.req(self)}
