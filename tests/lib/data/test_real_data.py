"""Real observing-run data through the real clients: ``aframe-data segments`` (dqsegdb2, gwosc)
and ``aframe-data fetch`` (gwdatafind + GWF frames, open data), against protocol-level stand-ins
on 127.0.0.1 (``helpers.gwdata_servers``: the real gwdatafind-server application, a DQSegDB REST
stand-in, a GWOSC API stand-in). The clients reach them through their own settings
(``DEFAULT_SEGMENT_SERVER``, ``GWDATAFIND_SERVER``, ``GWOSC_SERVER_URL``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("lalframe")
pytest.importorskip("gwdatafind_server")

from helpers.gwdata_servers import (  # noqa: E402
    DatafindServer,
    OpenDataServer,
    SegmentServer,
    strain_signal,
    write_ffl,
    write_frames,
)

from aframe_lib.data import cli  # noqa: E402
from aframe_lib.data import provenance as prov  # noqa: E402
from aframe_lib.data.background import list_segments, read_segment  # noqa: E402
from aframe_lib.data.fetch import fetch_background, fetch_strain  # noqa: E402
from aframe_lib.data.segments import SegmentsError, query_segments, read_segments  # noqa: E402
from aframe_lib.utils.errors import DataError  # noqa: E402

T0 = 1_000_000_000  # a multiple of 64: frame files start on it
RATE_IN, RATE_OUT = 16384, 2048
CHANNEL = "{ifo}:GDS-CALIB_STRAIN"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setenv("AFRAME_SERVICE_DELAY", "0.01")


def free_port_url() -> str:
    """The URL of a port nothing listens on (a server that is down)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# ---------------------------------------------------------------- segments


def mask(spans, start, end):
    """A 1-s boolean grid of ``[start, end)``: True inside ``spans`` (the independent oracle)."""
    m = np.zeros(end - start, bool)
    for a, b in spans:
        m[max(a, start) - start : max(0, min(b, end) - start)] = True
    return m


def runs(m, start, min_duration=0):
    """The True stretches of a 1-s grid as (start, end), at least ``min_duration`` long."""
    edges = np.flatnonzero(np.diff(np.r_[0, m.astype(int), 0]))
    return [(start + a, start + b) for a, b in zip(edges[::2], edges[1::2], strict=True)
            if b - a >= min_duration]  # fmt: skip


def random_spans(rng, start, end, mean_on, mean_off):
    out, t = [], start + int(rng.integers(0, mean_off))
    while t < end:
        d = int(rng.exponential(mean_on)) + 1
        out.append((t, min(t + d, end)))
        t += d + int(rng.exponential(mean_off)) + 1
    return out


@pytest.fixture
def week():
    """A week of H1/L1 analysis-ready segments with gaps, and a veto flag, on a DQSegDB."""
    rng = np.random.default_rng(7)
    start, end = T0, T0 + 7 * 86400
    flags = {
        "H1:DMT-ANALYSIS_READY:1": random_spans(rng, start, end, 20000, 3000),
        "L1:DMT-ANALYSIS_READY:1": random_spans(rng, start, end, 15000, 4000),
        "H1:DCH-BAD_TIMES:1": random_spans(rng, start, end, 300, 40000),
    }
    server = SegmentServer(flags)
    yield server, flags, start, end
    server.stop()


