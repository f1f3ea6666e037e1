"""The waveform-file contract: round trips, slicing, and one clear error per kind of bad file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from aframe_lib.data.waveforms import WaveformError, WaveformSet, read_waveforms, write_waveforms

RATE, DURATION, TC, NUM = 16.0, 4.0, 3.0, 5


@pytest.fixture
def waveforms() -> WaveformSet:
    """arange-valued rows, so any slice can be checked exactly."""
    size = int(RATE * DURATION)
    plus = np.arange(NUM * size, dtype=np.float32).reshape(NUM, size)
    params = {"chirp_mass": np.arange(NUM) + 10.0, "distance": np.arange(NUM) * 100.0 + 100}
    return WaveformSet(plus, -plus, params, RATE, DURATION, TC)


@pytest.fixture
def path(tmp_path, waveforms) -> str:
    target = str(tmp_path / "waveforms.hdf5")
    write_waveforms(target, waveforms)
    return target


def assert_same(a: WaveformSet, b: WaveformSet) -> None:
    np.testing.assert_array_equal(a.plus, b.plus)
    np.testing.assert_array_equal(a.cross, b.cross)
    assert a.parameters.keys() == b.parameters.keys()
    for key in a.parameters:
        np.testing.assert_array_equal(a.parameters[key], b.parameters[key])
    assert (a.sample_rate, a.duration, a.coalescence_time) == (
        b.sample_rate,
        b.duration,
        b.coalescence_time,
    )


def test_round_trip_and_layout(path, waveforms):
    back = read_waveforms(path, sample_rate=RATE)
    assert_same(back, waveforms)
    assert len(back) == NUM and back.plus.dtype == np.float32
    with h5py.File(path) as f:
        assert f["waveforms/plus"].chunks is not None
        assert f["waveforms/plus"].dtype == np.float32
        assert int(f.attrs["num_waveforms"]) == NUM
        assert f.attrs["coalescence_time"] == TC
        assert sorted(f["parameters"]) == ["chirp_mass", "distance"]


def test_slice(path, waveforms):
    part = read_waveforms(path, start=1, stop=3)
    np.testing.assert_array_equal(part.plus, waveforms.plus[1:3])
    np.testing.assert_array_equal(part.parameters["distance"], [200.0, 300.0])
    assert len(read_waveforms(path, start=4)) == 1


@pytest.mark.parametrize("start, stop", [(0, 0), (3, 2), (-1, 2), (0, NUM + 1)])
def test_bad_range(path, start, stop):
    with pytest.raises(WaveformError, match=rf"{path}.*rows \[{start}, {stop}\)"):
        read_waveforms(path, start=start, stop=stop)


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.hdf5")
    with pytest.raises(WaveformError, match=f"{missing} does not exist"):
        read_waveforms(missing)


def test_not_hdf5(tmp_path):
    bad = tmp_path / "waveforms.hdf5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(WaveformError, match="not a readable HDF5 file"):
        read_waveforms(str(bad))


@pytest.mark.parametrize("field", ["waveforms/cross", "parameters", "sample_rate", "duration"])
def test_missing_field(path, field):
    with h5py.File(path, "a") as f:
        if field in f.attrs:
            del f.attrs[field]
        else:
            del f[field]
    with pytest.raises(WaveformError, match=f"{path} lacks {field}"):
        read_waveforms(path)


def test_shape_mismatch(path):
    with h5py.File(path, "a") as f:
        del f["waveforms/cross"]
        f["waveforms/cross"] = np.zeros((NUM, 7), dtype=np.float32)
    with pytest.raises(WaveformError, match=r"waveforms/plus has shape \(5, 64\).*cross.*\(5, 7\)"):
        read_waveforms(path)


def test_sample_rate_mismatch(path):
    with pytest.raises(WaveformError, match=f"{path} has sample_rate=16 Hz but 2048 Hz"):
        read_waveforms(path, sample_rate=2048)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite(path, value):
    with h5py.File(path, "a") as f:
        f["waveforms/plus"][3, 10] = value
    with pytest.raises(WaveformError, match=f"{path}: waveforms/plus holds NaN or inf.*row 3"):
        read_waveforms(path)
    # the rows before it are fine
    assert len(read_waveforms(path, stop=3)) == 3


def test_zero_waveforms(tmp_path):
    empty = str(tmp_path / "empty.hdf5")
    with h5py.File(empty, "w") as f:
        f["waveforms/plus"] = np.zeros((0, 64), dtype=np.float32)
        f["waveforms/cross"] = np.zeros((0, 64), dtype=np.float32)
        f.create_group("parameters")
        f.attrs.update(sample_rate=RATE, duration=DURATION, coalescence_time=TC, num_waveforms=0)
    with pytest.raises(WaveformError, match=f"{empty} holds zero waveforms"):
        read_waveforms(empty)


def test_num_waveforms_attr_mismatch(path):
    with h5py.File(path, "a") as f:
        f.attrs["num_waveforms"] = 9
    with pytest.raises(WaveformError, match="num_waveforms=9 but waveforms/plus has 5 rows"):
        read_waveforms(path)


def test_parameter_length_mismatch(path):
    with h5py.File(path, "a") as f:
        del f["parameters/distance"]
        f["parameters/distance"] = np.ones(3)
    with pytest.raises(WaveformError, match=r"parameters/distance has shape \(3,\)"):
        read_waveforms(path)


def test_in_memory_validation(waveforms):
    with pytest.raises(WaveformError, match="shape"):
        WaveformSet(waveforms.plus, waveforms.cross[:, :-1], {}, RATE, DURATION, TC)
    with pytest.raises(WaveformError, match="rows have 64"):
        WaveformSet(waveforms.plus, waveforms.cross, {}, RATE, 8.0, TC)
    with pytest.raises(WaveformError, match="coalescence_time=5"):
        WaveformSet(waveforms.plus, waveforms.cross, {}, RATE, DURATION, 5.0)
    with pytest.raises(WaveformError, match="parameters/mass_1"):
        WaveformSet(waveforms.plus, waveforms.cross, {"mass_1": np.ones(2)}, RATE, DURATION, TC)
    with pytest.raises(WaveformError, match="zero waveforms"):
        WaveformSet(waveforms.plus[:0], waveforms.cross[:0], {}, RATE, DURATION, TC)


def test_invalid_set_is_not_written(tmp_path, waveforms):
    """Validation runs before the atomic write, so nothing appears at the target."""
    waveforms.plus[2, 5] = np.nan
    target = tmp_path / "bad.hdf5"
    with pytest.raises(WaveformError, match="row 2"):
        write_waveforms(str(target), waveforms)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.s3
def test_s3_round_trip(s3_bucket, waveforms):
    remote = f"{s3_bucket}/data/waveforms.hdf5"
    write_waveforms(remote, waveforms)
    assert_same(read_waveforms(remote, sample_rate=RATE), waveforms)
    with pytest.raises(WaveformError, match=f"{s3_bucket}/data/val_waveforms.hdf5 does not exist"):
        read_waveforms(f"{s3_bucket}/data/val_waveforms.hdf5")
