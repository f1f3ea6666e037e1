"""TorchScript export, checked against the eager model on a real batch."""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any

import torch
from torch import Tensor

from ..utils import fs
from ..utils.errors import explain_model_file

logger = logging.getLogger(__name__)


def export_torchscript(
    model: torch.nn.Module,
    example: Tensor,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    check: Tensor | None = None,
) -> float:
    """Trace ``model`` on ``example`` and save it, with ``<path stem>.json`` beside it.

    The trace is run on the CPU (a copy of the model is moved there), compared with the eager
    model on ``check`` (another batch: on the tracing batch itself a trace agrees by
    construction, even one that baked a data-dependent branch in), and written atomically to
    ``path`` (local or ``s3://``). The JSON file records the input shape (batch dimension free)
    and any ``metadata`` (e.g. the preprocessing settings a search needs to reproduce the
    training inputs).

    Args:
        model: The network to export.
        example: A real input batch, ``(batch, ...)``, to trace on.
        path: Where to write the TorchScript file (conventionally ``model.pt``).
        metadata: Extra JSON-serialisable facts stored beside the model; a ``parity`` dict in
            it gets this check's difference added as ``parity["torchscript"]``.
        check: A batch other than ``example`` to compare on; ``None`` compares on
            ``example`` (which only shows that the trace ran).

    Returns:
        The largest absolute difference between the traced and the eager outputs on ``check``.
    """
    model = copy.deepcopy(model).cpu().eval()
    example = example.detach().cpu()
    check = example if check is None else check.detach().cpu()
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
        diff = (traced(check) - model(check)).abs().max().item()
    logger.info("TorchScript export of %s: max abs difference vs eager %.3g", path, diff)
    with fs.atomic_local_path(path) as tmp:
        torch.jit.save(traced, str(tmp))
    info = {"input_shape": [None, *example.shape[1:]], "max_abs_diff": diff, **(metadata or {})}
    if isinstance(info.get("parity"), dict):  # the checks of several formats, side by side
        info["parity"] = {"torchscript": diff, **info["parity"]}
    stem = str(path)[: -len(".pt")] if str(path).endswith(".pt") else str(path)
    fs.write_bytes_atomic(stem + ".json", json.dumps(info, indent=2, default=str).encode())
    return diff


def load_exported(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a model written by :func:`export_torchscript` and its JSON metadata.

    Raises:
        ModelFileError: for a missing, corrupt or truncated ``model.pt`` or ``model.json``,
            naming the file.
    """
    filesystem, inner = fs.filesystem(path)
    with explain_model_file(path), filesystem.open(inner, "rb") as f:
        model = torch.jit.load(f, map_location="cpu")
    stem = inner[: -len(".pt")] if inner.endswith(".pt") else inner
    meta = str(path)[: -len(".pt")] + ".json" if str(path).endswith(".pt") else f"{path}.json"
    with explain_model_file(meta, "metadata"), filesystem.open(stem + ".json", "r") as f:
        info = json.load(f)
    return model, info