def test_a_week_of_segments_gives_exactly_the_intersection_less_vetoes(tmp_path, week,
                                                                       monkeypatch):  # fmt: skip
    server, flags, start, end = week
    monkeypatch.setenv("DEFAULT_SEGMENT_SERVER", server.url)
    train_stop, min_duration = start + 5 * 86400, 1000
    out = tmp_path / "segs"
    cli.main(["segments", "--out_dir", str(out), "--ifos=[H1,L1]", "--start", str(start),
              "--end", str(end), "--vetoes=[H1:DCH-BAD_TIMES:1]", "--train_stop",
              str(train_stop), "--min_duration", str(min_duration)])  # fmt: skip
    good = (mask(flags["H1:DMT-ANALYSIS_READY:1"], start, end)
            & mask(flags["L1:DMT-ANALYSIS_READY:1"], start, end)
            & ~mask(flags["H1:DCH-BAD_TIMES:1"], start, end))  # fmt: skip
    cut = train_stop - start
    train = runs(good[:cut], start, min_duration)
    test = runs(good[cut:], train_stop, min_duration)
    assert len(train) > 5 and len(test) > 2  # the case is not trivial
    assert read_segments(out / "train.txt") == [(float(a), float(b)) for a, b in train]
    assert read_segments(out / "test.txt") == [(float(a), float(b)) for a, b in test]
    # the formats gwpy and igwn-segments (ligo-segments) read
    from gwpy.segments import SegmentList

    back = SegmentList.read(str(out / "train.txt"), format="segwizard")
    assert [(int(a), int(b)) for a, b in back] == train
    query = json.loads((out / "segments.json").read_text())
    assert query["server"] == server.url and query["source"] == "dqsegdb"
    assert query["flags"] == {"H1": ["H1:DMT-ANALYSIS_READY:1"], "L1": ["L1:DMT-ANALYSIS_READY:1"]}
    assert query["vetoes"] == ["H1:DCH-BAD_TIMES:1"]
    assert query["versions"]["H1:DCH-BAD_TIMES:1"] == 1
    assert query["periods"] == {"train": [start, train_stop], "test": [train_stop, end]}
    assert query["livetime"]["train"] == sum(b - a for a, b in train)


def test_segments_retry_a_500_then_succeed(tmp_path, week, monkeypatch):
    server, flags, start, end = week
    monkeypatch.setenv("DEFAULT_SEGMENT_SERVER", server.url)
    server.fail_next(2)
    query_segments(str(tmp_path / "s"), ["H1"], start, start + 86400)
    expect = runs(mask(flags["H1:DMT-ANALYSIS_READY:1"], start, start + 86400), start)
    assert read_segments(tmp_path / "s" / "train.txt") == [(float(a), float(b)) for a, b in expect]
    assert len(server.requests) >= 3


@pytest.mark.parametrize("case", ["no segments", "empty intersection", "server down", "404"])
def test_segments_errors_exit_2_with_one_message_and_write_nothing(tmp_path, capsys,
                                                                   monkeypatch, case):  # fmt: skip
    flags = {"H1:DMT-ANALYSIS_READY:1": [(T0, T0 + 100)], "L1:DMT-ANALYSIS_READY:1":
             [(T0 + 200, T0 + 300)], "V1:ITF_SCIENCE:1": []}  # fmt: skip
    server = SegmentServer(flags)
    url = free_port_url() if case == "server down" else server.url
    monkeypatch.setenv("DEFAULT_SEGMENT_SERVER", url)
    ifos, extra, expected = {
        "no segments": ("[H1,V1]", ["--flags=[H1:DMT-ANALYSIS_READY:1,V1:ITF_SCIENCE:1]"],
                        "flag V1:ITF_SCIENCE:1 has no active segments"),
        "empty intersection": ("[H1,L1]", [], "never active together"),
        "server down": ("[H1]", [], f"{url}: no answer for flag H1:DMT-ANALYSIS_READY:1 after"),
        "404": ("[H1]", ["--flags=[H1:NO-SUCH_FLAG:1]"], "asking for flag H1:NO-SUCH_FLAG:1"),
    }[case]  # fmt: skip
    out = tmp_path / "segs"
    with pytest.raises(SystemExit) as exc:
        cli.main(["segments", "--out_dir", str(out), f"--ifos={ifos}", "--start", str(T0),
                  "--end", str(T0 + 1000), *extra])  # fmt: skip
    server.stop()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and expected in err, err
    assert "Traceback" not in err and err.count("error:") == 1
    assert not out.exists()


def test_open_data_timeline_segments_through_gwosc(tmp_path, monkeypatch):
    timelines = {"H1_DATA": [(T0, T0 + 500), (T0 + 700, T0 + 2000)],
                 "L1_DATA": [(T0 + 100, T0 + 1500)]}  # fmt: skip
    server = OpenDataServer(tmp_path / "od", "O3b_4KHZ_R1", {"H1": [(T0, T0 + 64)]}, timelines)
    monkeypatch.setenv("GWOSC_SERVER_URL", server.url)
    try:
        query_segments(str(tmp_path / "s"), ["H1", "L1"], T0, T0 + 2000, source="gwosc",
                       train_stop=T0 + 1000, min_duration=301)  # fmt: skip
    finally:
        server.stop()
    assert read_segments(tmp_path / "s" / "train.txt") == [(T0 + 100.0, T0 + 500.0)]
    assert read_segments(tmp_path / "s" / "test.txt") == [(T0 + 1000.0, T0 + 1500.0)]
    assert json.loads((tmp_path / "s" / "segments.json").read_text())["flags"] == {
        "H1": ["H1_DATA"], "L1": ["L1_DATA"]}  # fmt: skip


