"""Connecting to Ray, shared by the tuner (``--tune.*``) and distributed training
(``--distributed.*``): a local instance, or a cluster's address retried with backoff, probed by
TCP first so that a wrong address fails in seconds, with a message naming the caller's flags.

Any settings object with ``address``, ``connect_timeout``, ``num_cpus``, ``num_gpus`` and
``temp_dir`` attributes works (:class:`~aframe_lib.tune.config.TuneSettings`,
:class:`~aframe_lib.distributed.trainer.DistributedConfig`). Ray is imported when called.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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


def connect(settings: Any, flags: str = "--tune.") -> bool:
    """``ray.init``; whether this call started Ray (then the caller shuts it down).

    ``flags`` is the prefix of the caller's command-line settings (``--tune.``,
    ``--distributed.``), named in the error.

    Raises:
        ConnectionError: for an address where no Ray cluster answers, naming it and the fix.
    """
    import ray

    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if settings.address:
        _connect_remote(settings, env, flags)
    else:
        kwargs = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}
        if settings.temp_dir:
            kwargs["_temp_dir"] = str(Path(settings.temp_dir).expanduser().resolve())
        ray.init(include_dashboard=False, **kwargs)
    return True


# attempts made, past the connect_timeout, when the Ray client server fails on the head's side
SERVER_RETRIES = 3


def _connect_remote(settings: Any, env: dict[str, str], flags: str) -> None:
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
                raise ConnectionError(_connect_error(settings, exc, attempts, flags)) from exc
            wait = min(delay, max(left, 1.0))
            logger.warning("no Ray cluster at %s yet (%s); retrying in %.0f s",
                           settings.address, exc, wait)  # fmt: skip
            time.sleep(wait)
            delay = min(2 * delay, 15.0)


def _connect_error(settings: Any, exc: Exception, attempts: int, flags: str) -> str:
    hint = ""
    if "timeout" in str(exc) and os.environ.get("RAY_AUTH_MODE") != "disabled":
        hint = (
            "; if the cluster uses token authentication (Ray's default since 2.5x), "
            "note that Ray Client does not send the token: start the cluster with "
            "RAY_AUTH_MODE=disabled on a private network"
        )
    return (
        f"cannot connect to the Ray cluster at {settings.address} after {attempts} attempt(s) "
        f"in {settings.connect_timeout:g} s ({flags}connect_timeout; last error: {exc}); check "
        f"{flags}address (ray://HOST:10001 for the client server) and that it is up{hint}"
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


def worker_places(need: dict[str, float]) -> tuple[int, list[dict[str, float]]]:
    """How many workers each needing ``need`` (``{"CPU": 1, "GPU": 1, ...}``, all on one node)
    the live nodes of the connected Ray cluster hold, counted node by node; and each live
    node's amounts of those resources (for messages)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    places = sum(min(int(have.get(k, 0) // v) for k, v in need.items() if v) for have in nodes)
    return places, [{k: have.get(k, 0) for k in need} for have in nodes]
