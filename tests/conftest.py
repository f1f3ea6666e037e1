"""Shared fixtures; services (S3 server, Ray head) are started by tests/helpers/fixtures_*.py."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

pytest_plugins = ["helpers.fixtures_s3", "helpers.fixtures_ray"]

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """The tiny synthetic data set (helpers/tiny_data.py), generated once per session; read-only."""
    from helpers.tiny_data import SAMPLE_RATE, SYNTHETIC

    from aframe_lib.data.synthetic import ensure_synthetic_dataset

    path = tmp_path_factory.mktemp("tiny-synthetic")
    ensure_synthetic_dataset(str(path), ifos=["H1", "L1"], sample_rate=SAMPLE_RATE, **SYNTHETIC)
    return path


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same seeds, so failures reproduce."""
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
