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
from flow_helpers import LAW, QUICKSTART, law_env_for, law_run


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
    assert {"waveforms.hdf5", "val_waveforms.hdf5", "background.json"} <= {
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
    code = f"import aframe_flow; print(aframe_flow.{task}({params}).complete())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1] == "True"


def test_changed_parameters_are_not_complete_unchanged_ones_are(pipeline):
    """After the pipeline ran, the same parameters find its outputs; other ones (the issue's
    `Train --seed 7 --sample-rate 256 --ifos H1,V1`) do not, under law too."""
    env, out, _ = pipeline
    for task in ("Data", "Train", "Export", "Pipeline"):
        assert _complete(env, task), task
    changed = [
        "seed=7, sample_rate=256.0, ifos='H1,V1'", "seed=7", "sample_rate=256.0", "ifos='H1,V1'",
        "num_waveforms=65", "train_args=['--trainer.max_epochs=2']",
    ]  # fmt: skip
    for params in changed:
        for task in ("Train", "Export"):
            assert not _complete(env, task, params), (task, params)
    assert _complete(env, "Data", "train_args=['--trainer.max_epochs=2']")
    assert not _complete(env, "Data", "seed=7")
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
        while not list((out / "run").glob("*/*/logs/version_*/checkpoints")):
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


def test_law_index_from_the_shipped_config_finds_the_tasks(tmp_path):
    """A fresh install: LAW_CONFIG_FILE -> the law.cfg in the package; `law index`; `law run`."""
    shipped = subprocess.run([sys.executable, "-m", "aframe_flow"], capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
    assert Path(shipped).read_text() and "aframe_flow.tasks.train" in Path(shipped).read_text()
    env = {**law_env_for(tmp_path), "LAW_CONFIG_FILE": shipped}
    index = subprocess.run([LAW, "index", "--verbose"], env=env, capture_output=True, text=True)
    assert index.returncode == 0, index.stderr
    text = (tmp_path / "law-home" / "index").read_text()
    for task in ("Train", "Export", "Pipeline", "SyntheticBackground", "FetchBackground"):
        assert f":{task}:" in text
    assert "AframeTask" not in text and "SandboxTask" not in text  # framework bases are hidden
    for family in ("Train", "aframe_flow.Train"):
        help_ = law_run(env, family, "--help", timeout=120)
        assert (
            help_.returncode == 0 and "--gpus" in help_.stdout and "--wandb-group" in help_.stdout
        )
    assert (QUICKSTART / "law.cfg").read_text().split("[modules]")[1] == Path(
        shipped
    ).read_text().split("[modules]")[1]
