"""The background-strain HDF5 contract: round trips, gwpy interop, splitting, bad input, s3://."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from aframe_lib.data.background import (
    BackgroundError,
    BackgroundSegment,
    background_fname,
    check_finite,
    list_segments,
    localize,
    read_segment,
    split_by_file,
    write_background,
)
from aframe_lib.utils.fs import atomic_local_path, filesystem, join, retry

RATE = 16.0  # Hz: tiny files, exact float32 aranges


def strain_for(size: int, ifos=("H1", "L1")) -> dict[str, np.ndarray]:
    """arange-valued strain: IFO k holds k * 1e6 + [0, 1, 2, ...], so every sample is known."""
    return {ifo: k * 1e6 + np.arange(size, dtype=np.float32) for k, ifo in enumerate(ifos)}


def write(directory, t0: float, duration: float, rate: float = RATE, ifos=("H1", "L1")) -> str:
    path = join(str(directory), background_fname(t0, duration))
    write_background(path, strain_for(round(duration * rate), ifos), t0, rate)
    return path


def write_raw(path: Path, datasets: dict[str, tuple[np.ndarray, dict]]) -> None:
    """Write a file by hand (bypassing write_background's checks) to build bad input."""
    with h5py.File(path, "w") as f:
        for name, (data, attrs) in datasets.items():
            f.create_dataset(name, data=data).attrs.update(attrs)


def gwpy_attrs(t0: float, rate: float = RATE) -> dict:
    return dict(x0=t0, dx=1 / rate, xunit="s", unit="")


# -- naming, writing, reading -----------------------------------------------------------------


@pytest.mark.parametrize(
    "t0, duration, name",
    [
        (1000, 600, "background-1000-600.hdf5"),
        (1000.0, 600.0, "background-1000-600.hdf5"),
        (1e9 + 0.5, 8.25, "background-1000000000.5-8.25.hdf5"),
    ],
)
def test_background_fname(t0, duration, name):
    assert background_fname(t0, duration) == name


def test_round_trip_is_exact(tmp_path):
    path = write(tmp_path, 1000, 8, ifos=("H1", "L1", "V1"))
    (segment,) = list_segments(str(tmp_path), ["L1", "H1"], sample_rate=RATE)
    assert segment == BackgroundSegment(path, 1000.0, 8.0, RATE, ("L1", "H1"))
    assert segment.size == 128

    x = read_segment(segment)
    assert x.dtype == np.float32 and x.shape == (2, 128)
    expected = strain_for(128, ("H1", "L1", "V1"))
    np.testing.assert_array_equal(x, np.stack([expected["L1"], expected["H1"]]))
    window = read_segment(segment, ["V1"], start=10, stop=20)
    np.testing.assert_array_equal(window, expected["V1"][None, 10:20])
    check_finite(segment)

    with h5py.File(path) as f:
        ds = f["H1"]
        assert ds.dtype == np.float32 and ds.chunks == (128,)
        assert set(ds.attrs) == {"x0", "dx", "xunit", "unit", "name", "channel"}
        assert (ds.attrs["x0"], ds.attrs["dx"], ds.attrs["xunit"]) == (1000.0, 1 / RATE, "s")


def test_write_chunks_and_rejects_bad_strain(tmp_path):
    path = tmp_path / "background-0-64.hdf5"
    write_background(str(path), strain_for(1024), 0, RATE, chunk_size=100)
    with h5py.File(path) as f:
        assert f["L1"].chunks == (100,)
    bad = strain_for(16)
    bad["L1"][3] = np.inf
    with pytest.raises(BackgroundError, match=r"'L1' is inf at sample 3 \(GPS 10\.1875\)"):
        write_background(str(tmp_path / "x.hdf5"), bad, 10, RATE)
    with pytest.raises(BackgroundError, match=r"equally long, non-empty 1-D.*'H1': \(16,\)"):
        write_background(str(tmp_path / "x.hdf5"), {"H1": np.zeros(16), "L1": np.zeros(8)}, 0, 1)
    assert not (tmp_path / "x.hdf5").exists()


def test_gwpy_reads_our_files(tmp_path):
    from gwpy.timeseries import TimeSeriesDict

    path = write(tmp_path, 1234567890.5, 4)
    data = TimeSeriesDict.read(path, format="hdf5")
    assert sorted(data) == ["H1", "L1"]
    for ifo, expected in strain_for(64).items():
        assert data[ifo].t0.value == 1234567890.5
        assert data[ifo].sample_rate.value == RATE
        assert data[ifo].name == ifo
        np.testing.assert_array_equal(data[ifo].value, expected)


def test_we_read_gwpy_files(tmp_path):
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    t0, rate, size = 1126259462.0, 32.0, 320
    data = TimeSeriesDict()
    for ifo, x in strain_for(size).items():  # float64, as gwpy fetches it
        data[ifo] = TimeSeries(x.astype(np.float64), t0=t0, sample_rate=rate, name=ifo)
    data.write(str(tmp_path / background_fname(t0, size / rate)), format="hdf5")

    (segment,) = list_segments(str(tmp_path), ["H1", "L1"], sample_rate=rate)
    assert (segment.t0, segment.duration, segment.sample_rate) == (t0, 10.0, rate)
    x = read_segment(segment)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.stack(list(strain_for(size).values())))


