"""``Segments -> FetchBackground -> Data`` for real strain: the tasks run the ``aframe-data``
command in child processes (as in production), which reach the stand-in services on 127.0.0.1
through the clients' own settings (``DEFAULT_SEGMENT_SERVER``, ``GWDATAFIND_SERVER``), inherited
from this process: the real gwdatafind-server over GWF frames written here, and a DQSegDB
stand-in (``helpers.gwdata_servers``)."""

from __future__ import annotations

import json

import luigi
import pytest

pytest.importorskip("lalframe")
pytest.importorskip("gwdatafind_server")

from helpers.gwdata_servers import (  # noqa: E402
    DatafindServer,
    SegmentServer,
    write_ffl,
    write_frames,
)

from aframe_flow import Data, Evaluate, FetchBackground, Segments, Train  # noqa: E402
from aframe_flow.parameters import ParameterError  # noqa: E402
from aframe_flow.tasks.data import FetchTestBackground  # noqa: E402
from aframe_lib.data import provenance as prov  # noqa: E402
from aframe_lib.data.background import list_segments  # noqa: E402
from aframe_lib.data.segments import read_segments  # noqa: E402

T0 = 1_000_000_000.0
RATE_OUT = 2048.0
FLAGS = {"H1:DMT-ANALYSIS_READY:1": [(T0, T0 + 100)],
         "L1:DMT-ANALYSIS_READY:1": [(T0 + 20, T0 + 128)]}  # fmt: skip
FRAMES = dict(frametypes="H1_HOFT_C00,L1_HOFT_C00",
              channels="H1:GDS-CALIB_STRAIN,L1:GDS-CALIB_STRAIN")  # fmt: skip


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    files = []
    for ifo in ("H1", "L1"):
        files += write_frames(
            root, ifo, f"{ifo}:GDS-CALIB_STRAIN", "HOFT_C00", [(T0, T0 + 128)], 64
        )
    write_ffl(root / "frames.ffl", files)
    datafind = DatafindServer(root, tmp_path_factory.mktemp("datafind"))
    segments = SegmentServer(FLAGS)
    yield datafind, segments
    datafind.stop()
    segments.stop()


@pytest.fixture
def env(services, monkeypatch):
    datafind, segments = services
    monkeypatch.setenv("GWDATAFIND_SERVER", datafind.url)
    monkeypatch.setenv("DEFAULT_SEGMENT_SERVER", segments.url)
    monkeypatch.setenv("AFRAME_SERVICE_DELAY", "0.01")
    return services


def run(task) -> None:
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")


def test_the_fetched_background_is_segments_then_fetch_then_data(tmp_path):
    params = dict(data_dir=str(tmp_path), background="fetch", train_start=T0,
                  train_stop=T0 + 96, test_stop=T0 + 128, **FRAMES)  # fmt: skip
    data = Data(**params).requires()
    fetch = data["background"]
    assert isinstance(fetch, FetchBackground) and isinstance(fetch.requires(), Segments)
    args = fetch.requires().arguments()
    assert (args["start"], args["end"], args["train_stop"]) == (T0, T0 + 128, T0 + 96)
    train = Train(config="projects/quickstart/train.yaml", **params)
    assert isinstance(train.requires(), Data)
    assert train.requires().requires()["background"].task_id == fetch.task_id
    # the query parameters key the data; the jobs do not
    other = Data(**{**params, "train_stop": T0 + 80}).requires()["background"]
    assert other.data_key != fetch.data_key
    assert FetchBackground(**params, fetch_jobs=4).data_key == fetch.data_key
    for bad, match in [
        (dict(segments="1-2"), "not both"),
        (dict(train_stop=T0 - 1), "train-start < train-stop"),
        (dict(frametypes="H1_HOFT_C00"), "--frametypes=H1_HOFT_C00: give one per IFO"),
    ]:  # fmt: skip
        with pytest.raises(ParameterError, match=match):
            Data(**{**params, **bad})


def test_evaluation_of_a_fetched_background_searches_the_test_period(tmp_path):
    params = dict(config="projects/quickstart/train.yaml", data_dir=str(tmp_path / "d"),
                  report_dir=str(tmp_path / "e"), background="fetch", train_start=T0,
                  train_stop=T0 + 96, test_stop=T0 + 128, **FRAMES)  # fmt: skip
    task = Evaluate(**params)
    test = task.requires()["data"]
    assert isinstance(test, FetchTestBackground)
    assert task.data_path == test.test_root == str(tmp_path / "d" / "test")
    args = test.arguments()
    assert args["segments"] == str(tmp_path / "d" / "segments" / "test.txt")
    assert args["data_dir"] == test.test_root and args["frametypes"] == [
        "H1_HOFT_C00",
        "L1_HOFT_C00",
    ]
    assert task.eval_data_info()["gps"] == [T0 + 96, T0 + 128]
    # the training background is the data directory itself, never the test period's
    assert task.requires()["train"].requires().requires()["background"].data_root == str(
        tmp_path / "d"
    )
    no_test = {k: v for k, v in params.items() if k != "test_stop"}
    with pytest.raises(ParameterError, match="no held-out data for --background=fetch"):
        Evaluate(**no_test)


