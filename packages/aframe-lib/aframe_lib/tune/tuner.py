"""The tuner: Ray Tune's ``Tuner`` with ASHA over a LightningCLI config, resumable, with a summary.

Everything that can be wrong with the input is checked before Ray runs a trial: the search
space (syntax, distributions, and every key against the CLI's parser), the training config, the
storage (an unreachable S3 endpoint or missing bucket), the Ray address (a TCP probe, then
``ray.init``) and whether one trial's resources fit the cluster at all.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..utils import fs
from ..utils.ray_connect import DEFAULT_ENV, FORWARDED_ENV, connect, worker_places
from .config import EPOCHS_TRAINED, TuneSettings
from .space import load_space
from .storage import ray_storage
from .summary import summarize
from .trainable import TrialSetup, run_trial
from .training import TrainingConfig, cli_path, validate_space

logger = logging.getLogger(__name__)


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (the default embeds every sampled value)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


DRIVER_MEMORY = 256 * 2**20  # Ray resources of a multi-worker trial's driver (bytes)
FIX = "lower tune.workers_per_trial / gpus_per_worker / cpus_per_gpu / cpus_per_worker"


def check_fits(settings: TuneSettings) -> int:
    """Refuse (local Ray) or warn (a cluster that may scale up) if one trial can never fit;
    returns how many trials fit side by side.

    A single-worker trial is one bundle; a multi-worker trial is ``workers_per_trial`` Ray
    Train workers, each on one node: the workers the live nodes can hold are counted node by
    node (as ``aframe-train fit --distributed.*`` does).
    """
    import ray

    if settings.workers_per_trial > 1:
        return _check_workers_fit(settings)
    total = ray.cluster_resources()
    need = settings.trial_resources()
    short = {k: (v, total.get(k, 0)) for k, v in need.items() if v > total.get(k, 0)}
    if short:
        text = ", ".join(
            f"{k}: needs {v:g}, cluster has {have:g}" for k, (v, have) in short.items()
        )
        _refuse(settings, f"one trial does not fit in the Ray cluster ({text}); {FIX}")
    side_by_side = min(int(total.get(k, 0) // v) for k, v in need.items() if v)
    print(f"each trial gets {need}; {side_by_side} trial(s) fit side by side", flush=True)
    return side_by_side


def _check_workers_fit(settings: TuneSettings) -> int:
    need = settings.worker_resources()
    places, nodes = worker_places(need)
    workers = settings.workers_per_trial
    if places < workers:
        _refuse(
            settings,
            f"one trial's {workers} workers do not fit in the Ray cluster: each needs {need} on "
            f"one node and its {len(nodes)} node(s) hold {places}; {FIX}",
        )
    side_by_side = places // workers
    print(
        f"each trial gets {workers} Ray Train workers of {need}; {side_by_side} trial(s) fit "
        "side by side",
        flush=True,
    )
    return side_by_side


def _refuse(settings: TuneSettings, message: str) -> None:
    if not settings.address:
        raise ValueError(message)
    logger.warning(message + " (waiting for the cluster to scale up)")


def prepare_data(training: TrainingConfig) -> None:
    """Run the data module's ``prepare_data`` once on the driver (downloads, synthetic data)."""
    config = training.parser.instantiate_classes(training.config)
    datamodule = getattr(config, "data", None)
    if datamodule is not None and hasattr(datamodule, "prepare_data"):
        datamodule.prepare_data()


def run_tune(
    cli_cls: str | type,
    configs: list[str],
    overrides: list[str],
    settings: TuneSettings,
) -> dict[str, Any]:
    """Run (or resume) a search; returns the summary also written to ``summary.json``.

    Args:
        cli_cls: the LightningCLI class or its import path (``aframe_train.cli.AframeCLI``).
        configs: the training ``--config`` files.
        overrides: further training arguments (``--data.init_args.batch_size=32`` ...).
        settings: the search settings.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # 1. everything about the input, before Ray
    space = load_space(settings.space)
    training = TrainingConfig(cli_cls, configs, overrides)
    validate_space(training, space)
    storage_path, storage_fs = ray_storage(settings.storage_dir)
    search_dir = fs.join(settings.storage_dir if fs.is_remote(settings.storage_dir) else
                         storage_path, settings.name)  # fmt: skip
    started = connect(settings)
    try:
        side_by_side = check_fits(settings)
        if settings.prepare_data:
            prepare_data(training)
        results = _fit(training, space, settings, storage_path, storage_fs, side_by_side)
        return summarize(results, settings, search_dir)
    finally:
        if started:
            import ray

            ray.shutdown()


def _fit(training, space, settings: TuneSettings, storage_path: str, storage_fs,
         side_by_side: int = 1) -> Any:  # fmt: skip
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    need = settings.trial_resources()
    threads = int(need["CPU"] // settings.workers_per_trial)
    setup = TrialSetup(
        cli=cli_path(training.cli_cls),
        config_yaml=training.yaml,
        search_name=settings.name,
        max_epochs=settings.max_epochs,
        workers=settings.workers_per_trial,
        gpus_per_worker=settings.gpus_per_worker,
        threads_per_worker=max(1, threads),
        workdir=os.getcwd(),
        env={k: os.environ[k] for k in FORWARDED_ENV if k in os.environ},
        default_env={k: os.environ[k] for k in DEFAULT_ENV if k in os.environ},
        storage_path=storage_path,
        storage_filesystem=storage_fs,
    )
    concurrent = settings.max_concurrent_trials
    if settings.workers_per_trial > 1:
        # the trial only drives a Ray Train run: no CPU of its own (Ray refuses an empty
        # bundle, so it asks for some memory); the workers ask for theirs, and the trials run
        # side by side are capped at what the workers fit
        need = {"memory": float(DRIVER_MEMORY)}
        concurrent = concurrent or max(1, side_by_side)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, setup=setup),
        tune.PlacementGroupFactory([need]),
    )
    experiment = f"{storage_path.rstrip('/')}/{settings.name}"
    if settings.resume and tune.Tuner.can_restore(experiment, storage_filesystem=storage_fs):
        print(f"resuming the search in {experiment}", flush=True)
        tuner = tune.Tuner.restore(
            experiment,
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage_fs,
        )
    else:
        scheduler = ASHAScheduler(
            time_attr=EPOCHS_TRAINED,
            max_t=settings.max_epochs,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
        )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=settings.metric,
                mode=settings.mode,
                num_samples=settings.num_samples,
                scheduler=scheduler,
                max_concurrent_trials=concurrent,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=settings.name,
                storage_path=storage_path,
                storage_filesystem=storage_fs,
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=settings.checkpoints_to_keep,
                    checkpoint_score_attribute=settings.metric,
                    checkpoint_score_order=settings.mode,
                ),
                verbose=1,
            ),
        )
    return tuner.fit()