def test_list_segments_sorts_by_t0(tmp_path):
    for t0, duration in [(3000, 4), (1000.5, 8.25), (2000, 16)]:
        write(tmp_path, t0, duration, rate=4)
    (tmp_path / "waveforms.hdf5").write_bytes(b"not background")  # other files are ignored
    segments = list_segments(str(tmp_path), ["H1"])
    assert [(s.t0, s.duration, s.size) for s in segments] == [
        (1000.5, 8.25, 33),
        (2000.0, 16.0, 64),
        (3000.0, 4.0, 16),
    ]
    assert all(s.sample_rate == 4 and s.ifos == ("H1",) for s in segments)


# -- splitting ---------------------------------------------------------------------------------


def segments_of(durations) -> list[BackgroundSegment]:
    t0s = np.cumsum([0, *durations])[:-1] + 1000
    segs = [
        BackgroundSegment(f"f{t0}", float(t0), d, RATE, ("H1",))
        for t0, d in zip(t0s, durations, strict=True)
    ]
    return segs[::-1]  # any input order


def test_split_by_file_holds_out_latest_files():
    segs = segments_of([100, 100, 200])  # total 400 s
    for kwargs, n_valid in [
        (dict(valid_frac=0.25), 1),
        (dict(valid_frac=0.5), 1),
        (dict(valid_frac=0.6), 2),
        (dict(min_valid_duration=250), 2),
        (dict(valid_frac=0.1, min_valid_duration=201), 2),
    ]:
        train, valid = split_by_file(segs, **kwargs)
        assert [s.t0 for s in train + valid] == [1000, 1100, 1200]
        assert len(valid) == n_valid, kwargs


def test_split_by_file_errors():
    with pytest.raises(BackgroundError, match=r"f1000: 1 background file\(s\).*add background"):
        split_by_file(segments_of([100]), valid_frac=0.5)
    with pytest.raises(BackgroundError, match=r"needs 360 s \(data.valid_frac=0.9.*hold 300 s"):
        split_by_file(segments_of([100, 100, 200]), valid_frac=0.9)
    with pytest.raises(BackgroundError, match=r"data.valid_frac=1.5, .*set valid_frac in \(0, 1\)"):
        split_by_file(segments_of([100, 100]), valid_frac=1.5)
    with pytest.raises(BackgroundError, match=r"data.valid_frac=0, .*set valid_frac in \(0, 1\)"):
        split_by_file(segments_of([100, 100]), valid_frac=0, min_valid_duration=50)
    with pytest.raises(BackgroundError, match=r"valid_frac=None, min_valid_duration=None: set"):
        split_by_file(segments_of([100, 100]))


# -- bad input ---------------------------------------------------------------------------------


