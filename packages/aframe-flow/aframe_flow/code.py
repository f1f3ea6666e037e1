"""Which code a task's command runs, as a hash: what keys evaluation outputs.

Every package is a static ``0.1.0`` and a git revision misses uncommitted or ``--dev`` code, so
the hash is of the sources themselves: every ``.py``, ``.yaml`` and ``.json`` file of every
``aframe_*`` package this interpreter would import (the first of each name on ``sys.path``, as
``pkgutil`` finds them), or, with ``--dev`` and an image, of those the working tree binds over
the image's (``packages/*/aframe_*``). A command in an image without ``--dev`` runs the image's
packages: the image file stands for them (its path, size and modification time: rebuilding it
gives another hash). Nothing here imports the packages it hashes.
"""

from __future__ import annotations

import functools
import hashlib
import pkgutil
from pathlib import Path

PREFIX = "aframe_"  # the packages hashed: aframe-lib's, aframe-train's, aframe-flow's
SUFFIXES = (".py", ".yaml", ".json")


def packages(root: Path | None = None) -> dict[str, Path]:
    """The ``aframe_*`` packages a command would import: those of the working tree ``root``
    (``packages/*/aframe_*``), else the first of each name on this interpreter's path."""
    if root is not None:
        found = sorted(root.glob(f"packages/*/{PREFIX}*/__init__.py"))
        return {p.parent.name: p.parent for p in found}
    out = {}
    for info in pkgutil.iter_modules():  # sys.path order; a name's first location only
        path = getattr(info.module_finder, "path", None)
        if info.ispkg and info.name.startswith(PREFIX) and path:
            out[info.name] = Path(path) / info.name
    return dict(sorted(out.items()))


@functools.lru_cache(maxsize=16)
def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                   and "__pycache__" not in p.parts)  # fmt: skip
    for p in files:
        h.update(p.relative_to(path).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def source_digest(image: Path | None = None, dev: bool = False, root: Path | None = None) -> str:
    """A short hash of the code a command runs.

    Args:
        image: The Apptainer image the command runs in (``None``: this host's packages).
        dev: Whether the working tree's packages are bound over the image's (``--dev``).
        root: The working tree ``--dev`` binds (default: :func:`~aframe_flow.sandbox.repo_root`).

    Returns:
        12 hex digits.
    """
    parts = []
    if image is not None:
        stat = Path(image).stat()
        parts.append(f"image {Path(image).resolve()} {stat.st_size} {stat.st_mtime_ns}")
    if image is None or dev:
        if dev and image is not None and root is None:
            from .sandbox import repo_root

            root = repo_root()
        tree = root if (dev and image is not None) else None
        for name, path in packages(tree).items():
            parts.append(f"{name} {_tree_digest(path)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
