"""Which code a task's command runs, as a hash: what keys evaluation outputs.

Every package is a static ``0.1.0`` and a git revision misses uncommitted or ``--dev`` code, so
the hash is of the sources themselves: every ``.py``, ``.yaml`` and ``.json`` file of
``aframe_lib`` and ``aframe_train`` as this host would import them (or, with ``--dev`` and an
image, as the working tree binds them over the image's). A command in an image without
``--dev`` runs the image's packages: the image file stands for them (its path, size and
modification time: rebuilding it gives another hash). Nothing here imports aframe-lib.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

MODULES = ("aframe_lib", "aframe_train")  # what aframe-train evaluate runs
SUFFIXES = (".py", ".yaml", ".json")


def _package_dir(module: str, root: Path | None) -> Path | None:
    if root is not None:  # the working tree: packages/aframe-lib/aframe_lib ...
        path = root / "packages" / module.replace("_", "-") / module
        return path if path.is_dir() else None
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


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
        12 hex digits; packages that cannot be found count as ``missing``.
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
        for module in MODULES:
            path = _package_dir(module, tree)
            parts.append(f"{module} {_tree_digest(path) if path else 'missing'}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
