"""Task outputs as law targets, local or ``s3://``, and the few file helpers the tasks need.

Local paths become ``law.LocalFileTarget``s; URLs (``s3://bucket/key``) become
:class:`RemoteFileTarget`s that ask fsspec (s3fs for ``s3://``, the ``aframe-flow[s3]`` extra;
``AWS_ENDPOINT_URL`` honoured) whether the object exists.

The helpers are flow's own (not aframe-lib's ``utils.fs``), so that a login-node install of
aframe-flow needs no torch: :func:`write_bytes_atomic` and :func:`atomic_local_path` write to a
temporary file and rename it (or upload it in one PUT), so a target exists only once complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import law
from law.target.base import Target

T = TypeVar("T")
_PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError)


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL (``s3://...``) rather than a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts for local paths and URLs alike."""
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


def filesystem(path: str | os.PathLike) -> tuple[Any, str]:
    """The fsspec filesystem of ``path`` and the path within it (a fresh s3fs client each time,
    so a changed ``AWS_ENDPOINT_URL`` is honoured)."""
    import fsspec

    path = str(path)
    if not is_remote(path):
        return fsspec.filesystem("file"), str(Path(path.removeprefix("file://")).expanduser())
    if path.split("://", 1)[0] in ("s3", "s3a"):
        try:
            import s3fs
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(f"{path}: s3:// needs s3fs: pip install 'aframe-flow[s3]'") from exc
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs = {"endpoint_url": endpoint} if endpoint else {}
        return s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs=kwargs), path.split(
            "://", 1
        )[1]
    return fsspec.core.url_to_fs(path)


def retry(fn: Callable[[], T], attempts: int = 4, delay: float = 0.5) -> T:
    """``fn()``, retried with backoff on transient storage errors (not on missing files)."""
    for i in range(attempts):
        try:
            return fn()
        except OSError as exc:
            if i == attempts - 1 or isinstance(exc, _PERMANENT):
                raise
            time.sleep(delay * 2**i)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def atomic_local_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary local path to write; on success it replaces ``target`` (local or remote)."""
    target = str(target)
    if is_remote(target):
        fd, tmp = tempfile.mkstemp(suffix=Path(target).suffix)
        os.close(fd)
        try:
            yield Path(tmp)
            remote, inner = filesystem(target)
            retry(lambda: remote.put_file(tmp, inner))
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    final = Path(target).expanduser()
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` (local or remote) atomically."""
    with atomic_local_path(target) as tmp:
        tmp.write_bytes(data)


def read_bytes(path: str) -> bytes:
    remote, inner = filesystem(path)
    return retry(lambda: remote.cat_file(inner))


def exists(path: str) -> bool:
    remote, inner = filesystem(path)
    return retry(lambda: remote.exists(inner))


def copy_atomic(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` (each local or remote); ``dst`` appears only once complete."""
    remote, inner = filesystem(src)
    with atomic_local_path(dst) as tmp:
        retry(lambda: remote.get_file(inner, str(tmp)))


def get_directory(src: str, dst: str | os.PathLike) -> int:
    """Copy every file below the directory ``src`` (local or remote) into ``dst``, keeping the
    relative layout; the number of files. One file at a time, so memory does not grow with the
    directory (disk does: ``dst`` holds them all)."""
    remote, inner = filesystem(src)
    inner = inner.rstrip("/")
    files = retry(lambda: remote.find(inner))
    if not files:
        raise FileNotFoundError(f"{src}: no such directory, or it is empty")
    for path in files:
        local = Path(dst, path[len(inner) :].lstrip("/"))
        local.parent.mkdir(parents=True, exist_ok=True)
        retry(lambda path=path, local=local: remote.get_file(path, str(local)))
    return len(files)


class RemoteFileTarget(Target):
    """A file behind a URL (``s3://...``), checked and removed through fsspec.

    Args:
        path: the URL.
    """

    def __init__(self, path: str, **kwargs):
        self.path = str(path)
        super().__init__(**kwargs)

    def _repr_pairs(self):
        return [("path", self.path)]

    def exists(self) -> bool:
        return exists(self.path)

    def remove(self, silent: bool = True) -> None:
        remote, inner = filesystem(self.path)
        if remote.exists(inner):
            remote.rm_file(inner)
        elif not silent:
            raise FileNotFoundError(self.path)

    def uri(self, return_all: bool = False):
        return [self.path] if return_all else self.path


def file_target(path: str | os.PathLike) -> Target:
    """The law target of one output file: local or remote, chosen by the path."""
    if is_remote(path):
        return RemoteFileTarget(str(path))
    return law.LocalFileTarget(os.path.abspath(os.path.expanduser(str(path))))
