"""GWF frames through gwpy + lalframe: names, atomic writes, reads that refuse holes."""

from __future__ import annotations

import numpy as np
import pytest

from aframe_lib.data import frames
from aframe_lib.utils.errors import DataError

pytest.importorskip("lalframe")
from gwpy.timeseries import StateVector, TimeSeries  # noqa: E402


def _write_seconds(tmp_path, t0, n, rate=256, nan_at=None):
    """n 1-s H1 frames of strain (a ramp, so every sample is known) and a state vector."""
    paths = []
    for k in range(n):
        gps = t0 + k
        x = gps + np.arange(rate) / rate  # the sample's own GPS time
        if nan_at is not None and gps <= nan_at < gps + 1:
            x[int((nan_at - gps) * rate)] = np.nan
        strain = TimeSeries(x, t0=gps, sample_rate=rate)
        state = StateVector(np.full(16, 3, dtype=np.uint32), t0=gps, sample_rate=16)
        path = tmp_path / frames.ifo_frame_name("H1", frames.LLHOFT, gps)
        frames.write_frame(path, {"H1:STRAIN": strain, "H1:STATE": state})
        paths.append(path)
    return paths


def test_names_round_trip():
    name = frames.ifo_frame_name("H1", "llhoft", 1264316116)
    assert name == "H-H1_llhoft-1264316116-1.gwf"
    f = frames.parse_frame_name(f"/dev/shm/{name}")
    assert (f.start, f.end, f.observatory, f.description, f.ifo) == (
        1264316116,
        1264316117,
        "H",
        "H1_llhoft",
        "H1",
    )
    assert frames.parse_frame_name("L-L1_HOFT_C00-1264312320-4096.gwf").duration == 4096
    for bad in ("H-H1_llhoft-1264316116-1.gwf.tmp", ".H-H1_llhoft-1.abc.tmp", "x.gwf"):
        with pytest.raises(ValueError):
            frames.parse_frame_name(bad)


def test_write_then_read_equals_the_samples(tmp_path):
    paths = _write_seconds(tmp_path, 1000000000, 4)
    # no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    got = frames.read_frames(paths, ["H1:STRAIN", "H1:STATE"], 1000000000.5, 1000000003.25)
    strain = got["H1:STRAIN"]
    expect = 1000000000.5 + np.arange(int(2.75 * 256)) / 256
    np.testing.assert_allclose(strain.value, expect, rtol=0, atol=1e-6)
    assert strain.t0.value == 1000000000.5 and strain.sample_rate.value == 256
    assert set(np.asarray(got["H1:STATE"].value)) == {3}


def test_a_missing_frame_is_refused_with_its_gps(tmp_path):
    paths = _write_seconds(tmp_path, 1000000000, 5)
    paths[2].unlink()
    with pytest.raises(DataError, match=r"GPS \[1000000002, 1000000003\)"):
        frames.read_frames(paths[:2] + paths[3:], ["H1:STRAIN"])
    # the stretch around the hole reads
    assert len(frames.read_frames(paths[:2], ["H1:STRAIN"])["H1:STRAIN"]) == 512


def test_nans_and_absent_channels_are_named(tmp_path):
    paths = _write_seconds(tmp_path, 1000000000, 3, nan_at=1000000001.5)
    with pytest.raises(DataError, match=r"NaN/inf samples, the first at GPS 1000000001\.5"):
        frames.read_frames(paths, ["H1:STRAIN"])
    with pytest.raises(DataError, match="H1:NOPE"):
        frames.read_frames(paths, ["H1:NOPE"])
