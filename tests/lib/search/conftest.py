"""Fixtures of the search tests: tiny synthetic strain (256 Hz), an oracle model, injections.

Constants and the oracle (``Energy``, ``export_oracle``) live in ``tests/helpers/search.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.search import IFOS, PSD_LENGTH, SAMPLE_RATE, export_oracle


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
        str(out / "waveforms.hdf5"), 24, SAMPLE_RATE, waveform_duration=4.0, coalescence_time=3.0,
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
