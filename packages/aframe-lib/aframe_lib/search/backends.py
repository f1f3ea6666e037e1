"""The network of a search: the exported TorchScript model, or its ONNX copy in onnxruntime.

A search scores whitened windows ``(batch, num_ifos, kernel_size)`` with one of two backends:

- ``torchscript``: ``model.pt`` (any device; the reference);
- ``onnx``: ``model.onnx`` beside it (written by the export, parity-checked there) run by
  onnxruntime on the CPU, ``threads`` single-threaded calls at once on slices of each batch,
  while the caller whitens the next batch (the scores of a batch are collected later, see
  :meth:`Network.submit`). At load, ``x ** 2`` and ``x ** 0.5`` nodes (ml4gw's ``GroupNorm1D``)
  become ``x * x`` and ``sqrt(x)``: the same values (``x * x`` is ``x ** 2`` exactly), found by
  onnxruntime's generic ``Pow`` kernel ~3x slower. The file itself is left untouched.
- ``auto`` (the default): ``onnx`` on a CPU when ``model.onnx`` exists and onnxruntime is
  installed (the ``aframe-lib[export]`` extra) and its scores equal TorchScript's on a check
  batch within :data:`PARITY_TOLERANCE`; ``torchscript`` otherwise (a GPU, no ONNX copy, or a
  mismatch, which is logged).

Both give the same scores within float32 rounding (tested: same events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from aframe_lib.utils.errors import ConfigError, ModelFileError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torchscript", "onnx")
# |onnx - torchscript| <= PARITY_TOLERANCE * (1 + max |torchscript|) on the check batch
PARITY_TOLERANCE = 1e-4


class Network:
    """Scores of whitened windows; :meth:`submit` may run in the background.

    The ``torchscript`` backend (any torch module): scores synchronously.

    Args:
        model: maps ``(batch, num_ifos, kernel_size)`` windows to ``(batch, 1)`` scores.
        device: where it runs (input batches must be there).
    """

    name = "torchscript"

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """Scores of ``batch``: ``(batch,)`` float32 (the first output of each window)."""
        y = self.model(batch)
        return y.reshape(len(batch), -1)[:, 0].float().cpu().numpy()

    def submit(self, batch: torch.Tensor) -> Callable[[], np.ndarray]:
        """Start scoring ``batch``; the returned function gives its scores (waits if need be)."""
        scores = self(batch)
        return lambda: scores

    @property
    def max_pending(self) -> int:
        """Batches a caller may have submitted and not yet collected."""
        return 1

    def close(self) -> None:
        """Release threads (a closed network still scores, synchronously)."""


class OnnxNetwork(Network):
    """``model.onnx`` in onnxruntime on the CPU, ``threads`` calls at once.

    Args:
        serialized: the ONNX model's bytes.
        threads: concurrent single-threaded onnxruntime calls (each on a slice of a batch).
    """

    name = "onnx"

    def __init__(self, serialized: bytes, threads: int = 1) -> None:
        import onnxruntime

        from aframe_lib.export.onnx import INPUT_NAME

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # parallel calls on slices: no thread-pool overhead
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # unused-initializer warnings after the rewrite
        self.session = onnxruntime.InferenceSession(
            fast_onnx(serialized), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = INPUT_NAME
        self.device = torch.device("cpu")
        self.threads = max(1, int(threads))
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def _run(self, x: np.ndarray) -> np.ndarray:
        (y,) = self.session.run(None, {self.input_name: x})
        return np.asarray(y, np.float32).reshape(len(x), -1)[:, 0]

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.submit(batch)()

    def submit(self, batch: torch.Tensor) -> Callable[[], np.ndarray]:
        x = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        if self.pool is None:
            scores = self._run(x)
            return lambda: scores
        step = -(-len(x) // self.threads)
        futures: list[Future] = [
            self.pool.submit(self._run, x[i : i + step]) for i in range(0, len(x), step)
        ]
        return lambda: np.concatenate([f.result() for f in futures])

    @property
    def max_pending(self) -> int:
        return 2 if self.pool is not None else 1

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


def fast_onnx(serialized: bytes) -> bytes:
    """The model with ``Pow(x, 2)`` as ``Mul(x, x)`` and ``Pow(x, 0.5)`` as ``Sqrt(x)``."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load_from_string(serialized)
    graph = proto.graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    nodes, changed = [], 0
    for node in graph.node:
        exponent = constants.get(node.input[1]) if node.op_type == "Pow" else None
        value = numpy_helper.to_array(exponent) if exponent is not None else None
        if value is not None and value.size == 1 and float(value) in (2.0, 0.5):
            inputs = [node.input[0]] * 2 if float(value) == 2.0 else [node.input[0]]
            op = "Mul" if float(value) == 2.0 else "Sqrt"
            nodes.append(helper.make_node(op, inputs, list(node.output), name=node.name))
            changed += 1
        else:
            nodes.append(node)
    if not changed:
        return serialized
    del graph.node[:]
    graph.node.extend(nodes)
    return proto.SerializeToString()


