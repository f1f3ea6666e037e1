"""Targets: local paths and s3:// URLs (a real moto S3 server, reached through s3fs)."""

from __future__ import annotations

import law
import pytest

from aframe_flow.targets import RemoteFileTarget, file_target
from aframe_lib.utils import fs


def test_local_paths_are_law_local_targets(tmp_path):
    target = file_target(tmp_path / "model.pt")
    assert isinstance(target, law.LocalFileTarget) and not target.exists()
    (tmp_path / "model.pt").write_bytes(b"x")
    assert target.exists()


@pytest.mark.s3
def test_s3_targets_exist_only_once_written_and_can_be_removed(s3_bucket):
    url = f"{s3_bucket.rstrip('/')}/run/model.json"
    target = file_target(url)
    assert isinstance(target, RemoteFileTarget) and target.uri() == url
    assert not target.exists()
    fs.write_bytes_atomic(url, b"{}")
    assert target.exists()
    target.remove()
    assert not target.exists()
