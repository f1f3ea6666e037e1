"""Every console script on a table of bad inputs, as a real subprocess: one message, no traceback.

Each case asserts the exit status (2: bad input), that stderr holds no "Traceback", and that the
message names the file or field (and the words that say why). The cases of the default suite
run side by side in a thread pool (each is its own process), so the file stays fast; the rest
of the data-contract rules (also tested in-process in tests/lib/data) are in the slow session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.console import aframe_train
from helpers.tiny_data import SAMPLE_RATE

SYNTHETIC = str(Path(sys.executable).parent / "aframe-synthetic")
SMALL = ["--duration", "64", "--segment-duration", "32", "--num-waveforms", "2",
         "--num-val-waveforms", "2", "--sample-rate", "256", "--waveform-duration", "4",
         "--coalescence-time", "3"]  # fmt: skip

CONFIG = """\
trainer:
  max_epochs: 1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  limit_train_batches: 1
  limit_val_batches: 1
model:
  class_path: aframe_train.models.SupervisedAframe
  init_args:
    arch:
      class_path: aframe_train.architectures.SupervisedTimeDomainResNet
      init_args: {{layers: [1, 1], norm_groups: 8}}
    metric:
      class_path: aframe_lib.metrics.TimeSlideAUROC
      init_args: {{max_fpr: 0.01}}
data:
  class_path: aframe_lib.data.AframeDataset
  init_args:
    data_dir: {data_dir}
    ifos: [H1, L1]
    sample_rate: {rate}
    kernel_length: 1.0
    fduration: 1.0
    psd_length: 4.0
    highpass: 32
    batch_size: 8
    batches_per_epoch: 1
    valid_livetime: 100
    valid_frac: 0.34
