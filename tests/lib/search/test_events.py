"""Integration, peak finding, clustering, and the events file."""

from __future__ import annotations

import numpy as np

from aframe_lib.search.events import Events, find_events, integrate, read_events, write_events


def test_integrate_is_a_causal_boxcar_over_full_windows_only():
    y = np.arange(6.0)
    np.testing.assert_allclose(integrate(y, 3), [1.0, 2.0, 3.0, 4.0])
    assert len(integrate(y, 7)) == 0


def test_find_events_keeps_the_loudest_per_cluster_window():
    stat = np.zeros(40)
    stat[[5, 7, 20, 30]] = [3.0, 4.0, 1.0, 2.0]
    stat[12:15] = 2.0  # a plateau: one candidate, its last sample
    # 5 is within 6 / 2 of the louder 7; the last sample counts (a maximum of what exists)
    assert find_events(stat, None, 6).tolist() == [7, 14, 20, 30, 39]
    assert find_events(stat, 1.5, 6).tolist() == [7, 14, 30]
    assert find_events(stat, None, 30).tolist() == [7, 30]  # the rest within 15 of them
    assert find_events(stat, 10.0, 4).tolist() == []


def test_events_file_round_trip(tmp_path):
    events = Events(np.array([1.0, 2.0]), np.array([5.0, 6.0]), np.array([0.3, 0.3]))
    write_events(str(tmp_path / "e.hdf5"), events, {"livetime": 10.0}, {"far": [0.1, 0.2]})
    back, attrs = read_events(str(tmp_path / "e.hdf5"))
    np.testing.assert_array_equal(back.stat, events.stat)
    assert back.shift is None and attrs["livetime"] == 10.0
    import h5py

    with h5py.File(tmp_path / "e.hdf5") as f:
        assert sorted(f) == ["far", "stat", "time", "var"]
