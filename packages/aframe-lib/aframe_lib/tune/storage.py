"""Where a search lives: a local directory or ``s3://bucket/prefix`` (``AWS_ENDPOINT_URL``).

For ``s3://`` Ray gets an s3fs filesystem wrapped in ``pyarrow.fs.PyFileSystem`` and a path
without the scheme. Ray's own ``s3://`` handling builds a pyarrow ``S3FileSystem`` that ignored a
custom endpoint (ray-project/ray#41137); s3fs reads the same ``AWS_ENDPOINT_URL`` as the rest of
aframe (:func:`aframe_lib.utils.fs.filesystem`), so one setting serves data, searches and models.

Ray pickles that filesystem into every trial. Each process that unpickles it connects to *its
own* ``AWS_ENDPOINT_URL`` (:class:`~.s3handler.EnvS3Handler`): pods in a Kubernetes cluster
reach the store at its in-cluster address, while the driver outside uses the external one. The
driver's endpoint is only the fallback for nodes whose environment names none.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..utils import fs
from ..utils.errors import StorageError

if TYPE_CHECKING:
    import pyarrow.fs


def ray_storage(
    storage_dir: str, flag: str = "--tune.storage_dir"
) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for ``RunConfig``/``Tuner.restore``.

    Raises:
        StorageError: (a ``ConnectionError``) when the S3 endpoint cannot be reached or the
            bucket does not exist (checked here, before Ray runs).
    """
    if not fs.is_remote(storage_dir):
        path = Path(storage_dir).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return str(path), None
    from pyarrow.fs import PyFileSystem

    from .s3handler import EnvS3Handler

    filesystem, inner = fs.filesystem(storage_dir)
    bucket = inner.split("/", 1)[0]
    with fs.explain_storage_errors(storage_dir, flag):
        if not fs.retry(lambda: filesystem.exists(bucket)):
            raise StorageError(
                f"{storage_dir}: bucket {bucket!r} does not exist at "
                f"{fs.s3_endpoint() or 'AWS'}; create it or fix {flag}"
            )
    return inner.rstrip("/"), PyFileSystem(EnvS3Handler(fallback=fs.s3_endpoint()))


def write_summary(search_dir: str, summary: dict[str, Any]) -> list[str]:
    """Write ``summary.json`` and ``summary.csv`` (one row per trial) atomically; their paths."""
    json_path = fs.join(search_dir, "summary.json")
    csv_path = fs.join(search_dir, "summary.csv")
    fs.retry(lambda: fs.write_bytes_atomic(json_path, json.dumps(summary, indent=2).encode()))
    rows = summary["trials"]
    columns: list[str] = []
    for row in rows:
        columns += [k for k in _flat(row) if k not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(_flat(row))
    fs.retry(lambda: fs.write_bytes_atomic(csv_path, text.getvalue().encode()))
    return [json_path, csv_path]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "config"}
    out.update({f"config/{k}": v for k, v in row.get("config", {}).items()})
    return out


def copy_exported_model(checkpoint: Any, search_dir: str, names: tuple[str, ...]) -> list[str]:
    """Copy the exported model files of a trial's final Ray checkpoint into ``search_dir``."""
    import tempfile

    if checkpoint is None:
        return []
    copied = []
    with tempfile.TemporaryDirectory() as tmp:
        fs.retry(lambda: checkpoint.to_directory(tmp))
        for name in names:
            source = Path(tmp, name)
            if source.is_file():
                target = fs.join(search_dir, name)
                fs.retry(lambda s=source, t=target: fs.write_bytes_atomic(t, s.read_bytes()))
                copied.append(target)
    return copied
