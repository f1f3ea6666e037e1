"""aframe_lib.utils.fs tested directly: atomic writes (a failed or killed write leaves no file
that counts as done and loses nothing already saved), clean-up of killed writes' temporaries,
retries of transient storage errors; local paths and ``s3://`` on a real (moto) S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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
