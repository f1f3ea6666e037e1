"""Real background via gwpy: only the network call is replaced, by strain built here.

The task runs ``aframe-data fetch`` in a child process (as it runs in production), so the
replacement is installed there: a ``sitecustomize`` on the child's ``PYTHONPATH`` swaps gwpy's
``TimeSeries.fetch_open_data`` / ``TimeSeries.get`` for :func:`fake_strain` and records each call.
"""

from __future__ import annotations

import json
import os
import textwrap

import h5py
import luigi
import numpy as np
import pytest
from gwpy.timeseries import TimeSeries

from aframe_flow import FetchBackground
from aframe_lib.data.background import list_segments, read_segment

RATE_IN, RATE_OUT = 1024, 256

SITECUSTOMIZE = """
import json, os
import numpy as np
from gwpy.timeseries import TimeSeries

RATE_IN = {rate}


def fake_strain(ifo_or_channel, start, end, **kwargs):
    \"\"\"What the open-data service would return: a ramp with a tone, per IFO, at 1024 Hz.\"\"\"
    t = np.arange(int((end - start) * RATE_IN)) / RATE_IN
    offset = 1.0 if ifo_or_channel.startswith("H1") else -1.0
    data = (offset + np.sin(2 * np.pi * 10 * t)) * 1e-21
    return TimeSeries(data, t0=start, sample_rate=RATE_IN, name=ifo_or_channel, unit="strain")


def record(kind):
    def fetch(cls, *args, **kwargs):
        with open(os.environ["FAKE_GWPY_CALLS"], "a") as f:
            f.write(json.dumps([kind, *args[:3]]) + "\\n")
        return fake_strain(*args, **kwargs)

    return classmethod(fetch)


TimeSeries.fetch_open_data = record("open")
TimeSeries.get = record("frames")
"""


class Calls(list):
    """The gwpy calls the child processes made: ``(kind, ifo or channel, start, end)``."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def read(self) -> Calls:
        self[:] = []
        if self.path.exists():
            self[:] = [tuple(json.loads(line)) for line in self.path.read_text().splitlines()]
        return self

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        super().clear()


@pytest.fixture
def calls(tmp_path_factory, monkeypatch):
    site = tmp_path_factory.mktemp("fake-gwpy")
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE.format(rate=RATE_IN)))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("FAKE_GWPY_CALLS", str(site / "calls.jsonl"))
    return Calls(site / "calls.jsonl")


def run(task) -> None:
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")


@pytest.mark.slow  # one aframe-data process (gwpy, h5py) per branch: ~10 s each
def test_open_data_branches_write_files_that_meet_the_contract(tmp_path, calls):
    task = FetchBackground(
        ifos="H1,L1", sample_rate=float(RATE_OUT), data_dir=str(tmp_path), background="fetch",
        segments="1238166018-1238166082,1238170000-1238170032", max_duration=40.0,
    )  # fmt: skip
    # one branch per chunk of at most max_duration seconds
    assert task.branch_map == {
        0: (1238166018.0, 1238166058.0),
        1: (1238166058.0, 1238166082.0),
        2: (1238170000.0, 1238170032.0),
    }
    run(task)
    calls.read()
    assert {c[:2] for c in calls} == {("open", "H1"), ("open", "L1")} and len(calls) == 6
    segments = list_segments(str(tmp_path), ["H1", "L1"], sample_rate=RATE_OUT)
    assert [(s.t0, s.duration) for s in segments] == [
        (1238166018.0, 40.0), (1238166058.0, 24.0), (1238170000.0, 32.0),
    ]  # fmt: skip
    names = sorted(p.name for p in tmp_path.glob("background-*.hdf5"))
    assert names[0] == "background-1238166018-40.hdf5"
    x = read_segment(segments[0])
    assert x.shape == (2, 40 * RATE_OUT) and x.dtype == np.float32
    # resampled strain: H1 ramps around +1e-21, L1 around -1e-21
    assert np.mean(x[0]) == pytest.approx(1e-21, rel=0.05)
    assert np.mean(x[1]) == pytest.approx(-1e-21, rel=0.05)
    with h5py.File(tmp_path / names[0]) as f:
        assert f["H1"].attrs["x0"] == 1238166018.0
        assert f["H1"].attrs["dx"] == pytest.approx(1 / RATE_OUT)
    # gwpy reads what we wrote
    back = TimeSeries.read(tmp_path / names[0], path="H1", format="hdf5")
    assert back.sample_rate.value == RATE_OUT and back.t0.value == 1238166018.0
    # a second run finds everything done and calls nobody
    calls.clear()
    run(task)
    assert calls.read() == []


def test_frame_channels_go_through_timeseries_get(tmp_path, calls):
    task = FetchBackground(
        ifos="H1,L1", sample_rate=float(RATE_OUT), data_dir=str(tmp_path), background="fetch",
        segments="1000-1016", channels="H1:GDS-CALIB_STRAIN,L1:GDS-CALIB_STRAIN",
    )  # fmt: skip
    run(task)
    assert [c[:2] for c in calls.read()] == [("frames", "H1:GDS-CALIB_STRAIN"),
                                      ("frames", "L1:GDS-CALIB_STRAIN")]  # fmt: skip
    assert len(list_segments(str(tmp_path), ["H1", "L1"])) == 1
