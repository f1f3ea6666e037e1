"""Real background via gwpy: only the network call is replaced, by strain built here."""

from __future__ import annotations

import h5py
import luigi
import numpy as np
import pytest
from gwpy.timeseries import TimeSeries

from aframe_flow import FetchBackground
from aframe_lib.data.background import list_segments, read_segment

RATE_IN, RATE_OUT = 1024, 256


def fake_strain(ifo_or_channel: str, start: float, end: float, **kwargs) -> TimeSeries:
    """What the open-data service would return: a ramp with a tone, per IFO, at 1024 Hz."""
    t = np.arange(int((end - start) * RATE_IN)) / RATE_IN
    offset = 1.0 if ifo_or_channel.startswith("H1") else -1.0
    data = (offset + np.sin(2 * np.pi * 10 * t)) * 1e-21
    return TimeSeries(data, t0=start, sample_rate=RATE_IN, name=ifo_or_channel, unit="strain")


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def record(kind):
        def fetch(*args, **kwargs):
            seen.append((kind, args[0], args[1], args[2]))
            return fake_strain(*args, **kwargs)

        return classmethod(lambda cls, *a, **k: fetch(*a, **k))

    monkeypatch.setattr(TimeSeries, "fetch_open_data", record("open"))
    monkeypatch.setattr(TimeSeries, "get", record("frames"))
    return seen


def run(task) -> None:
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")


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
    assert calls == []


def test_frame_channels_go_through_timeseries_get(tmp_path, calls):
    task = FetchBackground(
        ifos="H1,L1", sample_rate=float(RATE_OUT), data_dir=str(tmp_path), background="fetch",
        segments="1000-1016", channels="H1:GDS-CALIB_STRAIN,L1:GDS-CALIB_STRAIN",
    )  # fmt: skip
    run(task)
    assert [c[:2] for c in calls] == [("frames", "H1:GDS-CALIB_STRAIN"),
                                      ("frames", "L1:GDS-CALIB_STRAIN")]  # fmt: skip
    assert len(list_segments(str(tmp_path), ["H1", "L1"])) == 1
