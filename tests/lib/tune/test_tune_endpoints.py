"""Which S3 endpoint each side of a search uses: the driver its own, the trials their node's.

In a Kubernetes cluster the pods reach the object store at an in-cluster address while the
driver (outside) uses the external one; both name the same store. Here two moto servers in this
process share one store (moto keeps its state per process) and each records the requests it
gets: endpoint A is the driver's ``AWS_ENDPOINT_URL``, endpoint B the Ray head's (so every Ray
worker and trial has B in its environment).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers.fixtures_ray import search_env, start_ray_head
from helpers.fixtures_s3 import CREDENTIALS

pytest.importorskip("ray.tune")
pytest.importorskip("s3fs")

HERE = Path(__file__).resolve().parent


class RecordingS3:
    """moto's S3 server on 127.0.0.1 that records ``(method, path)`` of every request."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.url = "http://{}:{}".format(*self.server.get_host_and_port())
        self.log: list[tuple[str, str]] = []
        app = self.server._server.app  # the werkzeug server's WSGI app

        def record(environ, start_response):
            self.log.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
            return app(environ, start_response)

        self.server._server.app = record

    def puts(self, word: str = "") -> list[str]:
        return [p for m, p in self.log if m in ("PUT", "POST") and word in p]


@pytest.fixture
def two_endpoints(monkeypatch):
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    a, b = RecordingS3(), RecordingS3()
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    try:
        yield a, b
    finally:
        a.server.stop()
        b.server.stop()


def test_the_storage_filesystem_uses_the_endpoint_of_the_process_that_unpickles_it(
    two_endpoints, monkeypatch
):
    """What Ray ships to every trial: rebuilt from the trial's environment, the driver's
    endpoint only where the node names none."""
    import boto3

    from aframe_lib.tune.storage import ray_storage

    a, b = two_endpoints
    boto3.client("s3", endpoint_url=a.url).create_bucket(Bucket="store")
    monkeypatch.setenv("AWS_ENDPOINT_URL", a.url)
    path, filesystem = ray_storage("s3://store/searches")
    assert path == "store/searches" and filesystem.handler.endpoint == a.url
    shipped = pickle.dumps(filesystem)
    monkeypatch.setenv("AWS_ENDPOINT_URL", b.url)  # a pod with the in-cluster endpoint
    in_pod = pickle.loads(shipped)
    with in_pod.open_output_stream("store/searches/from-pod.txt") as f:
        f.write(b"hello")
    assert b.puts("from-pod.txt") and not a.puts("from-pod.txt")
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # a node that names no endpoint: the driver's
    assert pickle.loads(shipped).handler.endpoint == a.url


@pytest.mark.slow
def test_trials_on_a_cluster_use_its_endpoint_and_the_driver_its_own(two_endpoints, tmp_path):
    import boto3

    a, b = two_endpoints
    bucket = f"search-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=a.url).create_bucket(Bucket=bucket)
    with start_ray_head(AWS_ENDPOINT_URL=b.url, **CREDENTIALS) as address:
        cmd = [
            sys.executable, "-m", "aframe_lib.tune", "--lightning_cli_cls=tune_tiny_cli.TinyCLI",
            "--config", str(HERE / "tiny.yaml"), f"--tune.space={HERE / 'tiny_space.yaml'}",
            "--tune.metric=valid_score", f"--tune.storage_dir=s3://{bucket}/runs",
            f"--tune.address={address}", "--tune.name=ep", "--tune.num_samples=1",
            "--tune.max_epochs=1", "--tune.grace_period=1", "--tune.connect_timeout=300",
            "--trainer.enable_checkpointing=true",
        ]  # fmt: skip
        env = search_env(AWS_ENDPOINT_URL=a.url, **CREDENTIALS)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                              cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the trial's checkpoints went to the cluster's endpoint B, none through the driver's A
    assert b.puts("/checkpoint_"), b.log[-20:]
    assert not a.puts("/checkpoint_"), a.puts()
    # the driver's own writes (the summary) went to A
    assert a.puts("/runs/ep/summary.json") and not b.puts("summary.json")
    summary = json.loads(
        boto3.client("s3", endpoint_url=a.url)
        .get_object(Bucket=bucket, Key="runs/ep/summary.json")["Body"]
        .read()
    )
    assert [t["status"] for t in summary["trials"]] == ["completed"]
    assert os.environ.get("AWS_ENDPOINT_URL") != b.url  # the test's own env untouched