def test_missing_and_empty_data_dirs(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(BackgroundError, match=rf"{missing}: .*data.data_dir\) does not exist"):
        list_segments(str(missing), ["H1"])
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(
        BackgroundError,
        match=rf"{tmp_path}: .*data.data_dir\) holds no background-.*\['notes.txt'\]",
    ):
        list_segments(str(tmp_path), ["H1"])


def test_file_lacking_an_ifo(tmp_path):
    path = write(tmp_path, 1000, 4)
    with pytest.raises(
        BackgroundError, match=rf"{path}: no dataset for IFO 'V1'.*the file has \['H1', 'L1'\]"
    ):
        list_segments(str(tmp_path), ["H1", "V1"])


def test_sample_rate_mismatch(tmp_path):
    path = write(tmp_path, 1000, 4)
    with pytest.raises(
        BackgroundError,
        match=rf"{path}: sample rate of 'H1' is 16 Hz \(dx=0.0625\), but the config asks for "
        r"data.sample_rate=2048; resample the data or set data.sample_rate=16",
    ):
        list_segments(str(tmp_path), ["H1", "L1"], sample_rate=2048)
    other = write(tmp_path, 2000, 4, rate=8)  # without a requested rate, files must agree
    with pytest.raises(BackgroundError, match=rf"{other}: sample rate of 'H1' is 8 Hz.*{path} has"):
        list_segments(str(tmp_path), ["H1"])


def test_sample_rates_differ_within_a_file(tmp_path):
    path = tmp_path / "background-0-1.hdf5"
    write_raw(path, {"H1": (np.zeros(16), gwpy_attrs(0)), "L1": (np.zeros(16), gwpy_attrs(0, 32))})
    with pytest.raises(BackgroundError, match=rf"{path}: the IFOs have different sample rates"):
        list_segments(str(tmp_path), ["H1", "L1"])


def test_file_shorter_than_min_duration(tmp_path):
    path = write(tmp_path, 1000, 4)
    with pytest.raises(
        BackgroundError,
        match=rf"{path}: duration is 4 s, shorter than the minimum 9.5 s \(kernel \+ psd\)",
    ):
        list_segments(str(tmp_path), ["H1"], min_duration=9.5, min_duration_desc="kernel + psd")


def test_nan_and_inf_in_strain(tmp_path):
    path = write(tmp_path, 1000, 4)
    with h5py.File(path, "r+") as f:
        f["L1"][37] = np.nan
    (segment,) = list_segments(str(tmp_path), ["H1", "L1"])  # listing reads headers only
    with pytest.raises(BackgroundError, match=rf"{path}: strain of 'L1' is nan at sample 37 "):
        read_segment(segment)
    np.testing.assert_array_equal(read_segment(segment, start=0, stop=37)[1], np.arange(37) + 1e6)
    with pytest.raises(BackgroundError, match=r"'L1' is nan at sample 37 \(GPS 1002.3125\)"):
        check_finite(segment, chunk=10)  # found in the 4th chunk: the GPS time counts the offset
    check_finite(segment, ["H1"])


def test_ifo_lengths_differ(tmp_path):
    path = tmp_path / "background-0-1.hdf5"
    write_raw(path, {"H1": (np.zeros(16), gwpy_attrs(0)), "L1": (np.zeros(12), gwpy_attrs(0))})
    with pytest.raises(
        BackgroundError, match=rf"{path}: the IFOs have different lengths: {{'H1': 16, 'L1': 12}}"
    ):
        list_segments(str(tmp_path), ["H1", "L1"])


def test_missing_attributes_and_wrong_name(tmp_path):
    path = tmp_path / "background-0-1.hdf5"
    write_raw(path, {"H1": (np.zeros(16), {"x0": 0.0})})
    with pytest.raises(BackgroundError, match=rf"{path}: dataset 'H1' lacks .*\['dx'\]"):
        list_segments(str(tmp_path), ["H1"])
    write_raw(path, {"H1": (np.zeros(16), gwpy_attrs(50))})
    with pytest.raises(
        BackgroundError,
        match=rf"{path}: the name says t0=0, duration=1 but the data say t0=50 .*background-50-1",
    ):
        list_segments(str(tmp_path), ["H1"])


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file(tmp_path, damage):
    path = Path(write(tmp_path, 1000, 64))
    if damage == "garbage":
        path.write_bytes(b"\x00" * 4096)
    else:
        path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BackgroundError, match=rf"{path}: cannot be read as HDF5 .*corrupt"):
        list_segments(str(tmp_path), ["H1"])


# -- atomic writes -----------------------------------------------------------------------------


def test_failed_write_leaves_nothing_that_counts(tmp_path):
    write(tmp_path, 1000, 4)
    target = tmp_path / background_fname(2000, 4)
    with pytest.raises(RuntimeError, match="killed"), atomic_local_path(target) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("H1", data=np.zeros(64, dtype=np.float32))
        raise RuntimeError("killed")
    assert not target.exists()
    # a temporary file left by a SIGKILLed writer (no cleanup ran) is not counted either
    (tmp_path / f".{target.name}.abc123.tmp").write_bytes(b"partial")
    assert [s.t0 for s in list_segments(str(tmp_path), ["H1"])] == [1000.0]


def test_retry_retries_transient_errors_only():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset by peer")
        return "ok"

    assert retry(flaky, delay=0) == "ok" and len(calls) == 3
    with pytest.raises(FileNotFoundError):
        retry(lambda: calls.append(1) or open("/nonexistent/x"), delay=0)
    assert len(calls) == 4


# -- s3:// through a real S3 HTTP server -------------------------------------------------------


