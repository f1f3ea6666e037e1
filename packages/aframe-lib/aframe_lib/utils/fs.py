"""Filesystem helpers shared by every layer: local paths and ``s3://`` URLs through fsspec.

``s3://`` access uses s3fs (the ``aframe-lib[s3]`` extra), imported only when an ``s3://`` path is
used. The endpoint comes from ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) so the same code
reaches AWS, a Ceph/MinIO gateway, or a test server on 127.0.0.1.

Every writer here is atomic: data go to a temporary file beside the target (or to a local
temporary file that is uploaded in one PUT for ``s3://``), then are renamed into place, so a
killed process never leaves a file that later counts as complete.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import fsspec

T = TypeVar("T")

# errors that a retry cannot fix, although they are OSErrors
_PERMANENT = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
# read-ahead (bytes) of an s3:// HDF5 file read in part (a background file's header or chunks, a
# data file's provenance attributes): one default HDF5 chunk of background (131072 float32
# samples), so a header costs about one block and a chunk read fetches its bytes plus at most one
# block per IFO, where s3fs's default (5 MiB) would fetch whole small files and several times a
# chunk of a large one
HDF5_BLOCK = 512 * 2**10
# botocore/aiohttp network errors that are not OSErrors (matched by name: no import needed).
# Connect errors (EndpointConnectionError) are left out: botocore has already retried those.
_TRANSIENT_NAMES = {
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ServerDisconnectedError",
    "ClientPayloadError",
}


_UMASK = os.umask(0)
os.umask(_UMASK)


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL (``s3://...``) rather than a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def s3_endpoint() -> str | None:
    """The S3 endpoint to use, from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def filesystem(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``path`` and the path within it.

    Raises:
        ImportError: for ``s3://`` paths when s3fs is missing, naming the extra to install.
    """
    import fsspec

    path = str(path)
    if not is_remote(path):
        return fsspec.filesystem("file"), str(Path(path.removeprefix("file://")).expanduser())
    protocol = path.split("://", 1)[0]
    if protocol in ("s3", "s3a"):
        try:
            import s3fs
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(f"reading {path!r} needs s3fs: pip install 'aframe-lib[s3]'") from exc
        kwargs = {}
        if endpoint := s3_endpoint():
            kwargs["endpoint_url"] = endpoint
        # cache_regions/skip_instance_cache: a fresh client per call so that a changed
        # AWS_ENDPOINT_URL (e.g. between tests, or inside a Ray worker) is honoured
        fs = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs=kwargs)
        return fs, path.split("://", 1)[1]
    fs, inner = fsspec.core.url_to_fs(path)
    return fs, inner


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts for local paths and URLs alike."""
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


_HOST = socket.gethostname().split(".", 1)[0].replace(".", "_") or "host"
STALE_AFTER = 6 * 3600.0  # s: a temporary not written for this long is abandoned, whoever made it


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(final: Path, now: float | None = None) -> list[Path]:
    """Delete the temporaries of earlier, killed writes of ``final``; the paths removed.

    A temporary is ``.{name}.{host}.{pid}.XXXX.tmp`` beside ``final``. It is removed when its
    writer ran on this host and that process is gone, or (writers on other hosts of a shared
    filesystem, names of another format) when it has not changed for :data:`STALE_AFTER`
    seconds. A temporary that a live process is writing is never touched.
    """
    now = time.time() if now is None else now
    removed = []
    for tmp in final.parent.glob(f".{glob.escape(final.name)}.*.tmp*"):
        parts = tmp.name[len(final.name) + 2 :].split(".")
        try:
            if len(parts) >= 3 and parts[0] == _HOST and parts[1].isdigit():
                stale = not _pid_alive(int(parts[1]))
            else:
                stale = now - tmp.stat().st_mtime > STALE_AFTER
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # finished or removed by its writer meanwhile
            continue
    return removed


@contextlib.contextmanager
def atomic_local_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary local path to write; on success it replaces ``target`` (local or remote).

    On error the temporary file is removed and ``target`` is left untouched; a temporary left
    by a killed process is removed by the next write of the same target (see
    :func:`remove_stale_temporaries`).
    """
    target = str(target)
    if is_remote(target):
        fd, tmp = tempfile.mkstemp(suffix=suffix or Path(target).suffix)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            fs, inner = filesystem(target)
            fs.put_file(str(tmp_path), inner)
        finally:
            tmp_path.unlink(missing_ok=True)
        return

    final = Path(target).expanduser()
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    fd, tmp = tempfile.mkstemp(
        dir=final.parent,
        prefix=f".{final.name}.{_HOST}.{os.getpid()}.",
        suffix=".tmp" + (suffix or ""),
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; a finished file gets the permissions a plain open() would give
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` (local or remote) atomically."""
    with atomic_local_path(target) as tmp:
        tmp.write_bytes(data)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` looks like a transient storage/network error worth retrying.

    Missing files and denied permissions are not; other ``OSError``s (s3fs turns throttling and
    5xx responses into them), timeouts and botocore/aiohttp connection errors are.
    """
    if isinstance(exc, _PERMANENT):
        return False
    return isinstance(exc, OSError) or type(exc).__name__ in _TRANSIENT_NAMES


def retry(fn: Callable[[], T], attempts: int = 4, delay: float = 0.5) -> T:
    """Call ``fn()``, retrying transient errors (see :func:`is_transient`) with backoff.

    Args:
        fn: the operation, without arguments.
        attempts: calls in all before the last error is raised.
        delay: seconds before the first retry; doubled after each.
    """
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if i == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(delay * 2**i)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def explain_storage_errors(path: str | os.PathLike, field: str | None = None) -> Iterator[None]:
    """Re-raise an S3 failure on ``path`` as a :class:`~aframe_lib.utils.errors.StorageError`.

    The message names ``path``, the config ``field`` it came from (e.g. ``"data.data_dir"``)
    and whether the endpoint, the credentials or the bucket is the problem, with the fix.
    A missing key stays a ``FileNotFoundError`` (callers say which file or directory they
    expected); other errors pass unchanged. ``StorageError`` is a ``ConnectionError``.
    """
    from .errors import AframeError, classify_storage_error, storage_error

    try:
        yield
    except AframeError:
        raise
    except Exception as exc:
        if classify_storage_error(exc) not in ("endpoint", "credentials", "bucket"):
            raise
        error = storage_error(str(path), field, exc)
        if error is None:
            raise
        raise error from exc
