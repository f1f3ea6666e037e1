"""Wait until a Ray cluster itself answers: its client port accepts connections and the head
reports the expected number of worker nodes.

A Deployment whose containers run says nothing about Ray: the head may still be starting its
GCS, a worker may not have joined (or crash-loop while its pod counts as running). The worker
count comes from the head through Ray's own client (``ray.init("ray://...")``, ``ray.nodes()``)
in a subprocess, so this process keeps no Ray connection; where ``ray`` is not installed (a
login-node install of aframe-flow), only the port is checked and a warning says so.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

# prints {"nodes": alive nodes, "workers": alive nodes that are not the head}
_PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
alive = [n for n in ray.nodes() if n.get("Alive")]
head = [n for n in alive if "node:__internal_head__" in n.get("Resources", {})]
print(json.dumps({"nodes": len(alive), "workers": len(alive) - len(head)}))
ray.shutdown()
"""


def _host_port(address: str) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname:
        raise ValueError(f"{address!r} is not a Ray client address (ray://HOST:PORT)")
    return parsed.hostname, parsed.port or 10001


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


def ray_workers(address: str, timeout: float, python: str | None = None) -> dict[str, int] | None:
    """``{"nodes": n, "workers": n}`` as the head reports them; ``None`` without ``ray``."""
    python = python or sys.executable
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE, address], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        message = f"the Ray head at {address} did not answer within {timeout:.0f} s"
        raise ConnectionError(message) from None
    if proc.returncode != 0:
        if "No module named 'ray'" in proc.stderr:
            return None
        raise ConnectionError(
            f"the Ray head at {address} refused the client: {proc.stderr.strip()[-500:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_for_ray(
    address: str, workers: int, timeout: float = 600.0, poll: float = 2.0, python: str | None = None
) -> int:
    """Block until ``address`` accepts connections and the head reports ``workers`` workers.

    Returns:
        The number of workers the head reported (``-1`` when ``ray`` is missing here).

    Raises:
        TimeoutError: naming the address, what was waited for and what was seen last.
    """
    deadline = time.monotonic() + timeout
    wait_for_port(address, timeout)
    seen, error = "no answer", ""
    while True:
        left = deadline - time.monotonic()
        try:
            report = ray_workers(address, max(5.0, left), python)
        except ConnectionError as exc:  # the head is still starting: retry
            report, error = {}, str(exc)
        if report is None:
            logger.warning(
                "ray is not installed here: checked only that %s accepts connections", address
            )
            return -1
        if report:
            seen = f"{report['workers']} worker(s), {report['nodes']} node(s) alive"
            if report["workers"] >= workers:
                return report["workers"]
        if deadline - time.monotonic() <= 0:
            raise TimeoutError(
                f"the Ray cluster at {address} does not report {workers} worker(s) after "
                f"{timeout:.0f} s (last seen: {seen}{'; ' + error if error else ''}); check the "
                "worker pods' logs (do they reach the head's GCS port?)"
            )
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
