"""``aframe-train evaluate`` on tiny synthetic data with the oracle model (see test_search.py)."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import torch
from test_search import DATA, PSD, Energy


def test_evaluate_writes_report_plots_and_numbers(tmp_path, capsys):
    from aframe_lib.export import export_torchscript
    from aframe_lib.search.metrics import SECONDS_PER_YEAR
    from aframe_train.cli import main

    export_torchscript(
        Energy(), torch.randn(2, 2, 256), tmp_path / "model.pt", {"data": DATA, "psd": PSD}
    )
    out = tmp_path / "eval"
    main([
        "evaluate", "--model", str(tmp_path / "model.pt"), "--out", str(out),
        "--duration", "240", "--segment_duration", "120", "--livetime", "1500",
        "--cluster_window", "4", "--injection_spacing", "10",
        "--waveform_duration", "4", "--coalescence_time", "3",
        "--distance_range", "[50, 300]", "--fars_per_year", "[1e3, 1e5]", "--progress", "false",
    ])  # fmt: skip
    lines = dict(re.findall(r"^(\w[\w.]*): (\S+)$", capsys.readouterr().out, re.M))
    numbers = {k: float(v) for k, v in lines.items()}
    T = numbers["background_livetime_s"]
    assert T >= 1500
    with h5py.File(out / "background_events.hdf5") as f:
        assert f.attrs["livetime"] == pytest.approx(T)
        stat, far = f["stat"][:], f["far"][:]
        assert f["shift"].shape == (len(stat), 2) and (f["shift"][:, 1] != 0).all()
    # the loudest background event's FAR is 1 / livetime
    assert far[np.argmax(stat)] == pytest.approx(1 / T)
    assert numbers["loudest_background_far_per_yr"] == pytest.approx(SECONDS_PER_YEAR / T, 1e-5)
    assert numbers["num_injections"] >= 15
    assert numbers["efficiency_at_far_100000_per_yr"] > 0.8  # loud injections, oracle model
    assert np.isnan(numbers["efficiency_at_far_1000_per_yr"])  # below 1 / T: not measurable
    for name in ("report.md", "efficiency.png", "roc.png", "distance.png", "stats.png",
                 "foreground/injections.hdf5", "injection_results.hdf5"):  # fmt: skip
        assert (out / name).exists(), name
