"""``aframe-train search`` through the real console script, with an untrained-free oracle model.

The oracle (whitened energy in the window, in noise standard deviations) stands in for a trained
network: see tests/lib/search/conftest.py.
"""

from __future__ import annotations

import subprocess

import h5py
import numpy as np
import pytest
import torch
from helpers.console import aframe_train
from helpers.search import DATA, IFOS, PSD, Energy


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from aframe_lib.data.noise import generate_background
    from aframe_lib.export import export_torchscript

    root = tmp_path_factory.mktemp("search")
    export_torchscript(
        Energy(), torch.randn(2, 2, 256), root / "model.pt", {"data": DATA, "psd": PSD}
    )
    generate_background(str(root / "data"), IFOS, 120.0, 256.0, segment_duration=120.0)
    return root


def test_search_cli_writes_mdc_events_and_prints_the_realtime_factor(setup):
    out = setup / "events.hdf5"
    cmd = [*aframe_train(), "search", "--model", str(setup / "model.pt"), "--data",
           str(setup / "data"), "--out", str(out), "--progress", "false"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "realtime_factor: " in proc.stdout
    with h5py.File(out) as f:
        assert {"time", "stat", "var"} <= set(f)
        assert len(f["time"]) > 0 and np.all(np.isfinite(f["stat"][:]))
        # the whole file is searched: kernels ending 1.5 s to 119.5 s in, less 3 integration
        assert f.attrs["livetime"] == pytest.approx(((120 - 2) * 4 - 2) / 4)
        assert f.attrs["psd_length"] == 16.0


def test_search_cli_names_a_missing_ifo(setup, tmp_path):
    from aframe_lib.export import export_torchscript

    export_torchscript(Energy(), torch.randn(2, 2, 256), tmp_path / "model.pt",
                       {"data": {**DATA, "ifos": ["H1", "V1"]}})  # fmt: skip
    cmd = [*aframe_train(), "search", "--model", str(tmp_path / "model.pt"), "--data",
           str(setup / "data"), "--out", str(tmp_path / "e.hdf5")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "V1" in proc.stderr and not (tmp_path / "e.hdf5").exists()


def test_search_settings_flags_reach_the_search_and_bad_ones_name_the_field(setup, tmp_path):
    """Each SearchSettings field is a flag of `aframe-train search` (written to the events
    file's attributes); an out-of-range one is one message naming it (exit status 2)."""
    from aframe_train.cli import main

    out = tmp_path / "events.hdf5"
    main(["search", "--model", str(setup / "model.pt"), "--data", str(setup / "data"),
          "--out", str(out), "--progress", "false", "--inference_sampling_rate", "8",
          "--integration_length", "0.5", "--cluster_window", "2", "--threshold", "1.5",
          "--var", "0.3", "--batch_size", "32", "--chunk_length", "16",
          "--device", "cpu"])  # fmt: skip
    with h5py.File(out) as f:
        attrs = dict(f.attrs)
        assert (attrs["inference_sampling_rate"], attrs["integration_length"]) == (8.0, 0.5)
        assert (attrs["cluster_window"], attrs["threshold"], attrs["var"]) == (2.0, 1.5, 0.3)
        assert (f["stat"][:] > 1.5).all() and np.allclose(f["var"][:], 0.3)
        # kernels ending 1.5 s to 119.5 s in, every 1/8 s, less 3 for the integration
        assert attrs["livetime"] == pytest.approx(((120 - 2) * 8 + 1 - 3) / 8)
    cmd = [*aframe_train(), "search", "--model", str(setup / "model.pt"), "--data",
           str(setup / "data"), "--out", str(tmp_path / "e.hdf5"), "--batch_size", "0"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "batch_size=0: must be a positive integer" in proc.stderr


def test_search_resamples_faster_strain_and_says_so(setup, tmp_path, caplog):
    """A 2x-rate MDC file is searched (in process) after a note in the log; events written."""
    import logging

    from aframe_lib.data.noise import generate_background
    from aframe_lib.search import find_spans
    from aframe_lib.search.strain import write_mdc
    from aframe_train.search import search

    generate_background(str(tmp_path / "fast"), IFOS, 60.0, 512.0, segment_duration=60.0)
    (span,) = find_spans(str(tmp_path / "fast"), IFOS)
    strain = {ifo: [(span.t0, x)] for ifo, x in zip(IFOS, span.read(), strict=True)}
    write_mdc(str(tmp_path / "mdc.hdf5"), strain, 512.0)
    with caplog.at_level(logging.INFO, logger="aframe_lib.search.strain"):
        result = search(str(setup / "model.pt"), str(tmp_path / "mdc.hdf5"),
                        str(tmp_path / "e.hdf5"), progress=False)  # fmt: skip
    assert "resampling H1,L1 from 512 Hz to the model's 256 Hz" in caplog.text
    assert result.livetime == pytest.approx(((60 - 2) * 4 - 2) / 4)  # searched from the start
    with h5py.File(tmp_path / "e.hdf5") as f:
        assert len(f["time"]) > 0 and f.attrs["sample_rate"] == 256.0


def test_a_killed_search_resumes_from_its_saved_spans(setup, tmp_path, monkeypatch):
    """``OUT.parts/`` holds each span's events as it ends: a rerun after a kill searches only
    the spans not yet done, gives the events of an uninterrupted run, and removes the parts."""
    from aframe_lib.data.noise import generate_background
    from aframe_lib.search import Search
    from aframe_train.search import search

    data = tmp_path / "data"
    generate_background(str(data), IFOS, 120.0, 256.0, segment_duration=60.0, seed=4)
    model, out = str(setup / "model.pt"), tmp_path / "events.hdf5"
    clean = search(model, str(data), str(tmp_path / "clean.hdf5"), progress=False, resume=False)
    assert not (tmp_path / "clean.hdf5.parts").exists()

    outputs, calls = Search.outputs, []

    def killed_at_the_second_span(self, span, progress=None):
        calls.append(span.t0)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return outputs(self, span, progress)

    monkeypatch.setattr(Search, "outputs", killed_at_the_second_span)
    with pytest.raises(KeyboardInterrupt):
        search(model, str(data), str(out), progress=False)
    assert not out.exists()
    assert [p.name for p in (tmp_path / "events.hdf5.parts").glob("span-*")] == ["span-000000.npz"]

    calls.clear()
    monkeypatch.setattr(Search, "outputs", lambda self, span, progress=None: (
        calls.append(span.t0), outputs(self, span, progress))[1])  # fmt: skip
    resumed = search(model, str(data), str(out), progress=False)
    assert len(calls) == 1  # only the second span is searched again
    np.testing.assert_array_equal(resumed.events.time, clean.events.time)
    np.testing.assert_array_equal(resumed.events.stat, clean.events.stat)
    assert resumed.livetime == clean.livetime
    assert out.exists() and not (tmp_path / "events.hdf5.parts").exists()
