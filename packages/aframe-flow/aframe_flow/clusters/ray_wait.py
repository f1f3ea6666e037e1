"""Wait until a Ray cluster itself answers, through the head's dashboard HTTP API, so that the
wait needs no Ray here (the login-node install of aframe-flow has none):

1. the head's client port (``ray://HOST:10001``, what the search connects to) accepts a TCP
   connection;
2. ``GET http://HOST:8265/api/version`` answers (the dashboard is up) with the cluster's
   ``ray_version``, which must be this launcher's pin (:data:`~.manifests.RAY_VERSION`): Ray
   Client refuses a driver of another version, so a cluster of another Ray is refused at once,
   with one message naming both versions;
3. ``GET http://HOST:8265/api/v0/nodes`` (Ray's State API, what ``ray list nodes`` reads) lists
   ``workers`` nodes ``ALIVE`` besides the head (``is_head_node``).

A pod whose container runs says nothing about Ray: the head may still be starting its GCS, a
worker may not have joined (or crash-loop while its pod counts as running). The dashboard is part
of ``ray[default]`` (in the aframe image and Ray's own images). Where the cluster uses token
authentication (``RAY_AUTH_MODE=token``), ``RAY_AUTH_TOKEN`` in this environment is sent as the
bearer token.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from .kr8s_client import ClusterError
from .manifests import CLIENT_PORT, DASHBOARD_PORT, RAY_VERSION

logger = logging.getLogger(__name__)

VERSION_PATH = "/api/version"
NODES_PATH = "/api/v0/nodes?limit=10000&detail=false"


class RayVersionError(ClusterError):
    """The cluster runs another Ray than this launcher's pin."""


def _host_port(address: str) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname:
        raise ValueError(f"{address!r} is not a Ray client address (ray://HOST:PORT)")
    return parsed.hostname, parsed.port or CLIENT_PORT


def dashboard_url(address: str, port: int = DASHBOARD_PORT) -> str:
    """The dashboard of the head at the Ray client ``address``: ``http://HOST:8265``."""
    return f"http://{_host_port(address)[0]}:{port}"


def wait_for_port(address: str, timeout: float, backoff: float = 0.5) -> None:
    """Retry a TCP connection to ``address`` with backoff (at most 10 s apart) for ``timeout`` s.

    Raises:
        TimeoutError: naming the address, the time waited and the last connection error.
    """
    host, port = _host_port(address)
    deadline = time.monotonic() + timeout
    delay = backoff
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, max(0.5, timeout))):
                return
        except OSError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"the Ray head at {address} does not accept connections after {timeout:.0f} s "
                    f"({host}:{port}: {exc}); is the head running and its client server on "
                    f"port {port}?"
                ) from None
            time.sleep(min(delay, left))
            delay = min(2 * delay, 10.0)


def get_json(url: str, timeout: float = 10.0) -> dict:
    """``GET url`` as JSON (``RAY_AUTH_TOKEN``, if set, as the bearer token).

    Raises:
        ClusterError: the dashboard refused the request (401/403: a token is needed).
        ConnectionError: no answer, or an answer that is not the dashboard's (retry).
    """
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token := os.environ.get("RAY_AUTH_TOKEN"):
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise ClusterError(
                f"the Ray dashboard at {url} refused the request ({exc.code} {exc.reason}): the "
                "cluster uses token authentication; set RAY_AUTH_TOKEN to its token"
            ) from None
        raise ConnectionError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, ValueError) as exc:  # URLError, refused, reset, timeout, not JSON
        raise ConnectionError(f"{url}: {getattr(exc, 'reason', exc)}") from None


def check_ray_version(found: str, where: str) -> None:
    """Refuse a cluster whose Ray is not :data:`RAY_VERSION`."""
    if found != RAY_VERSION:
        raise RayVersionError(
            f"the Ray cluster at {where} runs Ray {found}, but this aframe-flow is pinned to "
            f"Ray {RAY_VERSION} (Ray Client refuses a driver of another version): use an image "
            f"with ray=={RAY_VERSION}, e.g. the one `nox -s image` builds from this checkout"
        )


def cluster_state(dashboard: str, timeout: float = 10.0) -> dict:
    """``{"ray_version", "nodes", "workers"}`` (alive nodes; those besides the head) as the head's
    dashboard reports them."""
    version = get_json(dashboard + VERSION_PATH, timeout).get("ray_version", "")
    answer = get_json(dashboard + NODES_PATH, timeout)
    try:
        nodes = answer["data"]["result"]["result"]
    except (KeyError, TypeError):
        raise ConnectionError(
            f"{dashboard}{NODES_PATH}: unexpected answer {answer!r:.300}"
        ) from None
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    workers = [n for n in alive if not n.get("is_head_node")]
    return {"ray_version": version, "nodes": len(alive), "workers": len(workers)}


def wait_for_ray(
    address: str,
    workers: int,
    timeout: float = 600.0,
    poll: float = 2.0,
    dashboard: str | None = None,
) -> int:
    """Block until ``address`` accepts connections and the head's dashboard reports ``workers``
    alive workers, on Ray :data:`RAY_VERSION`.

    Args:
        address: the head's Ray client address, ``ray://HOST:PORT``.
        workers: worker nodes to wait for (besides the head).
        timeout: seconds in all.
        poll: seconds between two looks at the dashboard.
        dashboard: the dashboard's URL; ``None``: ``http://HOST:8265`` (:func:`dashboard_url`).

    Returns:
        The number of workers the head reported.

    Raises:
        TimeoutError: naming the address, what was waited for and what was seen last.
        RayVersionError: the cluster runs another Ray (one message naming both versions).
    """
    dashboard = (dashboard or dashboard_url(address)).rstrip("/")
    deadline = time.monotonic() + timeout
    wait_for_port(address, timeout)
    seen, error, checked = "no answer from the dashboard", "", False
    while True:
        left = deadline - time.monotonic()
        try:
            state = cluster_state(dashboard, timeout=max(1.0, min(10.0, left)))
        except ConnectionError as exc:  # the head (or its dashboard) is still starting: retry
            state, error = None, str(exc)
        if state is not None:
            if not checked:
                check_ray_version(state["ray_version"], dashboard)
                checked = True
            error = ""
            seen = f"{state['workers']} worker(s), {state['nodes']} node(s) alive"
            if state["workers"] >= workers:
                logger.info("Ray %s at %s: %s", state["ray_version"], address, seen)
                return state["workers"]
        if deadline - time.monotonic() <= 0:
            raise TimeoutError(
                f"the Ray cluster at {address} does not report {workers} worker(s) after "
                f"{timeout:.0f} s (asked its dashboard, {dashboard}{NODES_PATH.split('?')[0]}; "
                f"last seen: {seen}{'; ' + error if error else ''}); check the worker pods' "
                "logs (do they reach the head's GCS port?) and that the image has ray[default]"
            )
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
