"""Real-time factor of the search (seconds of strain per wall second) on this machine.

Run by ``nox -s bench`` as ``python bench/search.py [--strain 120] [--device cpu]``.

For each model shape, an untrained network is exported exactly as training exports it
(TorchScript + ``model.json``), synthetic coloured noise is written in the background layout at
the model's sample rate, and ``aframe_lib.search.Search`` runs over it with the inference
defaults (PSD from the preceding 64 s, 4 Hz windows, batches of 128, 1 s integration). Models:

- ``resnet1d``: the shipped ``resnet1d.yaml`` shape (ResNet1D [3, 4, 6, 3], GroupNorm 16,
  2 IFOs, 2048 Hz, kernel 1.5 s, fduration 1 s, highpass 32 Hz);
- ``quickstart``: ``projects/quickstart/train.yaml`` (ResNet1D [1, 1], GroupNorm 8, 512 Hz,
  kernel 1 s, fduration 1 s, highpass 32 Hz).

Each run searches ``--strain`` seconds of outputs after the 66.5 s warm-up (whole-run wall
time, I/O included, after one untimed warm-up run). The preprocessing alone (streaming PSD +
whitening) is timed too.

Headlines: ``search_realtime_factor`` (the shipped ResNet1D), ``search_realtime_factor_<model>``
and ``search_preprocess_realtime_factor_<model>``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common

MODELS = {
    "resnet1d": {"layers": [3, 4, 6, 3], "norm_groups": 16, "sample_rate": 2048.0,
                 "kernel_length": 1.5},
    "quickstart": {"layers": [1, 1], "norm_groups": 8, "sample_rate": 512.0,
                   "kernel_length": 1.0},
}  # fmt: skip
IFOS = ["H1", "L1"]


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
    export_torchscript(net, example, path, {"data": data})
    return path


def bench(name: str, strain: float, device: str | None, root: Path) -> tuple[float, float]:
    import torch

    from aframe_lib.data.noise import generate_background
    from aframe_lib.search import Search, find_spans

    engine = Search.from_exported(str(export(name, root)), device=device)
    duration = engine.min_duration + strain
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
    _common.note(f"{name}: {result.strain_seconds:.0f} s of strain in {result.wall_seconds:.2f} s "
                 f"on {engine.device}, {len(result.events)} events")  # fmt: skip
    return result.realtime_factor, spans[0].duration / _common.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strain", type=float, default=120.0, help="seconds searched per model")
    parser.add_argument("--device", default=None, help="torch device (default: best available)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            rtf, pre = bench(name, args.strain, args.device, Path(tmp))
            if name == "resnet1d":
                _common.headline("search_realtime_factor", rtf)
            _common.headline(f"search_realtime_factor_{name}", rtf)
            _common.headline(f"search_preprocess_realtime_factor_{name}", pre)


if __name__ == "__main__":
    main()
