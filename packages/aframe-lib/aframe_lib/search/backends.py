"""The network of a search: the exported TorchScript model, or its ONNX copy in onnxruntime.

A search scores whitened windows ``(batch, num_ifos, kernel_size)`` with one of two backends:

- ``torchscript``: ``model.pt`` (any device; the reference);
- ``onnx``: ``model.onnx`` beside it (written by the export, parity-checked there) run by
  onnxruntime on the CPU: ``threads`` single-threaded calls at once on slices of each batch (at
  most :data:`CALL_SIZE` windows each), while the caller whitens the next batch (see
  :meth:`Network.submit`). At load the graph is rewritten in memory into faster kernels of the
  same arithmetic (:func:`fast_onnx`: ``Pow`` nodes, ml4gw's ``GroupNorm1D``), checked against
  the graph as exported; the file is left untouched.
- ``auto`` (the default): ``onnx`` on a CPU when ``model.onnx`` exists and onnxruntime is
  installed (the ``aframe-lib[export]`` extra) and its scores equal TorchScript's on a check
  batch within :data:`PARITY_TOLERANCE`; ``torchscript`` otherwise (a GPU, no ONNX copy, or a
  mismatch, which is logged).

Both give the same scores within float32 rounding (tested: same events).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from aframe_lib.utils.errors import ConfigError, ModelFileError

from .settings import BACKENDS

logger = logging.getLogger(__name__)

# |onnx - torchscript| <= PARITY_TOLERANCE * (1 + max |torchscript|) on the check batch
PARITY_TOLERANCE = 1e-4
# windows per onnxruntime call: activations of up to ~32 windows stay in a core's cache (the
# quickstart network: ~730x real time per CPU-second at 8-32, ~640x at 64-128)
CALL_SIZE = 32


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

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        """Around a stream of :meth:`submit` calls (the whitening runs in the caller)."""
        yield

    def close(self) -> None:
        """Release threads (a closed network still scores, synchronously)."""


class OnnxNetwork(Network):
    """``model.onnx`` in onnxruntime on the CPU, ``threads`` calls at once.

    Args:
        serialized: the ONNX model's bytes.
        threads: concurrent single-threaded onnxruntime calls (each on a slice of a batch).
        input_shape: one window's shape, to check the load-time rewrite (:func:`fast_onnx`).
    """

    name = "onnx"

    def __init__(
        self, serialized: bytes, threads: int = 1, input_shape: tuple[int, ...] | None = None
    ) -> None:
        import onnxruntime

        from aframe_lib.export.onnx import INPUT_NAME

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # parallel calls on slices: no thread-pool overhead
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # unused-initializer warnings after the rewrite
        self.session = onnxruntime.InferenceSession(
            fast_onnx(serialized, input_shape), options, providers=["CPUExecutionProvider"]
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
        step = min(CALL_SIZE, -(-len(x) // self.threads))
        pieces = [x[i : i + step] for i in range(0, len(x), step)]
        if self.pool is None:
            scores = np.concatenate([self._run(piece) for piece in pieces])
            return lambda: scores
        futures: list[Future] = [self.pool.submit(self._run, piece) for piece in pieces]
        return lambda: np.concatenate([f.result() for f in futures])

    @property
    def max_pending(self) -> int:
        return 2 if self.pool is not None else 1

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        """The caller's torch ops (the whitening) on one thread meanwhile: the network's calls
        keep the cores busy, and torch's idle intra-op threads would spin on them (measured on
        2 loaded cores: 3x the CPU time per second of strain with 2 torch threads)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


def fast_onnx(serialized: bytes, input_shape: tuple[int, ...] | None = None) -> bytes:
    """The model with the same arithmetic in onnxruntime's faster kernels.

    - ``Pow(x, 2)`` -> ``Mul(x, x)`` (the same value) and ``Pow(x, 0.5)`` -> ``Sqrt(x)``;
    - each ml4gw ``GroupNorm1D`` (mean and mean square of the group, ``x * scale + shift``; a
      dozen nodes and six passes over the activations) -> ``InstanceNormalization`` over
      ``(batch, groups, channels_per_group * length)`` and the per-channel affine
      ``x * weight + bias`` in one pass (``BatchNormalization`` with mean 0, variance 1 and
      epsilon 0): the same normalisation, its variance computed in two passes (as
      ``torch.nn.GroupNorm`` does) rather than as ``E[x^2] - E[x]^2``.

    With ``input_shape`` (one window), the rewritten model is run beside the original on a
    random batch and kept only when they agree within :data:`PARITY_TOLERANCE`.
    """
    import onnx

    proto = onnx.load_from_string(serialized)
    changed = _rewrite_pow(proto.graph) + _rewrite_group_norms(proto.graph)
    if not changed:
        return serialized
    fast = proto.SerializeToString()
    if input_shape is not None:
        x = np.random.default_rng(0).normal(size=(8, *input_shape)).astype(np.float32)
        expected, got = _ort_run(serialized, x), _ort_run(fast, x)
        diff, scale = float(np.abs(got - expected).max()), float(np.abs(expected).max())
        if not diff <= PARITY_TOLERANCE * (1 + scale):
            logger.warning("ONNX rewrite differs by %.3g: running the model as exported", diff)
            return serialized
    return fast


def _ort_run(serialized: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    from aframe_lib.export.onnx import INPUT_NAME

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {INPUT_NAME: x})[0])


