"""Task outputs as law targets, local or ``s3://``.

Local paths become ``law.LocalFileTarget``s; URLs (``s3://bucket/key``) become
:class:`RemoteFileTarget`s that ask fsspec (aframe-lib's ``utils.fs``, s3fs for ``s3://``,
``AWS_ENDPOINT_URL`` honoured) whether the object exists. The writers behind every target are
atomic (``aframe_lib.utils.fs.atomic_local_path``), so a target exists only once it is complete.
"""

from __future__ import annotations

import os

import law
from law.target.base import Target

from aframe_lib.utils import fs


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
        filesystem, inner = fs.filesystem(self.path)
        return fs.retry(lambda: filesystem.exists(inner))

    def remove(self, silent: bool = True) -> None:
        filesystem, inner = fs.filesystem(self.path)
        if filesystem.exists(inner):
            filesystem.rm_file(inner)
        elif not silent:
            raise FileNotFoundError(self.path)

    def uri(self, return_all: bool = False):
        return [self.path] if return_all else self.path


def file_target(path: str | os.PathLike) -> Target:
    """The law target of one output file: local or remote, chosen by the path."""
    if fs.is_remote(path):
        return RemoteFileTarget(str(path))
    return law.LocalFileTarget(os.path.abspath(os.path.expanduser(str(path))))


def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URLs alike."""
    return fs.join(base, *parts)
