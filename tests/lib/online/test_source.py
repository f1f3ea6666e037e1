"""The frame source: every second read, or dead time with its reason; never an exception."""

from __future__ import annotations

import numpy as np
import pytest

RATE = 64


def _write(frames, gps, ifos=("H1", "L1"), state=3, value=None):
    from aframe_lib.data.replay import write_second

    for j, ifo in enumerate(ifos):
        x = np.full(RATE, gps + j / 10.0 if value is None else value)
        write_second(frames, ifo, gps, x, state=state)


def _read_all(frames, **kwargs):
    from aframe_lib.online.source import FrameSource

    src = FrameSource(frames, ["H1", "L1"], RATE, late=0.05, timeout=0.3, **kwargs)
    seconds = []
    for s in src:
        seconds.append(s)
        if s.gps >= 109:
            break
    return src, seconds


def test_bad_seconds_are_dead_time_with_their_reason(tmp_path):
    from aframe_lib.data.frames import ifo_frame_name

    for gps in range(100, 110):
        _write(tmp_path, gps)
    (tmp_path / ifo_frame_name("L1", "llhoft", 102)).unlink()  # missing
    _write(tmp_path, 104, state=2)  # HOFT_OK bit clear
    _write(tmp_path, 105, value=np.nan)  # NaN strain
    (tmp_path / ifo_frame_name("H1", "llhoft", 106)).write_bytes(b"not a frame")
    (tmp_path / "H-H1_llhoft-notgps-1.gwf").write_bytes(b"")  # ignored name
    src, seconds = _read_all(tmp_path)
    reasons = {s.gps: s.reason for s in seconds}
    bad = {102: "missing", 104: "not ready", 105: "nonfinite", 106: "unreadable"}
    assert reasons == {gps: bad.get(gps) for gps in range(100, 110)}
    ok = next(s for s in seconds if s.gps == 103)
    np.testing.assert_allclose(ok.strain, [[103.0] * RATE, [103.1] * RATE], rtol=1e-6)
    assert src.dead == {"missing": 1, "not ready": 1, "nonfinite": 1, "unreadable": 1}


def test_a_custom_bitmask_and_a_jump_over_a_long_gap(tmp_path):
    for gps in (100, 101, 105, 106, 107, 108, 109):
        _write(tmp_path, gps, state=1)
    src, seconds = _read_all(tmp_path, bitmask=1)
    assert [s.gps for s in seconds] == [100, 101, 102, 105, 106, 107, 108, 109]
    assert [s.reason for s in seconds][2] == "missing"
    assert src.dead == {"missing": 3}  # 102, 103, 104
    src, seconds = _read_all(tmp_path)  # default bitmask 3: bit 1 unset, nothing is ready
    assert {s.reason for s in seconds if s.gps != 102} == {"not ready"}


def test_aframe_online_bad_input_is_one_message_and_exit_2(tmp_path, capsys):
    from aframe_lib.online.service import main

    with pytest.raises(SystemExit) as exc:
        main(["--model", str(tmp_path / "model.pt"), "--frames", str(tmp_path / "nope"),
              "--background", str(tmp_path / "bg.hdf5")])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--frames" in err and "no such directory" in err and "Traceback" not in err


def test_frames_at_a_multiple_of_the_model_rate_are_read_and_others_are_dead(tmp_path):
    from aframe_lib.data.replay import write_second
    from aframe_lib.online.source import FrameSource

    for ifo in ("H1", "L1"):
        write_second(tmp_path, ifo, 100, np.ones(2 * RATE))  # 2x: resampled by the engine
        write_second(tmp_path, ifo, 101, np.ones(RATE + 1))  # not a multiple
    write_second(tmp_path, "H1", 102, np.ones(RATE))
    write_second(tmp_path, "L1", 102, np.ones(2 * RATE))  # IFOs at different rates
    src = FrameSource(tmp_path, ["H1", "L1"], RATE)
    first = src.read(100)
    assert first.rate == 2 * RATE and first.strain.shape == (2, 2 * RATE)
    assert src.read(101).reason == "rate" and src.read(102).reason == "rate"


def test_the_service_survives_a_second_the_search_fails_on(tmp_path, oracle, monkeypatch):
    """An exception inside the search on one second is logged dead time; the service goes on."""
    from helpers.search import SAMPLE_RATE

    from aframe_lib.data.replay import write_second
    from aframe_lib.online import engine as engine_module
    from aframe_lib.online.service import run_online

    frames = tmp_path / "frames"
    rng = np.random.default_rng(0)
    for gps in range(100, 104):
        for ifo in ("H1", "L1"):
            write_second(frames, ifo, gps, rng.normal(size=int(SAMPLE_RATE)))
    push, calls = engine_module.OnlineSearch.push, []

    def failing(self, t0, strain, rate=None):
        calls.append(t0)
        if t0 == 101:
            raise RuntimeError("boom")
        return push(self, t0, strain, rate)

    monkeypatch.setattr(engine_module.OnlineSearch, "push", failing)
    monkeypatch.setattr(
        "aframe_lib.online.significance.Background.check", lambda self, settings: None
    )
    import h5py

    with h5py.File(tmp_path / "bg.hdf5", "w") as f:
        f["stat"] = np.arange(10.0)
        f.attrs["livetime"] = 100.0
    summary = run_online(str(oracle), str(frames), str(tmp_path / "bg.hdf5"),
                         outbox=str(tmp_path / "outbox"), exit_after_idle=0.5, late=0.1,
                         timeout=0.3)  # fmt: skip
    assert calls == [100, 101, 102, 103]
    assert summary["dead_time_error_s"] == 1