def _constants(graph) -> dict[str, np.ndarray]:
    """Values of initializers, ``Constant`` outputs and ``Identity`` copies of them."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _rewrite_pow(graph) -> int:
    from onnx import helper

    constants = _constants(graph)
    nodes, changed = [], 0
    for node in graph.node:
        value = constants.get(node.input[1]) if node.op_type == "Pow" else None
        if value is not None and value.size == 1 and float(value) in (2.0, 0.5):
            inputs = [node.input[0]] * 2 if float(value) == 2.0 else [node.input[0]]
            op = "Mul" if float(value) == 2.0 else "Sqrt"
            nodes.append(helper.make_node(op, inputs, list(node.output), name=node.name))
            changed += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return changed


def _rewrite_group_norms(graph) -> int:
    """GroupNorm1D subgraphs (see :func:`fast_onnx`); anything else is left as it is."""
    from onnx import helper, numpy_helper

    constants = _constants(graph)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    replace: dict[int, list] = {}  # id(final node) -> new nodes
    drop: set[int] = set()
    for square in graph.node:  # x * x (after _rewrite_pow): the mean square of x
        if square.op_type != "Mul" or square.input[0] != square.input[1]:
            continue
        x = square.input[0]
        affine = [n for n in consumers.get(x, []) if n.op_type == "Mul" and n is not square]
        if len(affine) != 1:
            continue
        final = consumers.get(affine[0].output[0], [])
        if len(final) != 1 or final[0].op_type != "Add":
            continue
        final = final[0]
        region, stack = {}, [final]  # every node between x and the output
        while stack:
            node = stack.pop()
            if id(node) in region:
                continue
            region[id(node)] = node
            for name in node.input:
                if name == x or name in constants or name not in producer:
                    continue
                stack.append(producer[name])
        if id(square) not in region:
            continue
        inner = [n for n in region.values() if n is not final]
        if any(out in outputs or any(id(c) not in region for c in consumers.get(out, []))
               for n in inner for out in n.output):  # fmt: skip
            continue  # an intermediate value is used elsewhere: not (only) a group norm
        ops = sorted(n.op_type for n in region.values())
        if ops.count("ReduceMean") < 2 or "Sqrt" not in ops:
            continue
        div = [n for n in region.values() if n.op_type == "Div"]
        sub = [n for n in region.values() if n.op_type == "Sub" and n.input[0] in constants]
        eps = [constants[i] for n in region.values() if n.op_type == "Add"
               for i in n.input if i in constants and constants[i].size == 1]  # fmt: skip
        if len(div) != 1 or div[0].input[0] not in constants or len(sub) != 1 or len(eps) != 1:
            continue
        weight, bias = div[0].input[0], sub[0].input[0]
        channels = constants[weight].shape[0]
        if constants[weight].shape != (channels, 1) or constants[bias].shape != (channels, 1):
            continue
        # the reshape to (batch, 2, groups, channels_per_group) before the group means
        shapes = [constants[n.input[1]] for n in region.values()
                  if n.op_type == "Reshape" and n.input[1] in constants
                  and any(c.op_type == "ReduceMean" for c in consumers[n.output[0]])]  # fmt: skip
        if len(shapes) > 1 or (shapes and shapes[0].shape != (4,)):
            continue
        groups = int(shapes[0][2]) if shapes else channels
        if channels % groups:
            continue
        tag = f"{final.name or final.output[0]}/fast_group_norm"
        ones, zeros = np.ones(groups, np.float32), np.zeros(groups, np.float32)
        w, b = constants[weight][:, 0].astype(np.float32), constants[bias][:, 0].astype(np.float32)
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([0, groups, -1], np.int64), f"{tag}/grouped"),
                numpy_helper.from_array(ones, f"{tag}/ones"),
                numpy_helper.from_array(zeros, f"{tag}/zeros"),
                numpy_helper.from_array(w, f"{tag}/weight"),
                numpy_helper.from_array(b, f"{tag}/bias"),
                numpy_helper.from_array(np.zeros_like(w), f"{tag}/zero_mean"),
                numpy_helper.from_array(np.ones_like(w), f"{tag}/unit_var"),
            ]
        )
        affine = [f"{tag}/weight", f"{tag}/bias", f"{tag}/zero_mean", f"{tag}/unit_var"]
        replace[id(final)] = [
            helper.make_node("Shape", [x], [f"{tag}/shape"]),
            helper.make_node("Reshape", [x, f"{tag}/grouped"], [f"{tag}/x"]),
            helper.make_node(
                "InstanceNormalization",
                [f"{tag}/x", f"{tag}/ones", f"{tag}/zeros"],
                [f"{tag}/normed"],
                epsilon=float(eps[0]),
            ),
            helper.make_node("Reshape", [f"{tag}/normed", f"{tag}/shape"], [f"{tag}/y"]),
            # y * weight + bias in one pass: a batch norm of mean 0, variance 1, epsilon 0
            helper.make_node(
                "BatchNormalization", [f"{tag}/y", *affine], list(final.output), epsilon=0.0
            ),
        ]
        drop.update(id(n) for n in inner)
    if not replace:
        return 0
    nodes = []
    for node in graph.node:
        if id(node) in replace:
            nodes.extend(replace[id(node)])
        elif id(node) not in drop:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replace)


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
    threads = default_threads() if threads is None else threads
    network = OnnxNetwork(serialized, threads, input_shape)
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
