"""The settings of a hyper-parameter search (``--tune.*``): :class:`TuneSettings`.

Plain data with its own checks and the resources one trial needs; nothing here imports Ray or the
tuner, so :mod:`.summary` and :mod:`.tuner` both read it. (The training config the trials start
from is :mod:`.training`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# the metric every trial reports with each result: epochs trained at that validation (1.5 half-way
# through the second); ASHA's time, so that max_epochs and grace_period count epochs whatever
# the trainer's val_check_interval (Tune's training_iteration counts reports instead)
EPOCHS_TRAINED = "epochs_trained"


@dataclass
class TuneSettings:
    """The ``--tune.*`` settings of a search.

    Args:
        space: Search space file (YAML or ``.py``, see :mod:`aframe_lib.tune.space`).
        name: Name of the search: its directory under ``storage_dir`` and the W&B group.
        num_samples: Trials to sample from the space.
        metric: Metric the model logs at validation, reported to Ray each epoch.
        mode: ``max`` or ``min``.
        max_epochs: Epochs of a trial that ASHA does not stop (ASHA's ``max_t``).
        grace_period: Epochs every trial runs before ASHA may stop it (``min_epochs``).
        reduction_factor: ASHA keeps 1/reduction_factor of the trials at each rung.
        workers_per_trial: Training processes per trial; more than 1: Ray Train workers (the
            distributed engine of ``aframe_lib.distributed``), each on any node.
        gpus_per_worker: GPUs per process; 0 trains on CPU.
        cpus_per_gpu: CPUs per GPU of a GPU process.
        cpus_per_worker: CPUs per process when ``gpus_per_worker`` is 0.
        max_concurrent_trials: Cap on trials run side by side; ``None``: as many as fit.
        storage_dir: Local directory or ``s3://bucket/prefix``; the search is ``<it>/<name>``.
        address: Ray cluster (``ray://host:10001``, or ``host:6379`` from a cluster node);
            ``None``: start a local Ray instance.
        connect_timeout: Seconds the first connection to ``address`` is retried (backoff 1, 2,
            4 ... 15 s apart) while nothing answers there, e.g. a cluster still starting.
        num_cpus: CPUs of the local Ray instance (``None``: all of this machine's).
        num_gpus: GPUs of the local Ray instance (``None``: all of this machine's).
        temp_dir: Session directory of the local Ray instance (``None``: Ray's default).
        max_failures: Times a failed trial is retried from its last checkpoint.
        checkpoints_to_keep: Best checkpoints kept per trial (the latest is always kept).
        resume: Resume the search in ``storage_dir/name`` when there is one (finished trials
            are kept, unfinished and errored ones continue from their last checkpoint).
        prepare_data: Call the data module's ``prepare_data`` once here, so that side-by-side
            trials do not download or generate the same data at the same time.
    """

    space: str
    name: str = "search"
    num_samples: int = 4
    metric: str = "valid_auroc"
    mode: str = "max"
    max_epochs: int = 10
    grace_period: int = 1
    reduction_factor: float = 2.0
    workers_per_trial: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_gpu: int = 4
    cpus_per_worker: int = 1
    max_concurrent_trials: int | None = None
    storage_dir: str = "tune-runs"
    address: str | None = None
    connect_timeout: float = 30.0
    num_cpus: int | None = None
    num_gpus: int | None = None
    temp_dir: str | None = None
    max_failures: int = 2
    checkpoints_to_keep: int = 1
    resume: bool = True
    prepare_data: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"tune.mode must be 'max' or 'min', got {self.mode!r}")
        for key in ("num_samples", "max_epochs", "grace_period", "workers_per_trial",
                    "cpus_per_worker"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ValueError(f"tune.{key} must be at least 1, got {getattr(self, key)}")
        if self.grace_period > self.max_epochs:
            raise ValueError(
                f"tune.grace_period ({self.grace_period}) exceeds tune.max_epochs "
                f"({self.max_epochs}); lower it or raise max_epochs"
            )

    def worker_resources(self) -> dict[str, float]:
        """One training process's Ray resources (CPUs, and GPUs when ``gpus_per_worker``)."""
        if self.gpus_per_worker:
            cpus = math.ceil(self.cpus_per_gpu * self.gpus_per_worker)
        else:
            cpus = self.cpus_per_worker
        resources = {"CPU": float(cpus)}
        if self.gpus_per_worker:
            resources["GPU"] = float(self.gpus_per_worker)
        return resources

    def trial_resources(self) -> dict[str, float]:
        """One trial's Ray resources: ``workers × (GPUs, CPUs)`` of one process."""
        return {k: self.workers_per_trial * v for k, v in self.worker_resources().items()}
