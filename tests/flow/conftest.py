"""Fixtures of the flow tests (helpers live in tests/helpers/flow.py and k8s_api.py)."""

from __future__ import annotations

import pytest
from helpers.flow import law_env_for


@pytest.fixture
def law_env(tmp_path):
    """Environment of a `law run` in a subprocess: law home, config and outputs under tmp_path."""
    return law_env_for(tmp_path)


@pytest.fixture
def kube(tmp_path):
    """A Kubernetes API server of the tests' own (helpers/k8s_api.py) and a kr8s client pointed at
    it by a kubeconfig file: ``(server, client)``; short retry delays keep scripted faults quick."""
    from helpers.k8s_api import KubeAPI

    from aframe_flow.clusters import Kr8sClient

    server = KubeAPI()
    server.start()
    config = server.kubeconfig(tmp_path / "kubeconfig", namespace="bbhnet")
    client = Kr8sClient("bbhnet", kubeconfig=str(config), backoff=0.05, watch_window=5)
    try:
        yield server, client
    finally:
        client.close()
        server.stop()
