"""Real-time factor of the search (seconds of strain per wall second) on this machine.

Run by ``nox -s bench`` as ``python bench/lib/search.py [--strain S] [--device cpu]``.

For each model shape, an untrained network is exported exactly as training exports it
(TorchScript + ``model.json`` with the PSD policy of the model's shipped config), synthetic
coloured noise is written in the background layout at the model's sample rate, and
``aframe_lib.search.Search`` runs over it with the inference defaults (the model's PSD policy,
4 Hz windows, batches of 128, 1 s integration). Models:

- ``resnet1d``: the shipped ``resnet1d.yaml`` shape (ResNet1D [3, 4, 6, 3], GroupNorm 16,
  2 IFOs, 2048 Hz, kernel 1.5 s, fduration 1 s, highpass 32 Hz);
- ``quickstart``: ``projects/quickstart/train.yaml`` (ResNet1D [1, 1], GroupNorm 8, 512 Hz,
  kernel 1 s, fduration 1 s, highpass 32 Hz).

Each run searches ``--strain`` seconds (default: 120 s for ``resnet1d``, 960 s for
``quickstart``, about a wall second per run: shorter runs are dominated by the host's noise);
the rate is the median of 5 runs' whole-run wall times, I/O included, after one untimed warm-up
run (the search covers a file from its start). The preprocessing alone (streaming PSDs
+ whitening) is timed on the same strain in the same run.

On a CPU the quickstart's search runs with each network backend
(:mod:`aframe_lib.search.backends`): ``auto`` (the default, onnxruntime when ``model.onnx`` is
there), ``torchscript`` and ``onnx``, side by side in the same run; notes give each one's wall
and CPU-bound rates (seconds of strain per process CPU second over the thread count:
comparable under load) and its event count.

Headlines: ``search_realtime_factor`` (the shipped ResNet1D), ``search_realtime_factor_<model>``
and ``search_preprocess_realtime_factor_<model>``; ``search_preprocess_realtime_factor`` is the
quickstart's (printed beside ``search_realtime_factor_quickstart``, goal >= 1000), and
``search_network_realtime_factor_<model>`` the network alone on the same windows (a bound no
preprocessing can beat on this machine); these are the default backend's. On a CPU also
``search_realtime_factor_quickstart_<backend>`` and
``search_network_realtime_factor_quickstart_<backend>`` for ``torchscript`` and ``onnx``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
import _common  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODELS = {
    "resnet1d": {"layers": [3, 4, 6, 3], "norm_groups": 16, "sample_rate": 2048.0,
                 "kernel_length": 1.5, "strain": 120.0,
                 "config": "packages/aframe-train/aframe_train/configs/resnet1d.yaml"},
    "quickstart": {"layers": [1, 1], "norm_groups": 8, "sample_rate": 512.0,
                   "kernel_length": 1.0, "strain": 960.0,
                   "config": "projects/quickstart/train.yaml"},
}  # fmt: skip
IFOS = ["H1", "L1"]


def shipped_policy(name: str) -> dict:
    """The PSD policy of the model's shipped config (``data.psd`` / ``data.psd_length``)."""
    import yaml

    from aframe_lib.data.psd import resolve_policy

    config = yaml.safe_load((ROOT / MODELS[name]["config"]).read_text())
    data = config["data"].get("init_args", config["data"])
    policy = resolve_policy(data.get("psd"), data.get("psd_length"), data.get("fftlength"))
    return policy.resolve(MODELS[name]["kernel_length"], data.get("fduration", 1.0)).to_dict()


def export(name: str, root: Path) -> Path:
    """``<name>.pt`` + ``.json`` + ``.onnx``, as training's ExportModel writes them."""
    import torch

    from aframe_lib.export import export_onnx, export_torchscript
    from aframe_train.architectures import SupervisedTimeDomainResNet

    shape = MODELS[name]
    rate, kernel = shape["sample_rate"], shape["kernel_length"]
    net = SupervisedTimeDomainResNet(
        len(IFOS), rate, kernel, layers=shape["layers"], norm_groups=shape["norm_groups"]
    ).eval()
    data = {"ifos": IFOS, "sample_rate": rate, "kernel_length": kernel, "fduration": 1.0,
            "highpass": 32.0, "left_pad": 0.25, "right_pad": 0.05}  # fmt: skip
    path = root / f"{name}.pt"
    example = torch.randn(4, len(IFOS), int(rate * kernel))
    export_torchscript(net, example, path, {"data": data, "psd": shipped_policy(name)})
    export_onnx(net, example, path.with_suffix(".onnx"), check=torch.randn(*example.shape))
    return path


