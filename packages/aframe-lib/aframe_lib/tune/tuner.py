"""The tuner: Ray Tune's ``Tuner`` with ASHA over a LightningCLI config, resumable, with a summary.

Everything that can be wrong with the input is checked before Ray runs a trial: the search
space (syntax, distributions, and every key against the CLI's parser), the training config, the
storage (an unreachable S3 endpoint or missing bucket), the Ray address (a TCP probe, then
``ray.init``) and whether one trial's resources fit the cluster at all.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..utils import fs
from .config import TuneSettings
from .space import load_space
from .storage import ray_storage
from .summary import summarize
from .trainable import TrialSetup, run_trial
from .training import TrainingConfig, cli_path, validate_space

logger = logging.getLogger(__name__)

# environment variables trials need on any node; secrets are never forwarded (a cluster gets
# its credentials from its own environment: Kubernetes Secrets, credential files).
# FORWARDED_ENV: set in every trial (and every Ray worker of the search).
FORWARDED_ENV = ("WANDB_MODE",)
# DEFAULT_ENV: the driver's values reach a trial only where its node's environment lacks them:
# a cluster's pods keep the in-cluster S3 endpoint they were given (the driver's may be an
# external address that pods cannot reach, or reach only the long way round)
DEFAULT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION")


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (the default embeds every sampled value)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def connect(settings: TuneSettings) -> bool:
    """``ray.init`` for the search; whether this call started Ray (then it shuts it down).

    Raises:
        ConnectionError: for an address where no Ray cluster answers, naming it and the fix.
    """
    import ray

    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if settings.address:
        _connect_remote(settings, env)
    else:
        kwargs = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}
        if settings.temp_dir:
            kwargs["_temp_dir"] = str(Path(settings.temp_dir).expanduser().resolve())
        ray.init(include_dashboard=False, **kwargs)
    return True


# attempts made, past --tune.connect_timeout, when the Ray client server fails on the head's side
SERVER_RETRIES = 3


def _connect_remote(settings: TuneSettings, env: dict[str, str]) -> None:
    """``ray.init(address)``, retried with backoff for ``settings.connect_timeout`` seconds.

    Raises:
        ConnectionError: naming the address, the time tried, the last error and the fix.
    """
    import ray

    deadline = time.monotonic() + settings.connect_timeout
    delay, attempts = 1.0, 0
    while True:
        attempts += 1
        try:
            _probe(settings.address)
            ray.init(address=settings.address, runtime_env={"env_vars": env} if env else None)
            return
        except Exception as exc:
            if ray.is_initialized():
                ray.shutdown()
            left = deadline - time.monotonic()
            # the head answered but the per-client server it starts failed (e.g. its port was
            # taken): transient, and a new attempt gets a new server and port, so it is retried
            # a few times even when that one attempt used up the timeout
            server_side = "Initialization failure from server" in str(exc)
            if left <= 0 and not (server_side and attempts < SERVER_RETRIES):
                raise ConnectionError(_connect_error(settings, exc, attempts)) from exc
            wait = min(delay, max(left, 1.0))
            logger.warning("no Ray cluster at %s yet (%s); retrying in %.0f s",
                           settings.address, exc, wait)  # fmt: skip
            time.sleep(wait)
            delay = min(2 * delay, 15.0)


def _connect_error(settings: TuneSettings, exc: Exception, attempts: int) -> str:
    hint = ""
    if "timeout" in str(exc) and os.environ.get("RAY_AUTH_MODE") != "disabled":
        hint = (
            "; if the cluster uses token authentication (Ray's default since 2.5x), "
            "note that Ray Client does not send the token: start the cluster with "
            "RAY_AUTH_MODE=disabled on a private network"
        )
    return (
        f"cannot connect to the Ray cluster at {settings.address} after {attempts} attempt(s) "
        f"in {settings.connect_timeout:g} s (--tune.connect_timeout; last error: {exc}); check "
        f"--tune.address (ray://HOST:10001 for the client server) and that it is up{hint}"
    )


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast (seconds, not Ray's minutes of retries) when nothing listens at ``address``."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port or (10001 if address.startswith("ray://") else 6379)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc})") from None


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
