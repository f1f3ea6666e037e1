"""Real Ray for tests, all on 127.0.0.1: a head started with ``ray start``, and clean-up of the
local instances that searches start with ``ray.init``.

Every Ray instance gets its own short ``--temp-dir`` (Unix socket paths are limited to ~107
bytes) so tests never touch another user's Ray; it is stopped by the PIDs of the processes that
run with that directory (``ray stop`` would stop every Ray of this user on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# RAY_AUTH_MODE: Ray >= 2.5x turns token authentication on for new clusters and writes
# ~/.ray/auth_token; its client (ray://) then fails to connect. Test clusters listen on
# 127.0.0.1 only and run without it (and write nothing to the home directory).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_using(marker: str) -> list[int]:
    """PIDs of this user's processes whose command line contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def stop_processes(marker: str, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, the processes whose command line contains ``marker``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = pids_using(marker)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + timeout
        while pids and time.time() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
            time.sleep(0.2)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def ray_temp_dir() -> Iterator[str]:
    """A fresh, short temp dir for a local Ray instance (``--tune.temp_dir``); whatever still
    runs with it at the end of the test (a killed driver's Ray, a failed test's) is stopped."""
    path = f"/tmp/rt-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        stop_processes(path)
        shutil.rmtree(path, ignore_errors=True)


# client address -> (GCS port, temp dir) of the heads started here (to join worker nodes)
HEADS: dict[str, tuple[int, str]] = {}
# client address -> dashboard URL of the heads started with include_dashboard=True
DASHBOARDS: dict[str, str] = {}


@contextlib.contextmanager
def start_ray_head(
    num_cpus: int = 2, include_dashboard: bool = False, **extra_env: str
) -> Iterator[str]:
    """A real Ray head (``ray start --head``, client server) on 127.0.0.1 whose processes (and
    so every Ray worker, every trial) have ``extra_env`` in their environment; yields its
    client address ``ray://127.0.0.1:PORT`` and stops it afterwards. ``include_dashboard``:
    with the dashboard (its URL in ``DASHBOARDS``; it needs ``ray[default]``)."""
    temp = f"/tmp/rh-{uuid.uuid4().hex[:8]}"
    port, client_port = free_port(), free_port()
    ray = Path(sys.executable).parent / "ray"
    if include_dashboard:
        dashboard_port = free_port()
        dashboard = ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={dashboard_port}"]  # fmt: skip
    else:
        dashboard = ["--include-dashboard=false"]
    cmd = [
        str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
        f"--ray-client-server-port={client_port}", f"--num-cpus={num_cpus}", "--num-gpus=0",
        *dashboard, f"--temp-dir={temp}", "--disable-usage-stats",
    ]  # fmt: skip
    # the head's workers inherit this environment: the tests' python path included
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": _pythonpath()}
    env = {k: v for k, v in env.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        env[name] = f"{temp}-wandb/{name.lower()}"
    env.update(extra_env)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        HEADS[f"ray://127.0.0.1:{client_port}"] = (port, temp)
        if include_dashboard:
            DASHBOARDS[f"ray://127.0.0.1:{client_port}"] = f"http://127.0.0.1:{dashboard_port}"
        yield f"ray://127.0.0.1:{client_port}"
    finally:
        stop_processes(temp)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(f"{temp}-wandb", ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A real Ray head (``ray start --head``, 2 CPUs, client server) on 127.0.0.1 for the module;
    yields its client address ``ray://127.0.0.1:PORT``."""
    with start_ray_head() as address:
        yield address


def _pythonpath() -> str:
    here = str(Path(__file__).resolve().parents[1] / "lib" / "tune")
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)


def search_env(**extra: str) -> dict[str, str]:
    """Environment of a search subprocess: no usage stats, one thread, the tests' modules."""
    return {**os.environ, **RAY_ENV, "PYTHONPATH": _pythonpath(), **extra}
