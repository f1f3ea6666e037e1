"""``aframe_flow.Evaluate``: its command line and checks, and (via ``law run`` on the tiny config)
data -> train -> evaluate writing a report whose numbers file is written last."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flow_helpers import QUICKSTART, law_env_for, law_run

from aframe_flow import Evaluate, Train
from aframe_flow.parameters import ParameterError

CONFIG = str(QUICKSTART / "train.yaml")
# seconds of work, not hours: a few timeslides and injections (the PSD policy is the model's)
TINY_EVAL = json.dumps([
    "--injection_spacing", "10", "--cluster_window", "4",
    "--waveform_duration", "4", "--coalescence_time", "3", "--fars_per_year", "[1e3, 1e5]",
])  # fmt: skip


def test_command_from_trains_model_on_the_data_tasks_background(tmp_path):
    task = Evaluate(config=CONFIG, data_dir="/d", run_dir="/r", report_dir=str(tmp_path / "e"),
                    livetime=5000.0, num_injections=20, seed=3,
                    eval_args=["--threshold", "2"])  # fmt: skip
    reqs = task.requires()
    assert isinstance(reqs["train"], Train) and reqs["train"].run_dir == "/r"
    assert reqs["data"].data_dir == "/d"
    cmd = task.command("/r/model.pt", str(tmp_path / "e"))
    assert cmd[0].endswith("aframe-train") and cmd[1] == "evaluate"
    args = cmd[2:]
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--model"] == "/r/model.pt" and pairs["--out"] == str(tmp_path / "e")
    assert pairs["--data"] == "/d" and pairs["--livetime"] == "5000"
    assert pairs["--num_injections"] == "20" and pairs["--seed"] == "3"
    assert pairs["--device"] == "cpu" and args[-2:] == ["--threshold", "2"]
    out = task.output()
    assert out["report"].path == str(tmp_path / "e" / "report.md")
    assert out["numbers"].path == str(tmp_path / "e" / "numbers.txt")


def test_a_given_model_and_synthetic_background_need_no_upstream_task(tmp_path):
    model = tmp_path / "m" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(b"")
    task = Evaluate(model=str(model), eval_data="synthetic", gpus="1")
    assert task.requires() == {}
    args = task.command(task.model_path(), "/out")
    assert "--data" not in args and args[args.index("--model") + 1] == str(model)
    assert args[args.index("--device") + 1] == "cuda"
    assert task.sandbox().environment({})["CUDA_VISIBLE_DEVICES"] == "1"
    other = Evaluate(model=str(model), eval_data=str(tmp_path))
    assert list(other.requires()) == [] and other.data_path == str(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"Evaluate needs a model: give --model"),
        ({"model": "/nowhere/model.pt"}, r"--model=/nowhere/model.pt: no such file"),
        ({"config": CONFIG, "eval_data": "/nowhere"}, r"--eval-data=/nowhere: no such local"),
        ({"config": CONFIG, "data_dir": "s3://b/d"}, r"s3://b/d, is remote; aframe-train"),
        ({"config": CONFIG, "livetime": 0.0}, r"--livetime=0.0: must be positive"),
        ({"config": "/nowhere.yaml"}, r"--config=/nowhere.yaml: no such training config"),
        ({"config": CONFIG, "image": "/nowhere.sif"}, r"--image=/nowhere.sif: no such Apptainer"),
    ],
)
def test_bad_parameters_fail_when_the_task_is_built(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        Evaluate(**kwargs)


@pytest.mark.slow
def test_law_run_evaluate_trains_then_writes_the_report(tmp_path):
    env = law_env_for(tmp_path)
    args = ["--livetime", "1500", "--num-injections", "12", "--eval-args", TINY_EVAL]
    proc = law_run(env, "aframe_flow.Evaluate", *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    out = Path(env["AFRAME_BASE_DIR"])
    assert (out / "run" / "model.pt").exists()  # Train ran first
    report = out / "eval"
    numbers = dict(re.findall(r"^(\w[\w.]*): (\S+)$", (report / "numbers.txt").read_text(), re.M))
    assert float(numbers["background_livetime_s"]) >= 1500
    assert float(numbers["num_injections"]) > 0
    assert "efficiency_at_far_100000_per_yr" in numbers
    text = (report / "report.md").read_text()
    assert "# aframe evaluation" in text and str(out / "data") in text
    for name in ("efficiency.png", "roc.png", "background_events.hdf5"):
        assert (report / name).exists(), name
    # the numbers file is the marker: written after everything else
    assert (report / "numbers.txt").stat().st_mtime_ns >= max(
        p.stat().st_mtime_ns for p in report.rglob("*") if p.is_file()
    )
    again = law_run(env, "aframe_flow.Evaluate", *args)
    assert again.returncode == 0 and " ran successfully" not in again.stdout + again.stderr