def test_queried_segments_are_fetched_from_frames_chunk_by_chunk(tmp_path, env):
    datafind, segments = env
    task = FetchBackground(data_dir=str(tmp_path), background="fetch", ifos="H1,L1",
                           sample_rate=RATE_OUT, train_start=T0, train_stop=T0 + 96,
                           test_stop=T0 + 128, max_duration=64, **FRAMES)  # fmt: skip
    run(task)
    # H1 and L1 are ready together in [T0+20, T0+100): train [T0+20, T0+96), test the rest
    assert read_segments(tmp_path / "segments" / "train.txt") == [(T0 + 20.0, T0 + 96.0)]
    assert read_segments(tmp_path / "segments" / "test.txt") == [(T0 + 96.0, T0 + 100.0)]
    found = list_segments(str(tmp_path), ["H1", "L1"], sample_rate=RATE_OUT)
    # chunks end on the frame files' edge at T0+64
    assert [(s.t0, s.duration) for s in found] == [(T0 + 20, 44.0), (T0 + 64, 32.0)]
    record = prov.read(found[0].path)
    assert record["flags"] == {"H1": ["H1:DMT-ANALYSIS_READY:1"],
                               "L1": ["L1:DMT-ANALYSIS_READY:1"]}  # fmt: skip
    assert record["frametypes"]["H1"] == "H1_HOFT_C00"
    assert json.loads((tmp_path / "fetch.json").read_text())["files"] == [
        f"background-{T0 + 20:.0f}-44.hdf5", f"background-{T0 + 64:.0f}-32.hdf5"]  # fmt: skip
    # complete: a second run asks no service anything
    seen = len(datafind.requests), len(segments.requests)
    run(task)
    assert (len(datafind.requests), len(segments.requests)) == seen


def test_given_segments_need_no_query(tmp_path, env):
    datafind, segments = env
    before = len(segments.requests)
    given = f"{T0 + 8:.0f}-{T0 + 40:.0f}"
    task = FetchBackground(data_dir=str(tmp_path), background="fetch", ifos="H1,L1",
                           sample_rate=RATE_OUT, segments=given, **FRAMES)  # fmt: skip
    run(task)
    assert len(segments.requests) == before
    (seg,) = list_segments(str(tmp_path), ["H1", "L1"], sample_rate=RATE_OUT)
    assert (seg.t0, seg.duration) == (T0 + 8, 32.0)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_law_evaluate_trains_on_fetched_strain_and_scores_the_test_period(tmp_path):
    """End to end through ``law run``: DQSegDB stand-in segments -> frames from the real
    gwdatafind-server -> Data -> Train (a tiny fit) -> Evaluate on the test period's
    fetched strain, every step a child process reaching the stand-ins through the clients' own
    settings."""
    import re
    from pathlib import Path

    from helpers.flow import TINY_EVAL, TINY_SEARCH, law_env_for, law_run

    frames = tmp_path / "frames"
    frames.mkdir()
    end = T0 + 640
    files = []
    for ifo in ("H1", "L1"):
        files += write_frames(frames, ifo, f"{ifo}:GDS-CALIB_STRAIN", "HOFT_C00", [(T0, end)],
                              256, sample_rate=2048.0)  # fmt: skip
    write_ffl(frames / "frames.ffl", files)
    flags = {"H1:DMT-ANALYSIS_READY:1": [(T0, end)], "L1:DMT-ANALYSIS_READY:1": [(T0, end)]}
    (tmp_path / "datafind").mkdir()
    datafind = DatafindServer(frames, tmp_path / "datafind")
    segments = SegmentServer(flags)
    try:
        env = {**law_env_for(tmp_path), "GWDATAFIND_SERVER": datafind.url,
               "DEFAULT_SEGMENT_SERVER": segments.url, "AFRAME_SERVICE_DELAY": "0.01"}  # fmt: skip
        args = ["--background", "fetch", "--train-start", f"{T0:.0f}",
                "--train-stop", f"{T0 + 512:.0f}", "--test-stop", f"{end:.0f}",
                "--max-duration", "64",  # whole files for training's own splits
                "--frametypes", FRAMES["frametypes"], "--channels", FRAMES["channels"],
                "--livetime", "1500", "--num-injections", "8", "--eval-args", TINY_EVAL,
                "--search-settings", TINY_SEARCH]  # fmt: skip
        proc = law_run(env, "aframe_flow.Evaluate", *args, timeout=1200)
    finally:
        datafind.stop()
        segments.stop()
    log = proc.stdout + proc.stderr
    errors = [line for line in log.splitlines() if "error" in line.lower()]
    assert proc.returncode == 0, "\n".join(errors)[:6000] + "\n" + log[-3000:]
    out = Path(env["AFRAME_BASE_DIR"])
    (model,) = out.glob("run/*/train-*/model.json")
    info = json.loads(model.read_text())
    train = info["provenance"]["train"]
    assert {r["source"] for r in train} == {"frames"}
    assert max(s[1] for r in train for s in r["spans"]["H1"]) <= T0 + 512
    (numbers,) = out.glob("eval/**/numbers.txt")
    values = dict(re.findall(r"^(\w[\w.]*): (\S+)$", numbers.read_text(), re.M))
    assert float(values["background_livetime_s"]) >= 1500
    assert float(values["num_injections"]) > 0
    # evaluated on the test period's fetched strain, never the training period's
    evaluated = json.loads((numbers.parent / "eval_data.json").read_text())
    test_files = list(Path(evaluated["path"]).glob("background-*.hdf5"))
    assert test_files and all(float(p.name.split("-")[1]) >= T0 + 512 for p in test_files), (
        evaluated
    )
