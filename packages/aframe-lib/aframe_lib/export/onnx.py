"""ONNX export, checked against the eager model with onnxruntime on a real batch.

Needs ``onnx`` and ``onnxruntime`` (the ``aframe-lib[export]`` extra), imported only when a
function here is called. The exporter is torch's TorchScript-based one (``dynamo=False``): it
runs offline with nothing beyond ``onnx``, whereas the ``torch.export``-based exporter also needs
``onnxscript``; the torch range aframe-lib supports (<2.11) still ships it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..utils import fs

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"
# the ONNX metadata_props key holding the JSON metadata (input shape, max_abs_diff, ...)
METADATA_KEY = "aframe"


def require_onnx() -> None:
    """Raise an ImportError naming the extra when ``onnx``/``onnxruntime`` are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"ONNX export needs onnx and onnxruntime ({exc}): pip install 'aframe-lib[export]'"
        ) from exc


def export_onnx(
    model: torch.nn.Module,
    example: Tensor,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    opset: int = 17,
    check: Tensor | None = None,
) -> float:
    """Export ``model`` to ONNX with a free batch dimension, check it, and save it atomically.

    A CPU copy of the model is exported on ``example``; the ONNX graph is then run with
    onnxruntime on ``check`` (a batch other than the exporting one; ``None``: ``example``) and
    on its first sample alone (which checks that the batch axis really is dynamic), and
    compared with the eager model. Submodules with a ``prepare_onnx_export()`` method (e.g.
    ``aframe_train``'s Q-transform, exported as matrix products) have it called first, outside
    the traced graph. The input is named ``input`` and the output ``output``. The input shape
    (batch free), the difference and ``metadata`` are stored as JSON in the model's
    ``metadata_props`` under ``"aframe"``, so the file is self-describing (see
    :func:`load_onnx`).

    Args:
        model: The network to export; it must return one tensor.
        example: A real input batch, ``(batch, ...)``.
        path: Where to write the ONNX file (local or ``s3://``; conventionally ``model.onnx``).
        metadata: Extra JSON-serialisable facts stored in the model.
        opset: ONNX opset.
        check: The batch to compare on (see above).

    Returns:
        The largest absolute difference between the onnxruntime and the eager outputs on
        ``check``.

    Raises:
        ImportError: when onnx or onnxruntime is missing, naming the extra to install.
    """
    require_onnx()
    import onnx

    model = copy.deepcopy(model).cpu().eval()
    example = example.detach().cpu()
    check = example if check is None else check.detach().cpu()
    for module in model.modules():  # e.g. constants an ONNX-only code path needs, untraced
        prepare = getattr(module, "prepare_onnx_export", None)
        if callable(prepare):
            prepare()
    with fs.atomic_local_path(path, suffix=".onnx") as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.9 warns that the TorchScript-based exporter is no longer the default
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        diff = _max_abs_diff(model, tmp.read_bytes(), check)
        info = {
            "input_shape": [None, *example.shape[1:]],
            "max_abs_diff": diff,
            "opset": opset,
            **(metadata or {}),
        }
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(info, default=str)
        onnx.save(proto, str(tmp))
    logger.info("ONNX export of %s: max abs difference vs eager %.3g", path, diff)
    return diff


def _max_abs_diff(model: torch.nn.Module, serialized: bytes, example: Tensor) -> float:
    """Largest |onnxruntime - eager| on ``example`` and on its first sample alone."""
    import onnxruntime

    session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    diff = 0.0
    for X in (example, example[:1]):
        with torch.no_grad():
            expected = model(X).numpy()
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: X.numpy()})
        if got.shape != expected.shape:
            raise RuntimeError(f"ONNX output shape {got.shape} != eager {expected.shape}")
        diff = max(diff, float(abs(got - expected).max()))
    return diff


def load_onnx(path: str | os.PathLike) -> tuple[onnxruntime.InferenceSession, dict[str, Any]]:
    """Open a model written by :func:`export_onnx` (local or ``s3://``) and its metadata.

    Returns:
        An onnxruntime CPU session (feed ``{"input": array}``) and the stored metadata.
    """
    require_onnx()
    import onnx
    import onnxruntime

    filesystem, inner = fs.filesystem(path)
    with filesystem.open(inner, "rb") as f:
        serialized = f.read()
    proto = onnx.load_from_string(serialized)
    props = {p.key: p.value for p in proto.metadata_props}
    info = json.loads(props.get(METADATA_KEY, "{}"))
    session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    return session, info
