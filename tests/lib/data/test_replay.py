"""``aframe-data replay``: 1-second frames of strain + state vector, named as on the grid."""

from __future__ import annotations

import numpy as np
import pytest


def test_replay_writes_one_frame_per_second_and_ifo_with_the_strain(tmp_path):
    from aframe_lib.data.cli import run
    from aframe_lib.data.frames import read_frames
    from aframe_lib.data.noise import generate_background
    from aframe_lib.search import find_spans

    generate_background(str(tmp_path / "data"), ["H1", "L1"], 10.0, 64.0, 10.0, seed=1)
    out = tmp_path / "frames"
    run(["replay", "--data", str(tmp_path / "data"), "--out", str(out), "--speed", "0",
         "--max_seconds", "3"])  # fmt: skip
    names = sorted(p.name for p in out.glob("*.gwf"))
    t0 = 1_000_000_000
    assert names == sorted(f"{i[0]}-{i}_llhoft-{t0 + k}-1.gwf" for i in ("H1", "L1")
                           for k in range(3))  # fmt: skip
    (span,) = find_spans(str(tmp_path / "data"), ["H1", "L1"])
    got = read_frames(sorted(out.glob("L-L1_*.gwf")),
                      ["L1:GDS-CALIB_STRAIN_CLEAN", "L1:GDS-CALIB_STATE_VECTOR"])  # fmt: skip
    np.testing.assert_array_equal(got["L1:GDS-CALIB_STRAIN_CLEAN"].value, span.read(0, 192)[1])
    assert (got["L1:GDS-CALIB_STATE_VECTOR"].value == 3).all()
    assert got["L1:GDS-CALIB_STATE_VECTOR"].sample_rate.value == 16


def test_replay_bad_speed_is_exit_2(tmp_path, capsys):
    from aframe_lib.data.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["replay", "--data", str(tmp_path), "--out", str(tmp_path / "f"), "--speed", "-1"])
    assert exc.value.code == 2 and "--speed=-1" in capsys.readouterr().err


def test_replay_keeps_only_the_last_seconds_when_asked(tmp_path):
    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.replay import replay

    generate_background(str(tmp_path / "data"), ["H1"], 6.0, 64.0, 6.0, seed=1)
    replay(str(tmp_path / "data"), str(tmp_path / "f"), speed=0, ifos=["H1"], keep=2)
    assert sorted(p.name for p in (tmp_path / "f").glob("*.gwf")) == [
        "H-H1_llhoft-1000000004-1.gwf", "H-H1_llhoft-1000000005-1.gwf"]  # fmt: skip


def test_replay_bad_injection_jitter_is_exit_2(tmp_path, capsys):
    from aframe_lib.data.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["replay", "--data", str(tmp_path), "--out", str(tmp_path / "f"),
              "--injections", str(tmp_path / "w.hdf5"), "--injection_spacing", "4",
              "--injection_jitter", "4"])  # fmt: skip
    assert exc.value.code == 2 and "--injection_jitter=4.0" in capsys.readouterr().err
