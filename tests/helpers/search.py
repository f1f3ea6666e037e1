"""Shared by the search tests (tests/lib/search/): tiny strain settings and an oracle model.

The oracle is an energy detector, not a trained network: the excess whitened power in the
window, in units of its standard deviation under white Gaussian noise,
``(mean(x^2) - 1) * sqrt(C * T / 2)``. It needs no training, is ~N(0, 1)-ish on noise, and
grows as ``SNR^2`` for a loud signal in the kernel, so it checks the search's plumbing (times,
whitening, clustering) without depending on a training run's skill.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 256.0
IFOS = ["H1", "L1"]
DATA = {
    "ifos": IFOS,
    "sample_rate": SAMPLE_RATE,
    "kernel_length": 1.0,
    "fduration": 1.0,
    "highpass": 32.0,
    "left_pad": 0.25,
    "right_pad": 0.05,
}
PSD_LENGTH = 16.0
PSD = {"length": PSD_LENGTH, "cadence": 1.0}  # the policy "training" used, in model.json


class Energy(torch.nn.Module):
    """Excess whitened power of a window, in noise standard deviations: ``(batch, 1)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[1] * x.shape[2]
        return ((x.square().mean((1, 2)) - 1.0) * (size / 2) ** 0.5)[:, None]


def export_oracle(path: Path, data: dict | None = None, **meta) -> Path:
    """The oracle exported to ``path``; ``meta``: more ``model.json`` fields (``population``,
    ``provenance``, ...)."""
    from aframe_lib.export import export_torchscript

    example = torch.randn(2, len(IFOS), int(SAMPLE_RATE * DATA["kernel_length"]))
    export_torchscript(Energy(), example, path, {"data": data or DATA, "psd": PSD, **meta})
    return path


def arange_background(path: Path, t0: float, size: int, rate: float = SAMPLE_RATE) -> Path:
    """A background file whose IFO j holds ``1000 * j + arange(size)`` (exact checks)."""
    from aframe_lib.data.background import background_fname, write_background

    strain = {ifo: 1000.0 * j + np.arange(size) for j, ifo in enumerate(IFOS)}
    target = path / background_fname(t0, size / rate)
    write_background(str(target), strain, t0, rate)
    return target