def onnx_path(path: str) -> str:
    """Where the export writes the ONNX copy of ``path`` (``model.pt`` -> ``model.onnx``)."""
    stem = path[: -len(".pt")] if path.endswith(".pt") else path
    return stem + ".onnx"


def default_threads() -> int:
    """Concurrent network calls on a CPU: torch's intra-op thread count (``OMP_NUM_THREADS``)."""
    return max(1, torch.get_num_threads())


def load_network(
    path: str,
    model: torch.nn.Module,
    device: torch.device,
    input_shape: tuple[int, ...],
    backend: str = "auto",
    threads: int | None = None,
) -> Network:
    """The network that scores the search's windows (see the module docstring).

    Args:
        path: the exported ``model.pt`` (``model.onnx`` is looked for beside it).
        model: the loaded TorchScript model (the reference, and the ``torchscript`` backend).
        device: the search's device; ``onnx`` runs on a CPU only.
        input_shape: ``(num_ifos, kernel_size)``, one window (for the parity check).
        backend: ``auto``, ``torchscript`` or ``onnx``.
        threads: concurrent onnxruntime calls; ``None``: :func:`default_threads`.

    Raises:
        ConfigError: an unknown backend, or ``onnx`` on a GPU or without onnxruntime.
        ModelFileError: ``onnx`` without ``model.onnx``.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: must be one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    if backend == "onnx" and device.type != "cpu":
        raise ConfigError(
            f"backend='onnx' runs on the CPU only, the search's device is {device}: "
            "use backend 'torchscript' (or 'auto') on a GPU, or device 'cpu'"
        )
    reference = Network(model, device)
    if backend == "torchscript" or device.type != "cpu":
        return reference
    serialized, why = _read_onnx(path)
    if serialized is None:
        if backend == "onnx":
            kind = ModelFileError if "not found" in why else ConfigError
            raise kind(f"backend='onnx': {why}")
        logger.debug("search backend torchscript: %s", why)
        return reference
    network = OnnxNetwork(serialized, default_threads() if threads is None else threads)
    if backend == "auto":
        diff, scale = parity(network, reference, input_shape)
        if diff > PARITY_TOLERANCE * (1 + scale):
            logger.warning(
                "search backend torchscript: %s differs from %s by %.3g on a check batch "
                "(tolerance %.3g); re-export the model",
                onnx_path(path), path, diff, PARITY_TOLERANCE * (1 + scale),
            )  # fmt: skip
            network.close()
            return reference
    logger.info("search backend onnx: %s, %d thread(s)", onnx_path(path), network.threads)
    return network


def _read_onnx(path: str) -> tuple[bytes | None, str]:
    """``model.onnx``'s bytes, or ``None`` and why not."""
    from aframe_lib.utils import fs

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return None, (
            f"onnxruntime/onnx are not installed ({exc}): pip install 'aframe-lib[export]'"
        )
    target = onnx_path(str(path))
    filesystem, inner = fs.filesystem(target)
    if not filesystem.exists(inner):
        return None, f"{target} not found (export the model with its ONNX copy)"
    with filesystem.open(inner, "rb") as f:
        return f.read(), ""


def parity(network: Network, reference: Network, shape: tuple[int, ...]) -> tuple[float, float]:
    """``max |network - reference|`` and ``max |reference|`` on 16 N(0, 1) windows."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn((16, *shape), generator=generator)
    expected = reference(batch.to(reference.device))
    got = network(batch)
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def describe(network: Network) -> str:
    """``onnx (2 threads)`` / ``torchscript``: for logs and the events file's attributes."""
    if isinstance(network, OnnxNetwork):
        return f"onnx ({network.threads} thread{'s' if network.threads > 1 else ''})"
    return network.name