def test_segments_files_read_two_and_four_columns_and_refuse_a_bad_line(tmp_path):
    (tmp_path / "a.txt").write_text("# seg start stop duration\n0 10 20 10\n1 30 45 15\n")
    (tmp_path / "b.txt").write_text("10 20\n30 45\n")
    assert read_segments(tmp_path / "a.txt") == read_segments(tmp_path / "b.txt")
    assert read_segments(tmp_path / "b.txt") == [(10.0, 20.0), (30.0, 45.0)]
    # igwn-segments stops at the first line it cannot parse; the rest must not vanish silently
    (tmp_path / "c.txt").write_text("10 20\n30 forty\n50 60\n")
    with pytest.raises(SegmentsError, match="line '30 forty' is not a segment"):
        read_segments(tmp_path / "c.txt")


# ---------------------------------------------------------------- frames through gwdatafind


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """H1 and L1 frames (16384 Hz float64, 64-s files) over [T0, T0+128) and, with the L1 file
    at [T0+320, T0+384) missing, over [T0+256, T0+384); served by the real gwdatafind-server."""
    root = tmp_path_factory.mktemp("frames")
    files = []
    for ifo in ("H1", "L1"):
        spans = [(T0, T0 + 128), (T0 + 256, T0 + 384 if ifo == "H1" else T0 + 320)]
        files += write_frames(root, ifo, CHANNEL.format(ifo=ifo), "HOFT_C00", spans, 64)
    write_ffl(root / "frames.ffl", files)
    server = DatafindServer(root, tmp_path_factory.mktemp("datafind"))
    yield server, root
    server.stop()


FRAMES = dict(frametypes=["H1_HOFT_C00", "L1_HOFT_C00"],
              channels=["H1:GDS-CALIB_STRAIN", "L1:GDS-CALIB_STRAIN"])  # fmt: skip
FETCH = ["--ifos=[H1,L1]", "--sample_rate", str(RATE_OUT), "--frametypes=[H1_HOFT_C00,L1_HOFT_C00]",
         f"--channels=[{CHANNEL.format(ifo='H1')},{CHANNEL.format(ifo='L1')}]"]  # fmt: skip