def rates(fn, seconds: float, sync, repeats: int = 5) -> tuple[float, float]:
    """Real-time factors of ``fn``: per wall second (median) and CPU-bound, per process CPU
    second over torch's thread count (the fastest call: the wall rate with every thread busy, a
    loaded machine's estimate of a quiet one's)."""
    import torch

    walls, cpus = [], []
    fn()  # warm-up
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        if sync is not None:
            sync()
        walls.append(time.perf_counter() - start)
        cpus.append((time.process_time() - cpu) / torch.get_num_threads())
    return seconds / _common.median(walls), seconds / max(min(cpus), 1e-9)


def bench(name: str, strain: float, device: str | None, root: Path) -> dict[str, float]:
    """Wall and per-CPU real-time factors of the search, per backend, and of its parts."""
    import torch

    from aframe_lib.data.noise import generate_background
    from aframe_lib.search import Search, find_spans

    path = export(name, root)
    engines = {"auto": Search.from_exported(str(path), device=device)}
    if engines["auto"].device.type == "cpu" and name == "quickstart":  # side by side
        for backend in ("torchscript", "onnx"):
            engines[backend] = Search.from_exported(str(path), device=device, backend=backend)
    engine = engines["auto"]
    duration = max(engine.min_duration, strain)
    data = root / f"data-{name}"
    generate_background(str(data), IFOS, duration, engine.sample_rate, segment_duration=duration)
    spans = find_spans(str(data), IFOS, engine.sample_rate, engine.min_duration)
    seconds = spans[0].duration
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else None
    X = torch.from_numpy(spans[0].read()).to(engine.device)
    out = {}
    out["preprocess"] = rates(
        lambda: sum(len(b) for b in engine.whitener.batches(X, 128)), seconds, sync
    )
    windows = list(engine.whitener.batches(X, engine.batch_size))
    for backend, search in engines.items():
        result = search.run(spans, progress=False)
        out[f"search_{backend}"] = rates(lambda s=search: s.run(spans, progress=False),
                                         seconds, sync)  # fmt: skip

        def network(net=search.network) -> None:
            pending = [net.submit(b) for b in windows]  # as the search does: in flight
            for result_ in pending:
                result_()

        out[f"network_{backend}"] = rates(network, seconds, sync)
        _common.note(f"{name} [{backend} = {search.settings()['backend']}]: "
                     f"{len(result.events)} events; search {out[f'search_{backend}'][0]:.0f}x "
                     f"wall, {out[f'search_{backend}'][1]:.0f}x CPU-bound; network alone "
                     f"{out[f'network_{backend}'][0]:.0f}x wall, "
                     f"{out[f'network_{backend}'][1]:.0f}x CPU-bound")  # fmt: skip
    policy = engine.whitener.policy
    _common.note(
        "CPU-bound: seconds of strain per (process CPU seconds / torch threads), the "
        "wall-clock rate with every thread busy: load-independent, unlike wall"
    )
    _common.note(f"{name}: {seconds:.0f} s of strain on {engine.device} "
                 f"({torch.get_num_threads()} threads); preprocessing alone "
                 f"{out['preprocess'][0]:.0f}x wall, {out['preprocess'][1]:.0f}x CPU-bound; "
                 f"PSD policy: {policy.length:g} s, fftlength {policy.fftlength:g} s, "
                 f"cadence {policy.cadence:g} s")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strain", type=float, default=None,
                        help="seconds searched per model (default: 120 for resnet1d, 960 for "
                             "quickstart: about a wall second per run)")  # fmt: skip
    parser.add_argument("--device", default=None, help="torch device (default: best available)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            strain = args.strain if args.strain is not None else MODELS[name]["strain"]
            out = bench(name, strain, args.device, Path(tmp))
            rtf, pre, net = out["search_auto"][0], out["preprocess"][0], out["network_auto"][0]
            if name == "resnet1d":
                _common.headline("search_realtime_factor", rtf)
            _common.headline(f"search_realtime_factor_{name}", rtf)
            if name == "quickstart":
                _common.headline("search_preprocess_realtime_factor", pre)
            _common.headline(f"search_preprocess_realtime_factor_{name}", pre)
            _common.headline(f"search_network_realtime_factor_{name}", net)
            for backend in ("torchscript", "onnx"):
                if f"search_{backend}" in out:
                    _common.headline(f"search_realtime_factor_{name}_{backend}",
                                     out[f"search_{backend}"][0])  # fmt: skip
                    _common.headline(f"search_network_realtime_factor_{name}_{backend}",
                                     out[f"network_{backend}"][0])  # fmt: skip


if __name__ == "__main__":
    main()
