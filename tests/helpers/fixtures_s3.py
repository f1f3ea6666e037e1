"""A real S3 endpoint for tests: moto's HTTP server on 127.0.0.1, reached by s3fs over HTTP.

Nothing is patched: code under test finds the server through ``AWS_ENDPOINT_URL``, exactly as it
would find a Ceph or MinIO gateway.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

# what the moto server accepts (any non-empty keys), for the processes the tests start
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Start moto's S3 server on a free port of 127.0.0.1 for the session; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, uniquely named bucket on ``s3_server``; yields ``s3://name``.

    Sets ``AWS_ENDPOINT_URL`` and dummy credentials for the test only.
    """
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"