def expected_strain(ifo: str, start: int, end: int, factor: int = RATE_IN // RATE_OUT):
    """The documented resampling, computed independently: torchaudio's Resample (kaiser_best)
    of the whole segment's float64 samples as the frames hold them."""
    import torch

    x = torch.from_numpy(_frame_samples(ifo, start, end))
    return kaiser_best(factor)(x[None])[0].numpy()


def kaiser_best(factor: int):
    """torchaudio's Resample(factor -> 1) with the documented kaiser_best settings."""
    import torch
    from torchaudio.transforms import Resample

    return Resample(factor, 1, dtype=torch.float64, resampling_method="sinc_interp_kaiser",
                    lowpass_filter_width=64, rolloff=0.9475937167399596,
                    beta=14.769656459379492)  # fmt: skip


def _frame_samples(ifo: str, start: int, end: int) -> np.ndarray:
    """What the 64-s files of :func:`write_frames` hold over ``[start, end)``."""
    parts = []
    for t in range(start, end, 64):
        parts.append(strain_signal(ifo, t + np.arange(64 * RATE_IN) / RATE_IN))
    return np.concatenate(parts)


def test_fetched_chunks_equal_the_frames_resampled_as_documented(tmp_path, frames, monkeypatch):
    server, _ = frames
    monkeypatch.setenv("GWDATAFIND_SERVER", server.url)
    segs = tmp_path / "train.txt"
    segs.write_text(f"0 {T0} {T0 + 128} 128\n")
    out = tmp_path / "bg"
    server.fail_next(1)  # datafind answers 500 once, then 200: retried
    cli.main(["fetch", "--data_dir", str(out), "--segments", str(segs), "--max_duration", "100",
              *FETCH])  # fmt: skip
    assert any(r.endswith("file.json") for r in server.requests)
    found = list_segments(str(out), ["H1", "L1"], sample_rate=RATE_OUT)
    # chunk edges on the files' edges (T0+64), not at T0+100
    assert [(s.t0, s.duration) for s in found] == [(T0, 64.0), (T0 + 64, 64.0)]
    got = np.concatenate([read_segment(s) for s in found], axis=1)
    for row, ifo in enumerate(("H1", "L1")):
        want = expected_strain(ifo, T0, T0 + 128)
        np.testing.assert_allclose(got[row], want, rtol=0, atol=2e-7 * np.abs(want).max())
    # the 3 kHz tone above the new Nyquist is gone, the 60 Hz one kept
    spec = np.abs(np.fft.rfft(got[0].astype(np.float64)))
    freqs = np.fft.rfftfreq(got.shape[1], 1 / RATE_OUT)
    assert spec[np.argmin(np.abs(freqs - 60))] > 100 * spec[freqs > 1000].max()
    record = prov.read(found[0].path)
    assert record["source"] == "frames" and record["spans"] == {
        "H1": [[T0, T0 + 64]],
        "L1": [[T0, T0 + 64]],
    }
    assert record["frametypes"] == {"H1": "H1_HOFT_C00", "L1": "L1_HOFT_C00"}
    assert record["channels"]["L1"] == "L1:GDS-CALIB_STRAIN"
    manifest = json.loads((out / "fetch.json").read_text())
    assert manifest["files"] == [Path(s.path).name for s in found] and not manifest["refused"]
    from gwpy.timeseries import TimeSeries

    back = TimeSeries.read(found[1].path, path="L1", format="hdf5")
    assert back.t0.value == T0 + 64 and back.sample_rate.value == RATE_OUT


def test_fetched_files_record_the_flags_vetoes_and_segment_server(tmp_path, frames,
                                                                   monkeypatch):  # fmt: skip
    """Segments from DQSegDB (a veto cutting a hole), then frames over them: every file's
    provenance names the flags and vetoes with their versions and the server asked."""
    server, _ = frames
    monkeypatch.setenv("GWDATAFIND_SERVER", server.url)
    dq = SegmentServer({"H1:DMT-ANALYSIS_READY:1": [(T0, T0 + 128)],
                        "L1:DMT-ANALYSIS_READY:1": [(T0, T0 + 128)],
                        "H1:DCH-BAD_TIMES:2": [(T0 + 64, T0 + 100)]})  # fmt: skip
    monkeypatch.setenv("DEFAULT_SEGMENT_SERVER", dq.url)
    try:
        cli.main(["segments", "--out_dir", str(tmp_path / "s"), "--ifos=[H1,L1]", "--start",
                  str(T0), "--end", str(T0 + 128), "--vetoes=[H1:DCH-BAD_TIMES:2]"])  # fmt: skip
    finally:
        dq.stop()
    assert read_segments(tmp_path / "s" / "train.txt") == [(T0, T0 + 64.0), (T0 + 100, T0 + 128.0)]
    cli.main(["fetch", "--data_dir", str(tmp_path / "bg"), "--segments",
              str(tmp_path / "s" / "train.txt"), "--max_duration", "64", *FETCH])  # fmt: skip
    found = list_segments(str(tmp_path / "bg"), ["H1", "L1"], sample_rate=RATE_OUT)
    assert [(s.t0, s.duration) for s in found] == [(T0, 64.0), (T0 + 100, 28.0)]
    for seg in found:
        record = prov.read(seg.path)
        assert record["flags"] == {"H1": ["H1:DMT-ANALYSIS_READY:1"],
                                   "L1": ["L1:DMT-ANALYSIS_READY:1"]}  # fmt: skip
        assert record["vetoes"] == ["H1:DCH-BAD_TIMES:2"]
        assert (record["flag_source"], record["flag_server"]) == ("dqsegdb", dq.url)
        assert "queried_at" not in json.dumps(record)  # no wall-clock value
    # the record travels into what a model records of its data (combined per identity)
    (merged,) = prov.combine(prov.read(s.path) for s in found)
    assert merged["vetoes"] == ["H1:DCH-BAD_TIMES:2"] and merged["flag_server"] == dq.url


def test_a_segment_spanning_a_missing_frame_is_refused_with_its_gps(
    tmp_path, frames, monkeypatch, capsys
):
    server, _ = frames
    monkeypatch.setenv("GWDATAFIND_SERVER", server.url)
    segs = tmp_path / "train.txt"
    segs.write_text(f"0 {T0} {T0 + 64} 64\n1 {T0 + 256} {T0 + 384} 128\n")
    out = tmp_path / "bg"
    with pytest.raises(SystemExit) as exc:
        cli.main(["fetch", "--data_dir", str(out), "--segments", str(segs), "--max_duration",
                  "64", *FETCH])  # fmt: skip
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    # the chunk [T0+256, T0+320) reads 1 s into the missing file: refused, as is [T0+320, ...)
    assert f"GPS [{T0 + 320}, " in err and "missing" in err, err
    refused = json.loads((out / "refused.json").read_text())["refused"]
    assert [r["file"] for r in refused] == [f"background-{T0 + 256}-64.hdf5",
                                            f"background-{T0 + 320}-64.hdf5"]  # fmt: skip
    assert "L1" in refused[1]["reason"]
    # good chunks are kept; nothing was zero-filled; no manifest
    assert sorted(p.name for p in out.glob("background-*")) == [f"background-{T0}-64.hdf5"]
    assert not (out / "fetch.json").exists()
    # --skip_bad: the same, and success
    cli.main(["fetch", "--data_dir", str(out), "--segments", str(segs), "--max_duration", "64",
              "--skip_bad", "true", *FETCH])  # fmt: skip
    manifest = json.loads((out / "fetch.json").read_text())
    assert manifest["files"] == [f"background-{T0}-64.hdf5"] and len(manifest["refused"]) == 2


def test_datafind_down_gives_one_message(tmp_path, capsys, monkeypatch):
    url = free_port_url()
    monkeypatch.setenv("GWDATAFIND_SERVER", url)
    with pytest.raises(SystemExit) as exc:
        cli.main(["fetch", "--data_dir", str(tmp_path / "bg"), "--start", str(T0), "--end",
                  str(T0 + 64), *FETCH])  # fmt: skip
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"{url}: no answer for frame type H1_HOFT_C00" in err, err
    assert "Traceback" not in err and not (tmp_path / "bg").exists()


@pytest.mark.slow  # two aframe-data processes (torch, gwpy imports) and a full fetch: ~40 s
def test_a_killed_fetch_reruns_to_byte_identical_files(tmp_path, frames):
    server, _ = frames
    segs = tmp_path / "train.txt"
    segs.write_text(f"0 {T0} {T0 + 128} 128\n")
    argv = ["--segments", str(segs), "--max_duration", "16", *FETCH]
    fetch_strain(str(tmp_path / "ref"), ["H1", "L1"], RATE_OUT, segments=str(segs),
                 max_duration=16, host=server.url, **FRAMES)  # fmt: skip
    env = dict(os.environ, GWDATAFIND_SERVER=server.url)
    cmd = [sys.executable, "-c", "from aframe_lib.data.cli import main; main()", "fetch",
           "--data_dir", str(tmp_path / "bg"), *argv]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "bg").glob("background-*"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = sorted(p.name for p in (tmp_path / "bg").glob("background-*"))
    assert 2 <= len(partial) < 8, partial  # killed mid-fetch
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "ref").glob("background-*"))
    assert len(names) == 8 and names == sorted(
        p.name for p in (tmp_path / "bg").iterdir() if p.name.startswith("background-")
    )
    for name in names:
        assert (tmp_path / "bg" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    assert not list((tmp_path / "bg").glob(".*tmp"))  # the killed run's temporary is gone


@pytest.mark.slow  # two spawned worker processes (torch, gwpy imports): ~35 s
def test_parallel_jobs_write_the_same_bytes(tmp_path, frames):
    server, _ = frames
    kw = dict(start=T0, end=T0 + 128, max_duration=64, host=server.url, **FRAMES)
    fetch_strain(str(tmp_path / "a"), ["H1", "L1"], RATE_OUT, jobs=1, **kw)
    fetch_strain(str(tmp_path / "b"), ["H1", "L1"], RATE_OUT, jobs=2, **kw)
    for p in sorted((tmp_path / "a").glob("background-*")):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()
    assert len(list((tmp_path / "a").glob("background-*"))) == 2


# ---------------------------------------------------------------- open data


@pytest.fixture
def open_data(tmp_path, monkeypatch):
    server = OpenDataServer(tmp_path / "od", "O3b_4KHZ_R1",
                            {"H1": [(T0, T0 + 128)], "L1": [(T0, T0 + 128)]},
                            {"H1_DATA": [(T0, T0 + 128)], "L1_DATA": [(T0, T0 + 128)]})  # fmt: skip
    monkeypatch.setenv("GWOSC_SERVER_URL", server.url)
    yield server
    server.stop()


def test_open_data_fetch_equals_the_files_resampled(tmp_path, open_data):
    import torch

    open_data.fail_next(1)  # a 500 first: gwosc retries by itself (tenacity)
    fetch_strain(str(tmp_path / "bg"), ["H1", "L1"], RATE_OUT, start=T0, end=T0 + 128,
                 max_duration=100)  # fmt: skip
    found = list_segments(str(tmp_path / "bg"), ["H1", "L1"], sample_rate=RATE_OUT)
    assert [(s.t0, s.duration) for s in found] == [(T0, 64.0), (T0 + 64, 64.0)]
    got = np.concatenate([read_segment(s) for s in found], axis=1)
    x = []
    for t in (T0, T0 + 64):
        with h5py.File(open_data.root / f"H-H1_GWOSC_4KHZ_R1-{t}-64.hdf5") as f:
            x.append(f["strain/Strain"][()])
    want = kaiser_best(2)(torch.from_numpy(np.concatenate(x))[None])[0].numpy()
    np.testing.assert_allclose(got[0], want, rtol=0, atol=2e-7 * np.abs(want).max())
    assert prov.read(found[0].path)["source"] == "gwosc"


def test_open_data_strain_download_retries_a_500_then_fails_with_one_message(tmp_path, open_data):
    """gwpy's fetch_open_data keeps no retry of its own for the strain file: ours retries a
    transient failure of the download, and a server that keeps failing is one message naming
    it (not a refused chunk: the data are not bad), with nothing written."""
    from aframe_lib.data.services import ServiceError

    open_data.fail_next(2, 500, prefix="/archive/")
    fetch_strain(str(tmp_path / "bg"), ["H1"], RATE_OUT, start=T0, end=T0 + 64, max_duration=64)
    (seg,) = list_segments(str(tmp_path / "bg"), ["H1"], sample_rate=RATE_OUT)
    assert (seg.t0, seg.duration) == (T0, 64.0)
    assert sum(r.startswith("/archive/") for r in open_data.requests) == 3
    open_data.fail_next(100, 503, prefix="/archive/")
    with pytest.raises(ServiceError, match=rf"{open_data.url}: no answer for H1 open data .*503"):
        fetch_strain(str(tmp_path / "again"), ["H1"], RATE_OUT, start=T0, end=T0 + 64,
                     max_duration=64)  # fmt: skip
    assert not list((tmp_path / "again").glob("*.hdf5"))
    assert not (tmp_path / "again" / "refused.json").exists()
    open_data.fail_next(0)


def test_single_span_fetch_background_through_open_data(tmp_path, open_data):
    path = str(tmp_path / f"background-{T0 + 8}-16.hdf5")
    fetch_background(path, ["H1", "L1"], T0 + 8, T0 + 24, RATE_OUT)
    (seg,) = list_segments(str(tmp_path), ["H1", "L1"], sample_rate=RATE_OUT)
    assert (seg.t0, seg.duration) == (T0 + 8, 16.0) and prov.read(path)["source"] == "gwosc"
    # the command line of earlier releases (--path FILE --start --end) writes the same file
    again = tmp_path / "cli" / Path(path).name
    cli.main(["fetch", "--path", str(again), "--ifos=[H1,L1]", "--start", str(T0 + 8),
              "--end", str(T0 + 24), "--sample_rate", str(RATE_OUT)])  # fmt: skip
    assert again.read_bytes() == Path(path).read_bytes()
    with pytest.raises(DataError, match="not a whole multiple"):
        fetch_background(str(tmp_path / "x.hdf5"), ["H1"], T0, T0 + 8, 3000)
    with pytest.raises(DataError, match=f"no open data for all of GPS \\[{T0 + 100}"):
        fetch_background(str(tmp_path / "y.hdf5"), ["H1"], T0 + 100, T0 + 200, RATE_OUT)
    assert not (tmp_path / "x.hdf5").exists() and not (tmp_path / "y.hdf5").exists()
