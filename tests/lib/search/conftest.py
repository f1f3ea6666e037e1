"""Fixtures of the search tests: tiny synthetic strain (256 Hz), an oracle model, injections.

The oracle is an energy detector, not a trained network: the excess whitened power in the
window, in units of its standard deviation under white Gaussian noise,
``(mean(x^2) - 1) * sqrt(C * T / 2)``. It needs no training, is ~N(0, 1)-ish on noise, and
grows as ``SNR^2`` for a loud signal in the kernel, so it checks the search's plumbing (times,
whitening, clustering) without depending on a training run's skill.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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


def export_oracle(path: Path, data: dict | None = None) -> Path:
    from aframe_lib.export import export_torchscript

    example = torch.randn(2, len(IFOS), int(SAMPLE_RATE * DATA["kernel_length"]))
    export_torchscript(Energy(), example, path, {"data": data or DATA, "psd": PSD})
    return path


@pytest.fixture(scope="session")
def oracle(tmp_path_factory) -> Path:
    return export_oracle(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="session")
def noise_dir(tmp_path_factory) -> Path:
    """Two 160 s files of coloured Gaussian noise (a gap between them)."""
    from aframe_lib.data.noise import generate_background

    out = tmp_path_factory.mktemp("noise")
    generate_background(str(out), IFOS, 320.0, SAMPLE_RATE, segment_duration=160.0, seed=3)
    return out


@pytest.fixture(scope="session")
def foreground(tmp_path_factory, noise_dir):
    """Loud binaries (50-300 Mpc at 256 Hz: SNR ~25-200) every 12 s in ``noise_dir``."""
    from ml4gw.distributions import PowerLaw

    from aframe_lib.data.synthetic import WaveformPopulation, generate_waveforms
    from aframe_lib.search import inject_population

    out = tmp_path_factory.mktemp("foreground")
    waveforms = generate_waveforms(
        str(out / "waveforms.hdf5"), 24, SAMPLE_RATE, duration=4.0, coalescence_time=3.0,
        population=WaveformPopulation(distance=PowerLaw(50.0, 300.0, 2)), seed=5,
    )  # fmt: skip
    injections = inject_population(
        str(noise_dir), str(out), waveforms, IFOS, spacing=12.0, start_pad=PSD_LENGTH + 6.0,
        highpass=32.0, distance_range=(50.0, 300.0), seed=6,
    )  # fmt: skip
    return out, injections


@pytest.fixture
def engine(oracle):
    from aframe_lib.search import Search

    def make(**overrides):
        kwargs = {"cluster_window": 4.0, "device": "cpu"}
        return Search.from_exported(str(oracle), **{**kwargs, **overrides})

    return make


def arange_background(path: Path, t0: float, size: int, rate: float = SAMPLE_RATE) -> Path:
    """A background file whose IFO j holds ``1000 * j + arange(size)`` (exact checks)."""
    from aframe_lib.data.background import background_fname, write_background

    strain = {ifo: 1000.0 * j + np.arange(size) for j, ifo in enumerate(IFOS)}
    target = path / background_fname(t0, size / rate)
    write_background(str(target), strain, t0, rate)
    return target
