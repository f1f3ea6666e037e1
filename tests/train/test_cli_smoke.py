"""End-to-end smoke test of the real ``aframe-train`` console script on a tiny CPU config."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.console import aframe_train

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cmd = [
        *aframe_train(),
        "fit",
        "--config",
        str(QUICKSTART),
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.data_dir={out / 'data'}",
        "--data.init_args.batches_per_epoch=3",
        "--data.init_args.batch_size=16",
        "--data.init_args.valid_livetime=200",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=64",
        "--data.init_args.synthetic.num_val_waveforms=16",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_run_directory_has_model_checkpoints_metrics_and_config(run_dir):
    model = torch.jit.load(str(run_dir / "model.pt"))
    info = json.loads((run_dir / "model.json").read_text())
    assert info["input_shape"] == [None, 2, 512]  # 2 IFOs x (1 s at 512 Hz)
    assert info["max_abs_diff"] < 1e-5
    # the PSD policy training used, resolved, for the search (projects/quickstart/train.yaml)
    assert info["psd"] == {"length": 16.0, "fftlength": 2.0, "overlap": 1.0,
                           "average": "median", "cadence": 1.0}  # fmt: skip
    assert model(torch.randn(3, 2, 512)).shape == (3, 1)
    # the timing calibration ran on the exported model (2 epochs rarely respond: then skipped)
    assert "offset" in info["timing"] or "calibration injections" in info["timing"]["skipped"]
    # what it trained and validated on, and its population: evaluate's defaults and refusals
    (train,), (valid,) = info["provenance"]["train"], info["provenance"]["valid"]
    assert (train["kind"], train["stream"], valid["stream"]) == ("synthetic", 0, 0)
    assert train["spans"]["H1"][-1][1] <= valid["spans"]["H1"][0][0]
    assert set(info["population"]) >= {"masses", "spins", "distance"}
    version = run_dir / "logs" / "version_0"
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    rows = list(csv.DictReader(open(version / "metrics.csv")))
    aurocs = [float(r["valid_auroc"]) for r in rows if r.get("valid_auroc")]
    assert len(aurocs) == 2 and all(0.0 <= a <= 1.0 for a in aurocs)
    config = (version / "config.yaml").read_text()
    # the resolved config is stored with the run; the architecture's num_ifos/sample_rate/
    # kernel_length are links from the data section (checked through the exported input shape)
    assert "- H1" in config and "sample_rate: 512" in config
    # the quickstart's ValidationPlotter leaves PNGs of epoch 0 in the run directory
    plots = sorted((run_dir / "plots").glob("epoch=000-*.png"))
    assert {p.name.split("-")[1] for p in plots} == {"foreground", "background"}
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots)


def test_second_run_reuses_the_synthetic_data(run_dir):
    manifest = run_dir / "data" / "synthetic.json"
    assert manifest.exists()


def test_unknown_config_key_is_rejected_before_anything_runs(tmp_path):
    cmd = [*aframe_train(), "fit", "--config", str(QUICKSTART), "--data.init_args.bogus=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "bogus" in proc.stderr
    assert not (tmp_path / "quickstart-data").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_module_entry_point_and_print_config_with_dotted_overrides(tmp_path):
    """``python -m aframe_train`` works, and ``--data.ifos=[...]`` reaches the data section."""
    cmd = [
        sys.executable, "-m", "aframe_train", "fit", "--config", str(QUICKSTART),
        "--data.ifos=[H1,V1]", "--data.kernel_length=1.5", "--print_config",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import yaml

    config = yaml.safe_load(proc.stdout)
    assert config["data"]["init_args"]["ifos"] == ["H1", "V1"]
    assert config["data"]["init_args"]["kernel_length"] == 1.5
