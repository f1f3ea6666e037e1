"""The whole online road on a replay: frames -> aframe-online -> a GraceDB stand-in (https).

The model is the search tests' oracle (whitened excess power, helpers/search.py); the
background is built as ``aframe-train evaluate`` builds it (timeslides of other noise, the
settings recorded in the file).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.gracedb_api import GraceDbStandIn
from helpers.search import IFOS, SAMPLE_RATE

pytestmark = pytest.mark.slow  # ~70 s: a 3000 s timeslide background, frames written by gwpy

T0 = 1_000_000_000  # generate_background's first GPS second


@pytest.fixture(scope="module")
def world(oracle, tmp_path_factory):
    """The model, a background file (settings recorded), noise to replay, loud waveforms."""
    from ml4gw.distributions import PowerLaw

    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import WaveformPopulation, generate_waveforms
    from aframe_lib.online.service import ONLINE_DEFAULTS
    from aframe_lib.search import Search, SearchSettings, find_spans, timeslide_spans
    from aframe_lib.search.events import write_events

    root = tmp_path_factory.mktemp("online")
    settings = SearchSettings(**ONLINE_DEFAULTS, device="cpu")
    search = Search.from_exported(str(oracle), settings)
    generate_background(str(root / "bgdata"), IFOS, 240.0, SAMPLE_RATE, 120.0, seed=11)
    spans = find_spans(str(root / "bgdata"), IFOS, SAMPLE_RATE)
    result = search.run(timeslide_spans(spans, 2.0, 3000.0, search.livetime_of), progress=False)
    write_events(str(root / "background_events.hdf5"), result.events,
                 {**search.settings(), "livetime": result.livetime})  # fmt: skip
    generate_background(str(root / "noise"), IFOS, 100.0, SAMPLE_RATE, 100.0, seed=12)
    waveforms = generate_waveforms(
        str(root / "waveforms.hdf5"), 8, SAMPLE_RATE, waveform_duration=4.0, coalescence_time=3.0,
        population=WaveformPopulation(distance=PowerLaw(50.0, 150.0, 2)), seed=5,
    )  # fmt: skip
    # evaluate's injection_results.hdf5 (matched stat, distances) for p_astro, as it makes it
    import h5py

    from aframe_lib.search import inject_population
    from aframe_lib.search.metrics import match_injections

    fg_wf = generate_waveforms(
        str(root / "fg_waveforms.hdf5"), 14, SAMPLE_RATE, waveform_duration=4.0,
        coalescence_time=3.0, seed=6,
        population=WaveformPopulation(distance=PowerLaw(50.0, 400.0, 2)),
    )  # fmt: skip
    table = inject_population(str(root / "bgdata"), str(root / "fg"), fg_wf, IFOS, 16.0, 20.0,
                              distance_range=(50.0, 400.0), seed=7)  # fmt: skip
    fg = search.run(find_spans(str(root / "fg"), IFOS, SAMPLE_RATE), progress=False)
    found = match_injections(table["time"], fg.events.time, fg.events.stat, fg.events.var)
    with h5py.File(root / "injection_results.hdf5", "w") as f:
        f["stat"], f["distance"] = found, table["distance"]
        f.attrs["distance_range"] = [50.0, 400.0]
    del waveforms
    return {"root": root, "model": str(oracle), "livetime": result.livetime}


@pytest.fixture
def gracedb(tmp_path, monkeypatch):
    with GraceDbStandIn(tmp_path) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert))
        yield server


def _online(world, frames, tmp_path, gracedb, **kwargs):
    from aframe_lib.online.service import run_online

    args = dict(
        model=world["model"], frames=str(frames),
        background=str(world["root"] / "background_events.hdf5"), gracedb=gracedb.url,
        outbox=str(tmp_path / "outbox"), far_threshold=1.5 / world["livetime"] * 3.15576e7,
        group="Test", exit_after_idle=3.0, late=0.2, timeout=1.0,
        pastro_far=20 / world["livetime"] * 3.15576e7,  # s0: the 20th loudest background event
    )  # fmt: skip
    return run_online(**{**args, **kwargs})


def test_an_injection_in_a_replay_arrives_with_its_gps_time_and_a_far_below_threshold(
    world, tmp_path, gracedb, capsys
):
    from aframe_lib.data.replay import replay
    from aframe_lib.search.injections import read_injections

    frames = tmp_path / "frames"
    replay(str(world["root"] / "noise"), str(frames), speed=0,
           injections=str(world["root"] / "waveforms.hdf5"), injection_spacing=16.0,
           injection_start=24.0)  # fmt: skip
    table, _ = read_injections(str(frames / "injections.hdf5"))
    assert len(table["time"]) >= 3
    # jittered by up to 1 s (the default) after their slots: at different phases of the
    # search's 1/4 s output grid, as real mergers are
    late = (table["time"] - T0 - 24.0) % 16.0
    assert ((late >= 0) & (late <= 1.0)).all() and len(np.unique(np.round(late % 0.25, 4))) > 1
    summary = _online(world, frames, tmp_path, gracedb)
    threshold = 1.5 / world["livetime"] * 3.15576e7
    events = list(gracedb.events.values())
    assert gracedb.duplicates == 0 and summary["pending_uploads"] == 0
    assert all(e["far"] * 3.15576e7 < threshold for e in events)
    for t in table["time"]:
        near = [e for e in events if abs(e["gpstime"] - t) < 0.5]
        assert len(near) == 1, (t, [e["gpstime"] for e in events])
        assert near[0]["far"] * 3.15576e7 < threshold
        assert near[0]["pipeline"] == "aframe" and near[0]["search"] == "AllSky"
        # p_astro (injection_results.hdf5 beside the background): louder than every
        # background event, these are astrophysical beyond doubt
        (log,) = near[0]["log"]
        assert log["filename"] == "aframe.p_astro.json" and log["tag_names"] == ["p_astro"]
        p_astro = json.loads(near[0]["files"]["aframe.p_astro.json"])
        assert p_astro["BBH"] > 0.9 and p_astro["Terrestrial"] == pytest.approx(1 - p_astro["BBH"])
    # one 100 s segment: kernels ending 1.5 s to 99.5 s in, every 1/4 s, less 3 integrated
    assert summary["livetime_s"] == pytest.approx(((100 - 2) * 4 + 1 - 3) / 4)


def test_pure_noise_uploads_nothing_above_threshold_gaps_are_dead_time_and_outages_lose_nothing(
    world, tmp_path, gracedb, capsys
):
    """Noise replayed with a missing second (H1) and a not-ready second (L1): both are dead
    time, the search restarts after each, and only events under the threshold are uploaded."""
    from aframe_lib.data.frames import ifo_frame_name
    from aframe_lib.data.replay import replay, write_second

    frames = tmp_path / "frames"
    replay(str(world["root"] / "noise"), str(frames), speed=0)
    gracedb.fail_for(4.0)  # GraceDB down as the service starts: nothing may be lost
    (frames / ifo_frame_name("H1", "llhoft", T0 + 40)).unlink()
    write_second(frames, "L1", T0 + 70, np.zeros(int(SAMPLE_RATE)), state=1)  # no intent bit
    threshold = 1e7  # per year: noise events lie on both sides of it
    summary = _online(world, frames, tmp_path, gracedb, far_threshold=threshold)
    out = capsys.readouterr().out
    fars = [float(w.split("=")[1]) for w in out.split() if w.startswith("far_per_yr=")]
    below = sum(f < threshold for f in fars)
    assert len(fars) > 10 and 0 < below < len(fars) and len(gracedb.events) == below
    assert all(e["far"] * 3.15576e7 < threshold for e in gracedb.events.values())
    assert gracedb.failed > 0 and gracedb.duplicates == 0 and summary["pending_uploads"] == 0
    # the second missing, and the one after the replay's last that never comes
    assert summary["dead_time_missing_s"] == 2 and summary["dead_time_not_ready_s"] == 1
    # three segments: [0, 40), [41, 70), [71, 100): each loses psd warm-up + filter + kernel
    expected = sum(((n - 2) * 4 + 1 - 3) / 4 for n in (40, 29, 29))
    assert summary["livetime_s"] == pytest.approx(expected)


def test_a_background_made_with_other_settings_is_refused(world, tmp_path):
    from aframe_lib.online.service import run_online
    from aframe_lib.online.significance import BackgroundMismatch
    from aframe_lib.search import SearchSettings

    (tmp_path / "frames").mkdir()
    with pytest.raises(BackgroundMismatch, match="cluster_window=1.0.*cluster_window=8.0"):
        run_online(world["model"], str(tmp_path / "frames"),
                   str(world["root"] / "background_events.hdf5"),
                   settings=SearchSettings(device="cpu"))  # fmt: skip


def _script() -> list[str]:
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "aframe-online"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aframe_lib.online.service"]


def test_kill_9_and_restart_uploads_each_event_exactly_once(world, tmp_path, gracedb):
    """The service is killed (SIGKILL) right after GraceDB acknowledged the first candidate,
    the rest still in the outbox (the server had been failing); restarted on the same outbox
    and frames, it uploads every candidate exactly once."""
    import os
    import signal
    import subprocess
    import time

    from aframe_lib.data.replay import replay
    from aframe_lib.search.injections import read_injections

    frames, outbox = tmp_path / "frames", tmp_path / "outbox"
    replay(str(world["root"] / "noise"), str(frames), speed=0,
           injections=str(world["root"] / "waveforms.hdf5"), injection_spacing=16.0,
           injection_start=24.0)  # fmt: skip
    n = len(read_injections(str(frames / "injections.hdf5"))[0]["time"])
    cmd = [*_script(), "--model", world["model"], "--frames", str(frames), "--background",
           str(world["root"] / "background_events.hdf5"), "--gracedb", gracedb.url,
           "--outbox", str(outbox), "--far_threshold",
           str(1.5 / world["livetime"] * 3.15576e7), "--group", "Test", "--device", "cpu",
           "--late", "0.2", "--timeout", "1",
           "--pastro_far", str(20 / world["livetime"] * 3.15576e7)]  # fmt: skip
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(gracedb.cert)}

    def wait(cond, timeout=120.0):
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            time.sleep(0.01)
        return cond()

    gracedb.fail_for(600.0)
    gracedb.delay = 0.5  # each creation takes 0.5 s: the kill comes while the rest wait
    proc = subprocess.Popen([*cmd, "--exit_after_idle", "600"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert wait(lambda: len(list(outbox.glob("*.json"))) == n), proc.stderr
        gracedb.fail_for(0.0)
        assert wait(lambda: outbox.joinpath("sent").exists()
                    and len(list(outbox.joinpath("sent").glob("*.json"))) >= 1)  # fmt: skip
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    acked = len(list(outbox.joinpath("sent").glob("*.json")))
    assert 1 <= acked < n
    gracedb.delay = 0.0
    proc = subprocess.run([*cmd, "--exit_after_idle", "3"], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(gracedb.events) == n and gracedb.duplicates == 0
    assert all(len(e["log"]) == 1 for e in gracedb.events.values())  # p_astro once each
    assert not list(outbox.glob("*.json")) and len(list((outbox / "sent").glob("*.json"))) == n
