"""aframe_lib.utils.fs tested directly: atomic writes (a failed or killed write leaves no file
that counts as done and loses nothing already saved), clean-up of killed writes' temporaries,
retries of transient storage errors; local paths and ``s3://`` on a real (moto) S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from aframe_lib.utils import fs

# -- case 7: temporaries of killed writes are removed by the next write of the same target

WRITER = """
import sys, time
from aframe_lib.utils.fs import atomic_local_path
with atomic_local_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"partial")
    print(tmp, flush=True)
    time.sleep(60)
"""


def _start_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.exists() and tmp.parent == target.parent
    return proc, tmp


def test_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "waveforms.hdf5"
    proc, tmp = _start_writer(target)
    proc.kill()
    proc.wait()
    assert tmp.exists() and not target.exists()  # SIGKILL: no clean-up ran
    fs.write_bytes_atomic(target, b"done")
    assert target.read_bytes() == b"done"
    assert not tmp.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["waveforms.hdf5"]


def test_live_writers_temporary_is_never_touched(tmp_path):
    target = tmp_path / "waveforms.hdf5"
    proc, tmp = _start_writer(target)
    try:
        fs.write_bytes_atomic(target, b"other")
        assert tmp.exists()  # the other process is still writing it
    finally:
        proc.kill()
        proc.wait()


def test_foreign_temporaries_are_removed_only_when_old(tmp_path):
    target = tmp_path / "model.pt"
    other_host = tmp_path / ".model.pt.otherhost.123.abcd.tmp"
    old_format = tmp_path / ".model.pt.abc123.tmp"
    other_file = tmp_path / ".other.pt.abc123.tmp"
    for path in (other_host, old_format, other_file):
        path.write_bytes(b"partial")
    assert fs.remove_stale_temporaries(target) == []
    old = time.time() - fs.STALE_AFTER - 10
    for path in (other_host, old_format, other_file):
        os.utime(path, (old, old))
    removed = fs.remove_stale_temporaries(target)
    assert sorted(removed) == sorted([other_host, old_format])
    assert other_file.exists()


# -- atomic writes, local ------------------------------------------------------------------------


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_write_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "b" / "model.json"  # missing parents are created
    fs.write_bytes_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    fs.write_bytes_atomic(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert _entries(target.parent) == ["model.json"]


def test_the_temporary_is_hidden_beside_the_target_with_the_suffix_readers_need(tmp_path):
    target = tmp_path / "background-1000-4.hdf5"
    with fs.atomic_local_path(target, suffix=".hdf5") as tmp:
        # same folder: os.replace is a rename on one filesystem, never a copy
        assert tmp.parent == tmp_path and tmp.exists()
        assert tmp.name.startswith(".background-1000-4.hdf5.") and tmp.name.endswith(".tmp.hdf5")
        assert not target.exists()
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data" and _entries(tmp_path) == [target.name]


def test_a_failed_write_keeps_what_was_saved_and_leaves_nothing_new(tmp_path):
    saved = tmp_path / "saved.bin"
    fs.write_bytes_atomic(saved, b"saved")
    with pytest.raises(RuntimeError, match="failed"), fs.atomic_local_path(saved) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("failed")
    assert saved.read_bytes() == b"saved"
    new = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt), fs.atomic_local_path(new) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C: not an Exception, still cleaned up
    assert not new.exists()
    assert _entries(tmp_path) == ["saved.bin"]


def test_a_killed_write_keeps_what_was_saved(tmp_path):
    target = tmp_path / "waveforms.hdf5"
    fs.write_bytes_atomic(target, b"saved")
    proc, tmp = _start_writer(target)
    proc.kill()
    proc.wait()
    assert target.read_bytes() == b"saved"  # SIGKILL mid-write: the old file is whole
    assert tmp.read_bytes() == b"partial" and tmp.name.startswith(".")  # hidden, not the target
    fs.write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new" and _entries(tmp_path) == ["waveforms.hdf5"]


# -- atomic writes, s3:// ------------------------------------------------------------------------


@pytest.fixture
def local_tmp(tmp_path, monkeypatch) -> Path:
    """The folder where tempfile puts the local copy of an s3:// write (to see it is removed)."""
    folder = tmp_path / "tempdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.s3