@pytest.mark.s3
def test_s3_round_trip_and_localize(s3_bucket, tmp_path):
    data_dir = f"{s3_bucket}/bg"
    paths = [write(data_dir, t0, 4) for t0 in (2000, 1000)]
    fs, inner = filesystem(data_dir)
    fs.pipe_file(f"{inner}/waveforms.hdf5", b"waveforms")  # other top-level files are fetched too
    fs.pipe_file(f"{inner}/sub/ignored.hdf5", b"nested")

    segments = list_segments(data_dir, ["L1", "H1"], sample_rate=RATE)
    assert [s.path for s in segments] == paths[::-1]
    x = read_segment(segments[0], start=5, stop=9)
    expected = strain_for(64)
    np.testing.assert_array_equal(x, np.stack([expected["L1"][5:9], expected["H1"][5:9]]))

    cache = tmp_path / "cache"
    assert localize(data_dir, str(cache)) == str(cache)
    names = sorted(p.name for p in cache.iterdir())
    assert names == ["background-1000-4.hdf5", "background-2000-4.hdf5", "waveforms.hdf5"]
    local = list_segments(str(cache), ["L1", "H1"])
    assert [(s.t0, s.duration) for s in local] == [(s.t0, s.duration) for s in segments]
    np.testing.assert_array_equal(read_segment(local[0], start=5, stop=9), x)

    past = 1_000_000_000
    for p in cache.iterdir():
        os.utime(p, ns=(past, past))
    (cache / "waveforms.hdf5").write_bytes(b"stale")  # a different size is fetched again
    localize(data_dir, str(cache))
    mtimes = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert mtimes["background-1000-4.hdf5"] == mtimes["background-2000-4.hdf5"] == past
    assert mtimes["waveforms.hdf5"] != past
    assert (cache / "waveforms.hdf5").read_bytes() == b"waveforms"
    assert localize(str(cache), str(tmp_path / "unused")) == str(cache)  # local: unchanged

    # latest=1: the waveforms and the latest background file only; older cached ones go
    localize(data_dir, str(cache), latest=1)
    names = sorted(p.name for p in cache.iterdir())
    assert names == ["background-2000-4.hdf5", "waveforms.hdf5"]
    localize(data_dir, str(cache), latest=0)
    assert sorted(p.name for p in cache.iterdir()) == ["waveforms.hdf5"]

    # a cache filled from another data_dir is refused rather than mixed in
    (cache / "background-5000-4.hdf5").write_bytes(b"")
    with pytest.raises(BackgroundError, match=rf"{cache}: .*\['background-5000-4.hdf5'\]; empty"):
        localize(data_dir, str(cache))


@pytest.mark.s3
def test_s3_bad_input_and_failed_write(s3_bucket, tmp_path):
    with pytest.raises(BackgroundError, match=rf"{s3_bucket}/missing: .* does not exist"):
        list_segments(f"{s3_bucket}/missing", ["H1"])
    with pytest.raises(BackgroundError, match=rf"{s3_bucket}/missing: .* does not exist"):
        localize(f"{s3_bucket}/missing", str(tmp_path))
    fs, inner = filesystem(s3_bucket)
    fs.pipe_file(f"{inner}/other/notes.txt", b"")
    with pytest.raises(BackgroundError, match=r"holds no background-.*\['notes.txt'\]"):
        localize(f"{s3_bucket}/other", str(tmp_path))

    target = f"{s3_bucket}/bg/{background_fname(1000, 4)}"
    with pytest.raises(RuntimeError, match="killed"), atomic_local_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")
    fs, inner = filesystem(target)
    assert not fs.exists(inner)
    assert not list(tmp_path.iterdir())  # nor a local temporary file

    fs.pipe_file(inner, b"\x00" * 100)  # e.g. an upload by hand that was cut short
    with pytest.raises(BackgroundError, match=rf"{target}: cannot be read as HDF5"):
        list_segments(f"{s3_bucket}/bg", ["H1"])


@pytest.mark.slow  # botocore retries the refused connection for about 10 s first
def test_unreachable_s3_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(ConnectionError, match=r"s3://bucket/bg: cannot reach .*127.0.0.1:9"):
        list_segments("s3://bucket/bg", ["H1"])


@pytest.mark.slow  # botocore retries the refused connection for about 10 s first
@pytest.mark.s3
def test_a_streamed_file_whose_endpoint_goes_away_is_a_storage_error_not_corruption(
    s3_bucket, monkeypatch
):
    """Training streams s3:// files: an endpoint lost after listing is said as such."""
    write(f"{s3_bucket}/bg", 1000, 4)
    (segment,) = list_segments(f"{s3_bucket}/bg", ["L1", "H1"], sample_rate=RATE)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(
        ConnectionError, match=rf"{segment.path} \(data.data_dir\): cannot reach .*127.0.0.1:9"
    ):
        read_segment(segment, start=0, stop=4)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from aframe_lib.utils.fs import write_bytes_atomic

    target = tmp_path / "out.bin"
    write_bytes_atomic(target, b"data")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_bytes() == b"data"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
