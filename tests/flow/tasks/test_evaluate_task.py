"""``aframe_flow.Evaluate``: its command line and checks, and (via ``law run`` on the tiny config)
data -> train -> evaluate writing a report whose numbers file is written last."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.flow import QUICKSTART, TINY_EVAL, TINY_SEARCH, law_env_for, law_run

from aframe_flow import Evaluate, HeldOutBackground, Train
from aframe_flow.base import digest
from aframe_flow.parameters import ParameterError
from aframe_flow.tasks.data import stream_seed

CONFIG = str(QUICKSTART / "train.yaml")


# seconds of work, not hours: a few timeslides and injections (the PSD policy is the model's)
def test_command_scores_trains_model_on_held_out_background_by_default(tmp_path):
    task = Evaluate(config=CONFIG, data_dir="/d", run_dir="/r", report_dir=str(tmp_path / "e"),
                    livetime=5000.0, num_injections=20, seed=3,
                    eval_args=["--threshold", "2"])  # fmt: skip
    reqs = task.requires()
    assert isinstance(reqs["train"], Train) and reqs["train"].run_dir == "/r"
    # the held-out background: beside (not in) the training data, from another seed stream
    assert isinstance(reqs["data"], HeldOutBackground) and reqs["data"].data_dir == "/d"
    assert reqs["data"].output().path == "/d/heldout/synthetic.json"
    args = reqs["data"].arguments()
    assert (args["seed"], args["background_stream"]) == (3, 3)  # stream 3 of seed 3
    cmd = task.command("/r/model.pt", str(tmp_path / "e"))
    assert cmd[0].endswith("aframe-train") and cmd[1] == "evaluate"
    args = cmd[2:]
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--model"] == "/r/model.pt" and pairs["--out"] == str(tmp_path / "e")
    assert pairs["--data"] == "/d/heldout" and pairs["--livetime"] == "5000"
    assert pairs["--num_injections"] == "20" and pairs["--seed"] == "3"
    assert pairs["--device"] == "cpu" and args[-2:] == ["--threshold", "2"]
    assert task.eval_data_info()["kind"] == "heldout"
    out = task.output()
    assert out["report"].path == str(tmp_path / "e" / "report.md")
    assert out["numbers"].path == str(tmp_path / "e" / "numbers.txt")


def test_held_out_background_at_the_deployment_rate_and_length(tmp_path):
    """--heldout-sample-rate/--heldout-duration: a held-out background at 4x the training rate
    (the search resamples it) in its own directory, keyed in the report location; the old
    location and key stay put when they are not given; bad values fail at construction."""
    common = dict(config=CONFIG, data_dir="/d", run_dir="/r", sample_rate=512.0,
                  segment_duration=1024.0, background_duration=4096.0, seed=3)  # fmt: skip
    task = Evaluate(**common, heldout_sample_rate=2048.0, heldout_duration=259200.0)
    data = task.requires()["data"]
    assert data.output().path == "/d/heldout-2048Hz-259200s/synthetic.json"
    args = data.arguments()
    assert args["sample_rate"] == 2048.0 and args["background_duration"] == 259200.0
    assert args["segment_duration"] == 1024.0 and args["seed"] == 3
    assert args["background_stream"] == 3
    cmd = task.command("/r/model.pt", "/out")
    assert cmd[cmd.index("--data") + 1] == "/d/heldout-2048Hz-259200s"
    info = task.eval_data_info()
    assert info["sample_rate"] == 2048.0 and info["duration"] == 259200.0
    plain = Evaluate(**common)
    assert plain.requires()["data"].arguments()["sample_rate"] == 512.0
    assert plain.data_path == "/d/heldout"
    assert plain.store_parts() != task.store_parts()
    key = digest("heldout", None, None, [])  # the key every existing report has
    assert plain.store_parts()[-2] == f"heldout-{key}"
    for bad, match in (
        (dict(heldout_sample_rate=1000.0), "whole multiple of --sample-rate=512"),
        (dict(heldout_sample_rate=256.0), "only downsamples"),
        (dict(heldout_duration=100.0), "at least --segment-duration=1024"),
    ):
        with pytest.raises(ParameterError, match=match):
            Evaluate(**common, **bad)
    with pytest.raises(ParameterError, match="--eval-data=synthetic does not use"):
        Evaluate(**common, eval_data="synthetic", heldout_duration=8192.0)


def test_a_given_model_and_synthetic_background_need_no_upstream_task(tmp_path):
    model = tmp_path / "m" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(b"")
    task = Evaluate(model=str(model), eval_data="synthetic", gpus="1", seed=5)
    assert task.requires() == {}
    args = task.command(task.model_path(), "/out")
    assert "--data" not in args and args[args.index("--model") + 1] == str(model)
    # evaluate draws its noise and injections from streams 10-12 of the seed, which no
    # training data use
    assert args[args.index("--seed") + 1] == "5"
    assert task.eval_data_info() == {"kind": "synthetic", "seed": 5, "stream": 10,
                                     "training_seed": 5}  # fmt: skip
    assert args[args.index("--device") + 1] == "cuda"
    assert task.sandbox().environment({})["CUDA_VISIBLE_DEVICES"] == "1"
    other = Evaluate(model=str(model), eval_data=str(tmp_path))
    assert list(other.requires()) == [] and other.data_path == str(tmp_path)


def test_each_search_setting_of_the_task_maps_to_an_evaluate_argument(tmp_path):
    """Every SearchSettings field (the device via --gpus) given to the task reaches
    aframe-train evaluate's parser as that value; unknown keys and 'device' fail early."""
    from aframe_lib.search import SearchSettings
    from aframe_lib.search.settings import parse_settings_args
    from aframe_train.evaluate import evaluate

    default = SearchSettings()
    given = {"inference_sampling_rate": 8.0, "batch_size": 7, "integration_length": 0.5,
             "cluster_window": 3.0, "threshold": 1.5, "var": 0.25,
             "chunk_length": 32.0, "backend": "torchscript"}  # fmt: skip
    assert set(given) | {"device"} == set(SearchSettings.names())
    assert all(getattr(default, k) != v for k, v in given.items())
    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    task = Evaluate(model=str(model), eval_data="synthetic", gpus="0", search_settings=given)
    argv = task.command(str(model), "/out")[2:]
    values, settings = parse_settings_args(evaluate, argv, "aframe-train evaluate")
    assert settings == SearchSettings(**given, device="cuda")
    assert values["model"] == str(model) and values["out"] == "/out"
    # no settings: evaluate's defaults, on the CPU; the report key of old runs is unchanged
    plain = Evaluate(model=str(model), eval_data="synthetic")
    argv = plain.command(str(model), "/out")[2:]
    assert parse_settings_args(evaluate, argv, "x")[1] == SearchSettings(device="cpu")
    assert plain.store_parts()[-2] == "synthetic-" + digest("synthetic", None, None, [])
    assert plain.store_parts() != task.store_parts()
    with pytest.raises(ParameterError, match=r"unknown setting\(s\) \['batch'\]"):
        Evaluate(model=str(model), eval_data="synthetic", search_settings={"batch": 1})
    with pytest.raises(ParameterError, match=r"'device' is set by --gpus"):
        Evaluate(model=str(model), eval_data="synthetic", search_settings={"device": "cpu"})


