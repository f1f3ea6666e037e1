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
from ..utils.ray_connect import DEFAULT_ENV, FORWARDED_ENV, connect
from .config import TuneSettings
from .space import load_space
from .storage import ray_storage
from .summary import summarize
from .trainable import TrialSetup, run_trial
from .training import TrainingConfig, cli_path, validate_space

logger = logging.getLogger(__name__)


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (the default embeds every sampled value)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def check_fits(settings: TuneSettings) -> None:
    """Refuse (local Ray) or warn (a cluster that may scale up) if one trial can never fit."""
    import ray

    total = ray.cluster_resources()
    need = settings.trial_resources()
    short = {k: (v, total.get(k, 0)) for k, v in need.items() if v > total.get(k, 0)}
    if short:
        text = ", ".join(
            f"{k}: needs {v:g}, cluster has {have:g}" for k, (v, have) in short.items()
        )
        message = (
            f"one trial does not fit in the Ray cluster ({text}); lower "
            "tune.workers_per_trial / gpus_per_worker / cpus_per_gpu / cpus_per_worker"
        )
        if not settings.address:
            raise ValueError(message)
        logger.warning(message + " (waiting for the cluster to scale up)")
    side_by_side = min(int(total.get(k, 0) // v) for k, v in need.items() if v)
    print(f"each trial gets {need}; {side_by_side} trial(s) fit side by side", flush=True)


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
        check_fits(settings)
        if settings.prepare_data:
            prepare_data(training)
        results = _fit(training, space, settings, storage_path, storage_fs)
        return summarize(results, settings, search_dir)
    finally:
        if started:
            import ray

            ray.shutdown()


def _fit(training, space, settings: TuneSettings, storage_path: str, storage_fs) -> Any:
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
    )
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
            time_attr="training_iteration",
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
                max_concurrent_trials=settings.max_concurrent_trials,
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
