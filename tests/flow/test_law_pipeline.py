"""The synthetic pipeline through `law run` with the local scheduler, on a tiny config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.flow import LAW, QUICKSTART, law_env_for, law_run


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One full run of aframe_flow.Pipeline (data -> train -> export); then its outputs."""
    tmp = tmp_path_factory.mktemp("pipeline")
    env = law_env_for(tmp)
    start = time.monotonic()
    proc = law_run(env, "aframe_flow.Pipeline")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return env, Path(env["AFRAME_BASE_DIR"]), time.monotonic() - start


def keyed(out: Path, pattern: str) -> Path:
    (path,) = out.glob(pattern)
    return path


def test_pipeline_writes_data_run_and_a_deployable_model(pipeline):
    _, out, _ = pipeline
    # every output location is keyed by the parameters that made it
    data = keyed(out, "data/H1L1-512Hz-synthetic-seed101-*")
    assert len(list(data.glob("background-*.hdf5"))) == 3  # 768 s in 256 s files
    assert {"waveforms.hdf5", "val_waveforms.hdf5", "synthetic.json"} <= {
        p.name for p in data.iterdir()
    }
    run = keyed(out, f"run/{data.name}/train-*")
    assert (run / "model.pt").exists()
    config = (next((run / "logs").glob("version_*")) / "config.yaml").read_text()
    assert str(data) in config and "synthetic: null" in config
    model = out / "export" / data.name / run.name / "aframe"
    info = json.loads((model / "model.json").read_text())
    assert info["input_shape"] == [None, 2, 512]
    assert (model / "1" / "model.pt").read_bytes() == (run / "model.pt").read_bytes()
    pbtxt = (model / "config.pbtxt").read_text()
    assert 'platform: "pytorch_libtorch"' in pbtxt and "dims: [ -1, 2, 512 ]" in pbtxt
    # the exported model runs on its own
    import torch

    scripted = torch.jit.load(str(model / "1" / "model.pt"))
    assert scripted(torch.randn(2, 2, 512)).shape == (2, 1)


def test_rerunning_a_finished_pipeline_does_nothing(pipeline):
    env, out, first = pipeline
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    start = time.monotonic()
    proc = law_run(env, "aframe_flow.Pipeline")
    took = time.monotonic() - start
    assert proc.returncode == 0
    log = proc.stdout + proc.stderr
    assert "complete ones were encountered" in log and " ran successfully" not in log
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files
    assert took < first


def _complete(env: dict, task: str, params: str = "") -> bool:
    return _completes(env, [(task, params)])[0]


