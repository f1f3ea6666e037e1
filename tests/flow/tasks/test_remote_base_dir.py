"""The documented cluster pipeline's storage: ``AFRAME_BASE_DIR=s3://...``. Every output of
``TunePipeline`` (data, held-out background, search, export, evaluation report) lands on S3 (a
real moto server, reached by s3fs), the held-out background included: written there by
HeldOutBackground, fetched back for ``aframe-train evaluate``, which reads local strain."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.fixtures_ray import RAY_ENV
from helpers.flow import QUICKSTART, TINY_EVAL, TINY_SEARCH, law_env_for, law_run

from aframe_flow import Evaluate, HeldOutBackground, TunePipeline
from aframe_flow.targets import get_directory, write_bytes_atomic

CONFIG = str(QUICKSTART / "train.yaml")
TUNE_CONFIG = str(QUICKSTART / "tune.yaml")


def test_a_remote_base_dir_puts_the_held_out_background_there_too():
    """It was refused ("the held-out background would be written under s3://..., which is
    remote"), so the README's own Kubernetes example could not run TunePipeline."""
    task = Evaluate(config=CONFIG, data_dir="s3://bucket/aframe/data/d")
    heldout = HeldOutBackground.req(task)
    assert task.data_path == heldout.heldout_root == "s3://bucket/aframe/data/d/heldout"
    assert heldout.output().path == "s3://bucket/aframe/data/d/heldout/synthetic.json"
    assert heldout.arguments()["data_dir"] == "s3://bucket/aframe/data/d/heldout"
    # the command searches the local copy that run() fetches
    argv = task.command("/m/model.pt", "/out", data="/tmp/x/data")
    assert argv[argv.index("--data") + 1] == "/tmp/x/data"
    pipeline = TunePipeline(config=CONFIG, tune_config=TUNE_CONFIG, data_dir="s3://b/d",
                            storage_dir="s3://b/tune", kubernetes=True)  # fmt: skip
    assert pipeline.requires()["evaluate"].data_path == "s3://b/d/heldout"


@pytest.mark.s3
def test_a_remote_directory_is_fetched_file_by_file_with_its_layout(s3_bucket, tmp_path):
    src = f"{s3_bucket}/data/heldout"
    files = {"background-0-256.hdf5": b"a" * 1000, "psd.hdf5": b"p", "synthetic.json": b"{}",
             "sub/x.txt": b"x"}  # fmt: skip
    for name, data in files.items():
        write_bytes_atomic(f"{src}/{name}", data)
    write_bytes_atomic(f"{s3_bucket}/data/heldout-2048Hz-512s/other.hdf5", b"no")  # a sibling
    assert get_directory(src + "/", tmp_path / "copy") == 4
    got = {p.relative_to(tmp_path / "copy").as_posix(): p.read_bytes()
           for p in (tmp_path / "copy").rglob("*") if p.is_file()}  # fmt: skip
    assert got == files
    with pytest.raises(FileNotFoundError, match="no such directory"):
        get_directory(f"{s3_bucket}/nowhere", tmp_path / "none")


@pytest.mark.slow
@pytest.mark.s3
def test_tune_pipeline_with_an_s3_base_dir_runs_end_to_end(tmp_path, s3_bucket, ray_temp_dir):
    """data -> a 1-trial search (local Ray: no Kubernetes here) -> export + evaluation on the
    held-out background, every output below AFRAME_BASE_DIR=s3://bucket/aframe."""
    import h5py
    import s3fs

    base = f"{s3_bucket}/aframe"
    env = {**law_env_for(tmp_path), **RAY_ENV, "AFRAME_BASE_DIR": base}
    tune_args = json.dumps(["--tune.max_epochs=1", "--tune.grace_period=1",
                            "--tune.num_cpus=2", f"--tune.temp_dir={ray_temp_dir}"])  # fmt: skip
    args = ["--tune-config", TUNE_CONFIG, "--name", "tiny", "--num-samples", "1",
            "--tune-args", tune_args,
            "--livetime", "1500", "--num-injections", "12", "--eval-args", TINY_EVAL,
            "--search-settings", TINY_SEARCH]  # fmt: skip
    proc = law_run(env, "aframe_flow.TunePipeline", *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    root = base[len("s3://") :]
    (data,) = fs.glob(f"{root}/data/H1L1-512Hz-synthetic-seed101-*")
    # the held-out background was written to S3 by HeldOutBackground ...
    heldout = sorted(fs.glob(f"{data}/heldout/background-*.hdf5"))
    assert heldout and fs.exists(f"{data}/heldout/synthetic.json")
    # ... and what evaluate searched is exactly that: fetched back, file for file
    assert (
        f"Evaluate: fetched {len(fs.find(f'{data}/heldout'))} file(s) of s3://{data}/heldout" in log
    )
    with fs.open(heldout[0], "rb") as f, h5py.File(f, "r") as h5:
        assert set(h5) >= {"H1", "L1"} and h5["H1"].shape[0] > 0
    (search,) = fs.glob(f"{root}/tune/*/train-*/tiny")
    summary = json.loads(fs.cat(f"{search}/summary.json"))
    assert [t["status"] for t in summary["trials"]] == ["completed"]
    data_key, tune_key = search.split("/")[-3:-1]
    export = f"{root}/export/{data_key}/{tune_key}/tiny/aframe"
    assert fs.cat(f"{export}/1/model.pt") == fs.cat(f"{search}/model.pt")
    # keyed by the code that made it too (Evaluate's code-<hash> level)
    (report,) = fs.glob(f"{root}/eval/{data_key}/{tune_key}-tiny/heldout-*/code-*")
    info = json.loads(fs.cat(f"{report}/eval_data.json"))
    assert info["kind"] == "heldout" and info["path"] == f"s3://{data}/heldout"
    numbers = fs.cat(f"{report}/numbers.txt").decode()
    assert "efficiency_at_far_100000_per_yr" in numbers and fs.exists(f"{report}/report.md")
    # nothing went to the local disk's default base directory
    assert not Path(tmp_path / "out").exists() and not Path("aframe-runs").exists()
    # a finished pipeline is not run again
    again = law_run(env, "aframe_flow.TunePipeline", *args)
    assert again.returncode == 0 and " ran successfully" not in again.stdout + again.stderr