def test_s3_write_round_trip_and_a_failed_write_keeps_the_saved_object(s3_bucket, local_tmp):
    target = fs.join(s3_bucket, "run", "model.json")
    assert target == f"{s3_bucket}/run/model.json" and fs.is_remote(target)
    fs.write_bytes_atomic(target, b"saved")
    s3, key = fs.filesystem(target)
    assert s3.cat_file(key) == b"saved"

    with pytest.raises(RuntimeError, match="failed"), fs.atomic_local_path(target) as tmp:
        assert tmp.parent == local_tmp and tmp.suffix == ".json"
        tmp.write_bytes(b"half")
        raise RuntimeError("failed")
    assert s3.cat_file(key) == b"saved"
    new = fs.join(s3_bucket, "run", "new.json")
    with pytest.raises(RuntimeError, match="failed"), fs.atomic_local_path(new) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("failed")
    assert not s3.exists(fs.filesystem(new)[1])
    assert _entries(local_tmp) == []  # the local copies are gone too

    fs.write_bytes_atomic(target, b"second")
    assert s3.cat_file(key) == b"second" and _entries(local_tmp) == []


@pytest.mark.s3
def test_s3_killed_write_uploads_nothing(s3_bucket, tmp_path):
    """The upload is one PUT after the data are complete: a writer killed before it leaves the
    saved object as it was (the env of the test, with the S3 endpoint, reaches the child)."""
    target = f"{s3_bucket}/waveforms.hdf5"
    fs.write_bytes_atomic(target, b"saved")
    cmd = [sys.executable, "-c", WRITER, target]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.read_bytes() == b"partial"  # written, not uploaded yet
    proc.kill()
    proc.wait()
    s3, key = fs.filesystem(target)
    assert s3.cat_file(key) == b"saved"
    assert s3.ls(s3_bucket.removeprefix("s3://"), detail=False) == [key]
    tmp.unlink()  # a killed process's local temporary (in the system temp folder)


def test_local_and_url_paths():
    assert not fs.is_remote("/data/bg") and not fs.is_remote("file:///data/bg")
    assert fs.is_remote("s3://bucket/bg")
    assert fs.join("s3://bucket/", "/bg/", "x.hdf5") == "s3://bucket/bg/x.hdf5"
    assert fs.join("/data", "bg", "x.hdf5") == "/data/bg/x.hdf5"
    local, path = fs.filesystem("file:///data/bg")
    assert path == "/data/bg" and "file" in local.protocol


# -- retries -------------------------------------------------------------------------------------


class ReadTimeoutError(Exception):
    """Named like botocore's: not an OSError, recognised by its name."""


def _flaky(errors: list[BaseException]):
    calls = []

    def fn():
        calls.append(time.monotonic())
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return fn, calls


@pytest.mark.parametrize(
    "error",
    [ConnectionResetError("reset"), TimeoutError("slow"), OSError(503, "SlowDown"),
     ReadTimeoutError("read timed out")],
)  # fmt: skip
def test_transient_errors_are_retried_with_doubling_delays(error):
    fn, calls = _flaky([error, error, error])
    assert fs.is_transient(error)
    assert fs.retry(fn, attempts=4, delay=0.02) == "ok"
    assert len(calls) == 4
    waits = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert all(w >= d for w, d in zip(waits, [0.02, 0.04, 0.08], strict=True)), waits


@pytest.mark.parametrize(
    "error",
    [FileNotFoundError(2, "missing"), PermissionError(13, "denied"), IsADirectoryError("dir"),
     ValueError("bad value"), KeyError("x")],
)  # fmt: skip
def test_permanent_errors_are_raised_at_once(error):
    fn, calls = _flaky([error])
    assert not fs.is_transient(error)
    with pytest.raises(type(error)):
        fs.retry(fn, attempts=4, delay=0)
    assert len(calls) == 1


def test_retry_gives_up_after_its_attempts_with_the_last_error():
    fn, calls = _flaky([ConnectionResetError(f"reset {i}") for i in range(5)])
    with pytest.raises(ConnectionResetError, match="reset 2"):
        fs.retry(fn, attempts=3, delay=0)
    assert len(calls) == 3