def _completes(env: dict, calls: list[tuple[str, str]]) -> list[bool]:
    """``Task(params).complete()`` of each (task, params), in one process."""
    code = "import aframe_flow as af\n" + "".join(
        f"print(af.{task}({params}).complete())\n" for task, params in calls
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return [line == "True" for line in out.stdout.strip().splitlines()[-len(calls) :]]


def test_changed_parameters_are_not_complete_unchanged_ones_are(pipeline):
    """After the pipeline ran, the same parameters find its outputs; other ones (the issue's
    `Train --seed 7 --sample-rate 256 --ifos H1,V1`) do not, under law too."""
    env, out, _ = pipeline
    same = [(t, "") for t in ("Data", "Train", "Export", "Pipeline")]
    same.append(("Data", "data_image=''"))  # where it runs is not what it makes
    changed = [
        "seed=7, sample_rate=256.0, ifos='H1,V1'", "seed=7", "sample_rate=256.0", "ifos='H1,V1'",
        "num_waveforms=65", "train_args=['--trainer.max_epochs=2']",
    ]  # fmt: skip
    other = [(t, p) for p in changed for t in ("Train", "Export")] + [("Data", "seed=7")]
    result = _completes(env, same + other)
    assert result[: len(same)] == [True] * len(same)
    assert result[len(same) :] == [False] * len(other)
    # what law itself reports: the new task is not complete, its outputs are elsewhere
    proc = law_run(env, "aframe_flow.Train", "--seed", "7", "--sample-rate", "256", "--ifos",
                   "H1,V1", "--print-status", "0", timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "H1V1-256Hz-synthetic-seed7-" in proc.stdout and "absent" in proc.stdout
    same = law_run(env, "aframe_flow.Train", "--print-status", "0", timeout=120)
    assert "H1L1-512Hz-synthetic-seed101-" in same.stdout and "absent" not in same.stdout


def test_a_task_killed_mid_run_leaves_nothing_that_counts_as_complete(tmp_path):
    env = law_env_for(tmp_path)
    out = Path(env["AFRAME_BASE_DIR"])
    proc = subprocess.Popen([LAW, "run", "aframe_flow.Train"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        # kill once training has started writing its run directory
        while not list((out / "run").glob("*/*/checkpoints")):
            assert proc.poll() is None, "law run ended before training started"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not list(out.glob("run/*/*/model.pt")) and not list(out.glob("run/*/*/model.json"))
    assert not _complete(env, "Train")
    assert _complete(env, "Data")  # finished upstream outputs stay valid
    # a data file killed mid-write: only a hidden temporary file, which no target counts
    (data,) = out.glob("data/*")
    (data / "waveforms.hdf5").unlink()
    (data / ".waveforms.hdf5.abc.tmp").write_bytes(b"partial")
    assert not _complete(env, "TrainingWaveforms")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ifos", "H1,X1"], "--ifos=H1,X1: unknown or repeated interferometer"),
        (["--gpus", "0,a"], "--gpus='0,a': expected comma-separated GPU indices"),
        (["--image", "/nowhere/train.sif"], "--image=/nowhere/train.sif: no such Apptainer"),
    ],
)
def test_bad_parameters_fail_clearly_before_anything_runs(tmp_path, args, message):
    env = law_env_for(tmp_path)
    proc = law_run(env, "aframe_flow.Pipeline", *args, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not Path(env["AFRAME_BASE_DIR"]).exists()


def test_law_index_finds_the_tasks_after_the_documented_steps(tmp_path):
    """The README's steps on a fresh install: `python -m aframe_flow init` writes ./law.cfg, then
    `law index` and `law run` work from that directory with no LAW_CONFIG_FILE; or
    LAW_CONFIG_FILE=$(python -m aframe_flow) from anywhere."""
    project = tmp_path / "project"
    env = {k: v for k, v in law_env_for(tmp_path).items() if k != "LAW_CONFIG_FILE"}
    init = subprocess.run([sys.executable, "-m", "aframe_flow", "init", str(project)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert init.returncode == 0, init.stderr
    shipped = subprocess.run([sys.executable, "-m", "aframe_flow"], capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
    assert (project / "law.cfg").read_text() == Path(shipped).read_text()
    index = subprocess.run([LAW, "index", "--verbose"], env=env, cwd=project, capture_output=True,
                           text=True)  # fmt: skip
    assert index.returncode == 0, index.stderr
    text = (tmp_path / "law-home" / "index").read_text()
    for task in ("Train", "Export", "Pipeline", "SyntheticBackground", "FetchBackground",
                 "Tune", "TunePipeline", "Evaluate", "ExportTuned", "EvaluateTuned"):  # fmt: skip
        assert f":{task}:" in text, task
    assert "AframeTask" not in text and "SandboxTask" not in text  # framework bases are hidden
    for family in ("Train", "aframe_flow.TunePipeline"):
        help_ = subprocess.run([LAW, "run", family, "--help"], env=env, cwd=project,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert help_.returncode == 0, help_.stderr[-2000:]
        assert "--gpus" in help_.stdout and "--wandb-group" in help_.stdout
    # without the init step law finds no config here, and so no task
    (tmp_path / "law-home" / "index").unlink()
    bare = subprocess.run([LAW, "index"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert bare.returncode == 0 and ":Train:" not in (tmp_path / "law-home" / "index").read_text()
    # the other documented way: LAW_CONFIG_FILE=$(python -m aframe_flow)
    index = subprocess.run([LAW, "index"], env={**env, "LAW_CONFIG_FILE": shipped}, cwd=tmp_path,
                           capture_output=True, text=True)  # fmt: skip
    assert index.returncode == 0 and ":Train:" in (tmp_path / "law-home" / "index").read_text()
    assert (QUICKSTART / "law.cfg").read_text().split("[modules]")[1] == Path(
        shipped
    ).read_text().split("[modules]")[1]
