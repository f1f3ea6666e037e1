"""Readers of the files an offline W&B run writes (shared by the W&B tests)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path


def run_dir(root: Path) -> Path:
    (path,) = (root / "wandb").glob("offline-run-*")
    return path


def wandb_records(path: Path) -> Iterator:
    """The protobuf records of a ``run-*.wandb`` file (what ``wandb sync`` would upload).

    The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB
    blocks of chunks, each with a 7-byte header (crc32, length, type: full/first/middle/last).
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block trailer / zero padding
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def stored_config(root: Path) -> dict:
    """The config updates the run log holds, merged."""
    (path,) = run_dir(root).glob("run-*.wandb")
    config = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
    return config


def run_info(root: Path) -> dict:
    """Name, group, tags, project and entity from the run record of the run log."""
    (path,) = run_dir(root).glob("run-*.wandb")
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "run":
            run = record.run
            return {
                "name": run.display_name,
                "group": run.run_group,
                "tags": list(run.tags),
                "project": run.project,
                "entity": run.entity,
            }
    raise AssertionError(f"no run record in {path}")