def test_evaluation_seeds_are_disjoint_from_every_training_seed():
    """For every pair of seeds: evaluate's binaries and sky positions (streams 11, 12 of its
    seed) are no training set's waveforms (streams 1, 2, 4 of its seed). Its noise (stream
    10) and the training background (stream 0) are numpy spawn keys that never meet
    (tests/lib/data/test_provenance.py)."""
    for seed in range(200):
        evaluation = {stream_seed(seed, 11), stream_seed(seed, 12)}
        for other in range(200):
            training = {stream_seed(other, k) for k in (1, 2, 4)}
            assert not training & evaluation, (seed, other)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"Evaluate needs a model: give --model"),
        ({"model": "/nowhere/model.pt"}, r"--model=/nowhere/model.pt: no such file"),
        ({"config": CONFIG, "eval_data": "/nowhere"}, r"--eval-data=/nowhere: no such local"),
        ({"config": CONFIG, "data_dir": "/tmp", "eval_data": "/tmp"}, r"is the training back"),
        ({"config": CONFIG, "background": "fetch", "segments": "0-10"}, r"no held-out data for"),
        ({"config": CONFIG, "livetime": 0.0}, r"--livetime=0.0: must be positive"),
        ({"config": "/nowhere.yaml"}, r"--config=/nowhere.yaml: no such file"),
        ({"config": CONFIG, "image": "/nowhere.sif"}, r"--image=/nowhere.sif: no such Apptainer"),
    ],
)
def test_bad_parameters_fail_when_the_task_is_built(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        Evaluate(**kwargs)


@pytest.mark.slow
def test_law_run_evaluate_trains_then_writes_the_report_on_held_out_data(tmp_path):
    env = law_env_for(tmp_path)
    args = ["--livetime", "1500", "--num-injections", "12", "--eval-args", TINY_EVAL,
            "--search-settings", TINY_SEARCH]  # fmt: skip
    proc = law_run(env, "aframe_flow.Evaluate", *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    out = Path(env["AFRAME_BASE_DIR"])
    (data,) = out.glob("data/H1L1-512Hz-synthetic-seed101-*")
    assert len(list(out.glob("run/*/train-*/model.pt"))) == 1  # Train ran first
    # the training output records the code that made it; the report is keyed by it
    (code,) = out.glob("run/*/train-*/code.json")
    code_hash = json.loads(code.read_text())["code_hash"]
    assert re.fullmatch(r"[0-9a-f]{12}", code_hash)
    (report,) = out.glob(f"eval/{data.name}/train-*/heldout-*/code-{code_hash}")
    numbers = dict(re.findall(r"^(\w[\w.]*): (\S+)$", (report / "numbers.txt").read_text(), re.M))
    assert float(numbers["background_livetime_s"]) >= 1500
    assert float(numbers["num_injections"]) > 0
    assert "efficiency_at_far_100000_per_yr" in numbers
    # it scored the held-out background: as long as the training one, other noise
    text = (report / "report.md").read_text()
    assert "# aframe evaluation" in text and str(data / "heldout") in text
    info = json.loads((report / "eval_data.json").read_text())
    assert info["kind"] == "heldout" and info["path"] == str(data / "heldout")
    train_files = sorted(data.glob("background-*.hdf5"))
    heldout_files = sorted((data / "heldout").glob("background-*.hdf5"))
    assert [p.name for p in heldout_files] == [p.name for p in train_files]
    pairs = zip(train_files, heldout_files, strict=True)
    assert all(a.read_bytes() != b.read_bytes() for a, b in pairs)
    for name in ("efficiency.png", "roc.png", "background_events.hdf5"):
        assert (report / name).exists(), name
    # the numbers file is the marker: written after everything else
    assert (report / "numbers.txt").stat().st_mtime_ns >= max(
        p.stat().st_mtime_ns for p in report.rglob("*") if p.is_file()
    )
    again = law_run(env, "aframe_flow.Evaluate", *args)
    assert again.returncode == 0 and " ran successfully" not in again.stdout + again.stderr


def test_reports_are_keyed_by_the_code_that_made_them(tmp_path):
    """Item 6 of issue 21: a report made by other code is not complete (its location holds the
    hash of the sources that run); --code-hash reuses an older one."""
    from aframe_flow import code

    root = tmp_path / "tree"
    for module in ("aframe-lib/aframe_lib", "aframe-train/aframe_train"):
        (root / "packages" / module).mkdir(parents=True)
        (root / "packages" / module / "__init__.py").write_text("x = 1\n")
    image = tmp_path / "train.sif"
    image.write_bytes(b"image")
    before = code.source_digest(image, dev=True, root=root)
    (root / "packages/aframe-lib/aframe_lib/__init__.py").write_text("x = 2\n")  # uncommitted
    code._tree_digest.cache_clear()
    assert code.source_digest(image, dev=True, root=root) != before
    assert code.source_digest(image) != code.source_digest(image, dev=True, root=root)

    model = tmp_path / "m" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(b"")
    task = Evaluate(model=str(model), eval_data="synthetic")
    assert task.store_parts()[-1] == f"code-{code.source_digest()}"
    reuse = Evaluate(model=str(model), eval_data="synthetic", code_hash="0123456789ab")
    assert reuse.store_parts()[:-1] == task.store_parts()[:-1]
    assert reuse.store_parts()[-1] == "code-0123456789ab"


def test_evaluate_own_noise_gets_the_data_noise_model(tmp_path):
    """Issue #25: with --noise, the held-out noise and evaluate's own noise are glitchy alike."""
    from aframe_lib.search.settings import parse_settings_args
    from aframe_train.evaluate import evaluate

    noise = {"glitch_rates": {"H1": 0.3, "L1": 1.1}}
    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    task = Evaluate(model=str(model), eval_data="synthetic", noise=noise)
    argv = task.command(str(model), "/out")[2:]
    values, _ = parse_settings_args(evaluate, argv, "aframe-train evaluate")
    assert dict(values["noise"])["glitch_rates"] == noise["glitch_rates"]
    held = Evaluate(config=CONFIG, data_dir="/d", run_dir="/r", noise=noise)
    assert "--noise" not in held.command("/r/model.pt", "/out")  # its --data has the noise
    assert held.requires()["data"].arguments()["noise"] == noise
