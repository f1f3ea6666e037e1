"""The Deployments backend's wait for Ray itself (aframe_flow.clusters.ray_wait) and the search's
retried first connection (aframe_lib.tune.tuner), against a real Ray head and a closed port."""

from __future__ import annotations

import time

import pytest
from helpers.fixtures_ray import free_port

from aframe_flow.clusters import wait_for_ray

pytest.importorskip("ray")


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


@pytest.mark.slow
def test_wait_for_ray_counts_the_workers_the_head_reports(ray_head):
    """The head alone: 0 workers reported; asking for 1 times out naming what it saw."""
    assert wait_for_ray(ray_head, workers=0, timeout=120) == 0
    with pytest.raises(TimeoutError) as info:
        wait_for_ray(ray_head, workers=1, timeout=15, poll=1.0)
    text = str(info.value)
    assert ray_head in text and "does not report 1 worker(s)" in text
    assert "last seen: 0 worker(s), 1 node(s) alive" in text


@pytest.mark.slow
def test_wait_for_ray_returns_once_a_worker_node_joins():
    """A worker node joins the head a few seconds later (``ray start --address``): the wait
    sees 0 workers first, then returns with 1."""
    import os
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from helpers.fixtures_ray import HEADS, RAY_ENV, start_ray_head

    with start_ray_head(num_cpus=1) as address:
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
            assert wait_for_ray(address, workers=1, timeout=240, poll=1.0) == 1
            assert time.monotonic() - start >= 3.0
        finally:
            join.join()
        assert joined[0].returncode == 0, joined[0].stderr[-2000:]