"""


@dataclass
class Case:
    """A command (``{x}`` placeholders filled from the workspace) and what its message says."""

    argv: list[str]
    words: list[str]  # every one must appear in stderr (the file / field, and why)
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2


def train(*args: str) -> list[str]:
    return [*aframe_train(), *args]


def fit(*overrides: str, config: str = "{config}") -> list[str]:
    return train("fit", "--config", config, "--trainer.default_root_dir={tmp}/run", *overrides)


# -- the default suite: the seven wrong cases of issue 11, config values checked by the Dataset,
# a YAML error, files that break the contract, and S3 errors of aframe-synthetic
FAST = {
    "synthetic-unknown-ifo": Case(
        [SYNTHETIC, "--out", "{tmp}/x1", "--ifos", "X1", "H1", *SMALL], ["--ifos", "X1"]
    ),
    "synthetic-negative-rate": Case(
        [SYNTHETIC, "--out", "{tmp}/neg", *SMALL, "--sample-rate", "-5"],
        ["--sample-rate=-5.0", "positive"],
    ),
    "synthetic-coalescence-outside": Case(
        [SYNTHETIC, "--out", "{tmp}/tc", *SMALL, "--coalescence-time", "5"],
        ["--coalescence-time=5.0", "--waveform-duration=4.0"],
    ),
    "synthetic-s3-wrong-bucket": Case(
        [SYNTHETIC, "--out", "s3://no-such-bucket-here/data", *SMALL],
        ["s3://no-such-bucket-here/data (--out)", "bucket 'no-such-bucket-here' does not exist"],
        env={"AWS_ENDPOINT_URL": "{s3}"},
    ),
    "synthetic-s3-wrong-port": Case(
        [SYNTHETIC, "--out", "{bucket}/data", *SMALL],
        ["(--out)", "cannot reach the S3 endpoint", "{dead}"],
        env={"AWS_ENDPOINT_URL": "{dead}", "AWS_MAX_ATTEMPTS": "1"},
    ),
    "synthetic-s3-no-credentials": Case(
        [SYNTHETIC, "--out", "{bucket}/data", *SMALL],
        ["(--out)", "credentials are missing or rejected"],
        env={
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": "{tmp}/none",
            "AWS_CONFIG_FILE": "{tmp}/none",
        },
    ),  # fmt: skip
    "fit-batch-size-0": Case(fit("--data.batch_size=0"), ["data.batch_size=0", "positive"]),
    "fit-yaml-syntax": Case(fit(config="{bad_yaml}"), ["bad.yaml", "line 4", "not valid YAML"]),
    "fit-file-not-ours": Case(
        fit("--data.data_dir={not_ours}"), ["background-1000000000-256.hdf5", "does not follow"]
    ),
    "validate-ckpt-other-ifos": Case(
        train(
            "validate",
            "--config",
            "{config}",
            "--trainer.default_root_dir={tmp}/val",
            "--data.data_dir={three_ifos}",
            "--data.ifos=[H1,L1,V1]",
            "--ckpt_path={ckpt}",
        ),
        ["two.ckpt", "2 IFOs ['H1', 'L1']", "data.ifos=['H1', 'L1', 'V1']"],
    ),  # fmt: skip
    "search-corrupt-model-pt": Case(
        train("search", "--model", "{corrupt_pt}", "--data", "{data}", "--out", "{tmp}/ev.hdf5"),
        ["corrupt/model.pt", "corrupt or truncated"],
    ),
    "evaluate-corrupt-model-json": Case(
        train("evaluate", "--model", "{bad_json_pt}", "--out", "{tmp}/eval"),
        ["badjson/model.json", "not valid JSON"],
    ),
}

# -- the slow session: one case per remaining data-contract rule (each is also an in-process
# test in tests/lib/data/test_background.py), a config value, and S3 data directories
SLOW = {
    "fit-file-without-ifo": Case(
        fit("--data.ifos=[H1,V1]"), ["background-1000000000-256.hdf5", "'V1'", "data.ifos"]
    ),
    "fit-highpass-above-nyquist": Case(fit("--data.highpass=300"), ["data.highpass=300.0"]),
    "fit-missing-data-dir": Case(fit("--data.data_dir={tmp}/nowhere"), ["nowhere", "data_dir"]),
    "fit-sample-rate-mismatch": Case(fit("--data.sample_rate=512"), ["sample rate", "256"]),
    "fit-segment-too-short": Case(fit("--data.psd_length=300"), ["shorter than the minimum"]),
    "fit-nan-in-strain": Case(
        fit("--data.data_dir={nan}"),
        ["/nan/background-1000000000-256.hdf5", "'H1' is nan at sample 1000", "GPS"],
    ),
    "fit-unequal-lengths": Case(fit("--data.data_dir={unequal}"), ["different lengths"]),
    "fit-corrupt-file": Case(fit("--data.data_dir={corrupt}"), ["cannot be read as HDF5"]),
    "fit-s3-missing-key": Case(
        fit("--data.data_dir={bucket}/missing"),
        ["{bucket}/missing", "data.data_dir"],
        env={"AWS_ENDPOINT_URL": "{s3}"},
    ),
    "fit-s3-wrong-bucket": Case(
        fit("--data.data_dir=s3://no-such-bucket-here/x"),
        ["(data.data_dir)", "bucket 'no-such-bucket-here' does not exist"],
        env={"AWS_ENDPOINT_URL": "{s3}"},
    ),
}


def _copy_with(src: Path, dst: Path, edit) -> str:
    """A copy of the tiny data set with ``edit(h5py.File)`` applied to its first background file."""
    shutil.copytree(src, dst)
    first = sorted(dst.glob("background-*.hdf5"))[0]
    with h5py.File(first, "r+") as f:
        edit(f, first)
    return str(dst)


def _not_ours(f, path):
    for ifo in ("H1", "L1"):
        f.move(ifo, f"strain_{ifo.lower()}")


def _nan(f, path):
    f["H1"][1000] = np.nan


def _unequal(f, path):
    attrs = dict(f["L1"].attrs)
    data = f["L1"][:-256]
    del f["L1"]
    f.create_dataset("L1", data=data)
    f["L1"].attrs.update(attrs)


def _add_v1(f, path):
    f.create_dataset("V1", data=f["H1"][:])
    f["V1"].attrs.update(dict(f["H1"].attrs))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_data_dir, s3_server):
    """Every file the cases need, built once; returns the ``{placeholder}`` values."""
    import boto3
    import torch

    tmp = tmp_path_factory.mktemp("bad-inputs")
    data = Path(tiny_data_dir)
    (tmp / "tiny-train.yaml").write_text(CONFIG.format(data_dir=data, rate=int(SAMPLE_RATE)))
    (tmp / "bad.yaml").write_text("data:\n  init_args:\n    batch_size: [8,\n  ifos: : x\n")
    bucket = "bad-inputs-bucket"
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", **creds).create_bucket(
        Bucket=bucket
    )
    (tmp / "corrupt").mkdir()
    (tmp / "corrupt" / "model.pt").write_bytes(b"PK\x03\x04 truncated copy")
    (tmp / "badjson").mkdir()
    torch.jit.script(torch.nn.Linear(2, 1)).save(str(tmp / "badjson" / "model.pt"))
    (tmp / "badjson" / "model.json").write_text('{"data": {"ifos": ["H1", "L1"')
    values = {
        "tmp": str(tmp),
        "data": str(data),
        "config": str(tmp / "tiny-train.yaml"),
        "bad_yaml": str(tmp / "bad.yaml"),
        "s3": s3_server,
        "dead": "http://127.0.0.1:9",  # the discard port: nothing listens there
        "bucket": f"s3://{bucket}",
        "corrupt_pt": str(tmp / "corrupt" / "model.pt"),
        "bad_json_pt": str(tmp / "badjson" / "model.pt"),
        "not_ours": _copy_with(data, tmp / "not-ours", _not_ours),
        "nan": _copy_with(data, tmp / "nan", _nan),
        "unequal": _copy_with(data, tmp / "unequal", _unequal),
        "ckpt": str(_two_ifo_checkpoint(tmp / "tiny-train.yaml", tmp / "two.ckpt")),
        "three_ifos": str(tmp / "three"),
    }
    shutil.copytree(data, tmp / "three")
    for path in (tmp / "three").glob("background-*.hdf5"):
        with h5py.File(path, "r+") as f:
            _add_v1(f, path)
    shutil.copytree(data, tmp / "corrupt-data")
    first = sorted((tmp / "corrupt-data").glob("background-*.hdf5"))[0]
    first.write_bytes(first.read_bytes()[:4096])  # an interrupted copy
    values["corrupt"] = str(tmp / "corrupt-data")
    return values


def _two_ifo_checkpoint(config: Path, path: Path) -> Path:
    """A real checkpoint of CONFIG's model on H1/L1, made by AframeCLI (no training step)."""
    from aframe_train.cli import AframeCLI

    args = [
        "--config", str(config), "--trainer.max_epochs=0",
        "--trainer.enable_checkpointing=false", f"--trainer.default_root_dir={path.parent}",
    ]  # fmt: skip
    cli = AframeCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.save_checkpoint(str(path))
    return path


