"""Real-time factor of the search (seconds of strain per wall second) on this machine.

Run by ``nox -s bench`` as ``python bench/lib/search.py [--strain 120] [--device cpu]``.

For each model shape, an untrained network is exported exactly as training exports it
(TorchScript + ``model.json`` with the PSD policy of the model's shipped config), synthetic
coloured noise is written in the background layout at the model's sample rate, and
``aframe_lib.search.Search`` runs over it with the inference defaults (the model's PSD policy,
4 Hz windows, batches of 128, 1 s integration). Models:

- ``resnet1d``: the shipped ``resnet1d.yaml`` shape (ResNet1D [3, 4, 6, 3], GroupNorm 16,
  2 IFOs, 2048 Hz, kernel 1.5 s, fduration 1 s, highpass 32 Hz);
- ``quickstart``: ``projects/quickstart/train.yaml`` (ResNet1D [1, 1], GroupNorm 8, 512 Hz,
  kernel 1 s, fduration 1 s, highpass 32 Hz).

Each run searches ``--strain`` seconds (whole-run wall time, I/O included, after one untimed
warm-up run; the search covers a file from its start). The preprocessing alone (streaming PSDs
+ whitening) is timed on the same strain in the same run.

Headlines: ``search_realtime_factor`` (the shipped ResNet1D), ``search_realtime_factor_<model>``
and ``search_preprocess_realtime_factor_<model>``; ``search_preprocess_realtime_factor`` is the
quickstart's (printed beside ``search_realtime_factor_quickstart``, goal >= 1000), and
``search_network_realtime_factor_<model>`` the network alone on the same windows (a bound no
preprocessing can beat on this machine).
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
                 "kernel_length": 1.5,
                 "config": "packages/aframe-train/aframe_train/configs/resnet1d.yaml"},
    "quickstart": {"layers": [1, 1], "norm_groups": 8, "sample_rate": 512.0,
                   "kernel_length": 1.0, "config": "projects/quickstart/train.yaml"},
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
    import torch

    from aframe_lib.export import export_torchscript
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
    return path


def bench(name: str, strain: float, device: str | None, root: Path) -> tuple[float, ...]:
    import torch

    from aframe_lib.data.noise import generate_background
    from aframe_lib.search import Search, find_spans

    engine = Search.from_exported(str(export(name, root)), device=device)
    duration = max(engine.min_duration, strain)
    data = root / f"data-{name}"
    generate_background(str(data), IFOS, duration, engine.sample_rate, segment_duration=duration)
    spans = find_spans(str(data), IFOS, engine.sample_rate, engine.min_duration)
    engine.run(spans, progress=False)  # warm-up (allocations, first TorchScript passes)
    result = engine.run(spans, progress=False)

    X = torch.from_numpy(spans[0].read()).to(engine.device)
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else None
    times = _common.time_calls(
        lambda: sum(len(b) for b in engine.whitener.batches(X, 128)), repeats=3, sync=sync
    )
    windows = torch.cat(list(engine.whitener.batches(X, 128)))

    def network() -> None:
        with torch.no_grad():
            for first in range(0, len(windows), 128):
                engine.model(windows[first : first + 128])

    net = _common.time_calls(network, repeats=3, sync=sync)
    policy = engine.whitener.policy
    _common.note(f"{name}: {result.strain_seconds:.0f} s of strain in {result.wall_seconds:.2f} s "
                 f"on {engine.device} ({torch.get_num_threads()} threads), "
                 f"{len(result.events)} events; PSD policy: {policy.length:g} s, "
                 f"fftlength {policy.fftlength:g} s, cadence {policy.cadence:g} s")  # fmt: skip
    seconds = spans[0].duration
    # CPU seconds of this process: what a quiet machine would give, whatever the load
    cpu = {"search": lambda: engine.run(spans, progress=False),
           "preprocess": lambda: sum(len(b) for b in engine.whitener.batches(X, 128)),
           "network": network}  # fmt: skip
    for label, fn in cpu.items():
        start = time.process_time()
        fn()
        used = (time.process_time() - start) / torch.get_num_threads()
        _common.note(f"{name}: {label} real-time factor per CPU-second of this process "
                     f"(load-independent): {seconds / max(used, 1e-9):.0f}")  # fmt: skip
    return (result.realtime_factor, seconds / _common.median(times),
            seconds / _common.median(net))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strain", type=float, default=120.0, help="seconds searched per model")
    parser.add_argument("--device", default=None, help="torch device (default: best available)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rtf, pre, net = bench(name, args.strain, args.device, Path(tmp))
            if name == "resnet1d":
                _common.headline("search_realtime_factor", rtf)
            _common.headline(f"search_realtime_factor_{name}", rtf)
            if name == "quickstart":
                _common.headline("search_preprocess_realtime_factor", pre)
            _common.headline(f"search_preprocess_realtime_factor_{name}", pre)
            _common.headline(f"search_network_realtime_factor_{name}", net)


if __name__ == "__main__":
    main()
