"""The launcher's wait for Ray itself (aframe_flow.clusters.ray_wait: the head's dashboard HTTP
API, no Ray client) and the search's retried first connection (aframe_lib.tune.tuner), against a
real Ray head (`ray start --head --include-dashboard=true`), a closed port and a silent one."""

from __future__ import annotations

import time

import pytest
from helpers.fixtures_ray import free_port

from aframe_flow.clusters import ClusterError, wait_for_ray
from aframe_flow.clusters import ray_wait as rw
from aframe_flow.clusters.manifests import RAY_VERSION


def test_a_closed_port_is_a_clear_error_in_seconds():
    address = f"ray://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        wait_for_ray(address, workers=1, timeout=2.0)
    assert time.monotonic() - start < 6
    text = str(info.value)
    assert address in text and "does not accept connections after 2 s" in text
    assert "Connection refused" in text


def test_the_search_retries_its_first_connection_then_names_the_address_and_timeout(caplog):
    from aframe_lib.tune.config import TuneSettings
    from aframe_lib.utils.ray_connect import connect

    address = f"ray://127.0.0.1:{free_port()}"
    settings = TuneSettings(space="unused.yaml", address=address, connect_timeout=2.5)
    start = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        connect(settings)
    elapsed = time.monotonic() - start
    assert 2.5 <= elapsed < 8
    text = str(info.value)
    assert address in text and "--tune.connect_timeout" in text and "in 2.5 s" in text
    attempts = int(text.split(" attempt(s)")[0].rsplit(" ", 1)[-1])
    assert attempts >= 2  # 0 s, 1 s, (3 s): backoff
    assert sum("retrying in" in r.message for r in caplog.records) == attempts - 1


def test_an_open_client_port_without_a_dashboard_times_out_naming_the_endpoint():
    """The client port answers (a listening socket), the dashboard's does not."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"ray://127.0.0.1:{listener.getsockname()[1]}"
        dashboard = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(TimeoutError) as info:
            wait_for_ray(address, workers=2, timeout=2.0, poll=0.2, dashboard=dashboard)
    text = str(info.value)
    assert f"does not report 2 worker(s) after 2 s (asked its dashboard, {dashboard}" in text
    assert "/api/v0/nodes" in text and "Connection refused" in text and "ray[default]" in text


def test_the_dashboard_is_found_beside_the_client_address():
    assert rw.dashboard_url("ray://aframe-head.bbhnet.svc.cluster.local:10001") == (
        "http://aframe-head.bbhnet.svc.cluster.local:8265")  # fmt: skip
    assert rw.dashboard_url("ray://203.0.113.7:10001") == "http://203.0.113.7:8265"


def test_another_ray_version_is_one_message_naming_both():
    rw.check_ray_version(RAY_VERSION, "http://h:8265")
    with pytest.raises(rw.RayVersionError) as info:
        rw.check_ray_version("2.9.3", "http://h:8265")
    assert isinstance(info.value, ClusterError)
    text = str(info.value)
    assert f"runs Ray 2.9.3, but this aframe-flow is pinned to Ray {RAY_VERSION}" in text
    assert "http://h:8265" in text and f"ray=={RAY_VERSION}" in text and "nox -s image" in text


@pytest.fixture(scope="module")
def ray_head_with_dashboard():
    """A real head with its dashboard (``ray[default]``): ``(client address, dashboard URL)``."""
    from helpers.fixtures_ray import DASHBOARDS, start_ray_head

    with start_ray_head(num_cpus=1, include_dashboard=True) as address:
        yield address, DASHBOARDS[address]


@pytest.mark.slow
def test_wait_for_ray_counts_the_workers_the_dashboard_reports(ray_head_with_dashboard):
    """The head alone: its dashboard's /api/version says the pinned Ray and /api/v0/nodes one
    alive node, the head: 0 workers; asking for 1 times out naming what it saw."""
    address, dashboard = ray_head_with_dashboard
    import json
    import urllib.request

    # what the wait reads, read here directly (the endpoints named in the docs)
    version = json.load(urllib.request.urlopen(dashboard + "/api/version", timeout=30))
    assert version["ray_version"] == RAY_VERSION
    assert rw.cluster_state(dashboard, timeout=30) == {
        "ray_version": RAY_VERSION, "nodes": 1, "workers": 0}  # fmt: skip
    assert wait_for_ray(address, workers=0, timeout=120, dashboard=dashboard) == 0
    with pytest.raises(TimeoutError) as info:
        wait_for_ray(address, workers=1, timeout=8, poll=1.0, dashboard=dashboard)
    text = str(info.value)
    assert address in text and "does not report 1 worker(s)" in text
    assert "last seen: 0 worker(s), 1 node(s) alive" in text


@pytest.mark.slow
def test_a_running_cluster_of_another_ray_is_refused(ray_head_with_dashboard, monkeypatch):
    """The launcher pinned to another Ray than the real head runs: refused at once."""
    address, dashboard = ray_head_with_dashboard
    monkeypatch.setattr(rw, "RAY_VERSION", "2.9.3")
    start = time.monotonic()
    with pytest.raises(rw.RayVersionError) as info:
        wait_for_ray(address, workers=0, timeout=60, dashboard=dashboard)
    assert time.monotonic() - start < 30
    assert f"runs Ray {RAY_VERSION}, but this aframe-flow is pinned to Ray 2.9.3" in str(info.value)


@pytest.mark.slow
def test_wait_for_ray_returns_once_a_worker_node_joins():
    """A worker node joins the head a few seconds later (``ray start --address``): the wait
    sees 0 workers first, then returns with 1."""
    import os
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from helpers.fixtures_ray import DASHBOARDS, HEADS, RAY_ENV, start_ray_head

    with start_ray_head(num_cpus=1, include_dashboard=True) as address:
        port, temp = HEADS[address]
        cmd = [str(Path(sys.executable).parent / "ray"), "start", f"--address=127.0.0.1:{port}",
               "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
               f"--temp-dir={temp}", "--disable-usage-stats"]  # fmt: skip
        env = {**os.environ, **RAY_ENV}
        joined = []
        join = threading.Timer(
            3.0, lambda: joined.append(subprocess.run(cmd, env=env, capture_output=True, text=True))
        )
        join.start()
        try:
            start = time.monotonic()
            n = wait_for_ray(address, workers=1, timeout=240, poll=1.0,
                             dashboard=DASHBOARDS[address])  # fmt: skip
            assert n == 1 and time.monotonic() - start >= 3.0
        finally:
            join.join()
        assert joined[0].returncode == 0, joined[0].stderr[-2000:]