def _fill(text: str, values: dict[str, str]) -> str:
    return text.format(**values) if "{" in text else text


def _run(case: Case, values: dict[str, str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "AWS_ENDPOINT_URL": values["s3"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AFRAME_DEBUG", None)
    env.update({k: _fill(v, values) for k, v in case.env.items()})
    for key in [k for k, v in env.items() if v == ""]:
        del env[key]  # "" in a case's env: unset
    argv = [_fill(a, values) for a in case.argv]
    return subprocess.run(argv, env=env, cwd=values["tmp"], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def _results(cases: dict[str, Case], values: dict[str, str]) -> dict[str, tuple]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, case, values) for name, case in cases.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def fast_results(workspace):
    return _results(FAST, workspace)


@pytest.fixture(scope="module")
def slow_results(workspace):
    return _results(SLOW, workspace)


def _check(name: str, case: Case, proc: subprocess.CompletedProcess, values: dict) -> None:
    err = proc.stderr
    assert proc.returncode == case.code, f"{name}: exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, f"{name}: a traceback\n{err[-3000:]}"
    for word in case.words:
        assert _fill(word, values) in err, f"{name}: {word!r} not in\n{err[-3000:]}"
    assert "error: " in err and "exit status 2" in err  # one block, see utils/errors.py


@pytest.mark.parametrize("name", FAST)
def test_bad_input_gives_one_message_and_exit_2(name, fast_results, workspace):
    _check(name, FAST[name], fast_results[name], workspace)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_bad_data_contract_gives_one_message_and_exit_2(name, slow_results, workspace):
    _check(name, SLOW[name], slow_results[name], workspace)


def test_refused_synthetic_arguments_write_nothing(fast_results, workspace):
    """Validated before anything is written: no psd.hdf5 (or anything) is left behind."""
    for sub in ("x1", "neg", "tc"):
        assert not (Path(workspace["tmp"]) / sub).exists(), sub


# -- the boundary itself: --debug / AFRAME_DEBUG show the traceback; a bug keeps it (exit 1)
BUG = """
import sys
from aframe_lib.utils.errors import console_main, DataError

@console_main("aframe-demo")
def main(args=None):
    if sys.argv[1:] == ["bug"]:
        raise KeyError("a bug")
    raise DataError("data.x=1: must be 2; set data.x=2")

main()
"""


@pytest.fixture(scope="module")
def demo_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.py"
    path.write_text(BUG)
    return path


def _demo(script, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "AFRAME_DEBUG"} | env
    return subprocess.run([sys.executable, str(script), *args], env=full, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_own_error_is_one_block_without_traceback(demo_script):
    proc = _demo(demo_script, "x")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("aframe-demo x: error: data.x=1: must be 2; set data.x=2\n")


@pytest.mark.parametrize("how", ["--debug", "AFRAME_DEBUG=1"])
def test_debug_shows_the_traceback(demo_script, how):
    if how == "--debug":
        proc = _demo(demo_script, "x", "--debug")
    else:
        proc = _demo(demo_script, "x", AFRAME_DEBUG="1")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "raise DataError" in proc.stderr
    assert "aframe-demo x: error: data.x=1" in proc.stderr


def test_unexpected_exception_keeps_its_traceback_and_exits_1(demo_script):
    proc = _demo(demo_script, "bug")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "KeyError: 'a bug'" in proc.stderr
    assert "aframe-demo bug: error:" not in proc.stderr


def test_debug_flag_of_a_real_console_script(workspace):
    proc = _run(Case([SYNTHETIC, "--out", "{tmp}/dbg", "--ifos", "X1", "--debug"], []), workspace)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "SyntheticDataError" in proc.stderr
    assert not (Path(workspace["tmp"]) / "dbg").exists()


def test_linked_architecture_values_are_warned_about(tmp_path, capsys):
    """A num_ifos/sample_rate given for the architecture is replaced by the data's: say so."""
    from aframe_train.cli import warn_linked

    config = tmp_path / "c.yaml"
    arch = "model:\n  init_args:\n    arch:\n      init_args:\n        sample_rate: 512\n"
    config.write_text(arch)
    warn_linked(["fit", "--config", str(config), "--model.init_args.arch.init_args.num_ifos=3"])
    err = capsys.readouterr().err
    assert (
        "model.init_args.arch.init_args.num_ifos is ignored: num_ifos comes from the data "
        "section (len(data.ifos))" in err
    )
    assert f"model.init_args.arch.init_args.sample_rate ({config}) is ignored" in err
