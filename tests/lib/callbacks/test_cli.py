"""The callbacks inside the real ``aframe-train`` CLI: shipped callbacks.yaml plus an appended
ValidationPlotter on the quickstart config (tiny overrides, CPU)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import torch
import yaml
from helpers.console import aframe_train

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"
CALLBACKS = ROOT / "packages" / "aframe-train" / "aframe_train" / "configs" / "callbacks.yaml"


def test_callbacks_yaml_composes_and_plots_and_onnx_land_in_the_run_dir(tmp_path):
    out = tmp_path / "run"
    cmd = [
        *aframe_train(),
        "fit",
        "--config",
        str(QUICKSTART),
        "--config",  # replaces the quickstart's callbacks list
        str(CALLBACKS),
        "--trainer.callbacks+=aframe_lib.callbacks.ValidationPlotter",  # appends one
        "--trainer.callbacks.num_samples=2",
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.data_dir={tmp_path / 'data'}",
        "--data.init_args.batches_per_epoch=2",
        "--data.init_args.batch_size=16",
        "--data.init_args.valid_livetime=100",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=32",
        "--data.init_args.synthetic.num_val_waveforms=16",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    config = yaml.safe_load((out / "logs" / "version_0" / "config.yaml").read_text())
    callbacks = config["trainer"]["callbacks"]
    assert [c["class_path"].rsplit(".", 1)[-1] for c in callbacks] == [
        "ModelCheckpoint",
        "ExportModel",
        "ValidationPlotter",
    ]
    assert callbacks[0]["init_args"]["save_top_k"] == 3  # callbacks.yaml's, not quickstart's

    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == [
        f"epoch={e:03d}-{kind}-{i}.png"
        for e in (0, 1)
        for kind, i in [("background", 0), ("foreground", 0), ("foreground", 1)]
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in (out / "plots").iterdir())

    # the real detector (whitened strain -> ResNet1D logit) exported both ways, and they agree
    from aframe_lib.export import load_exported, load_onnx

    info = json.loads((out / "model.json").read_text())
    assert info["max_abs_diff"] < 1e-4 and info["onnx"]["max_abs_diff"] < 1e-4, info
    traced, _ = load_exported(out / "model.pt")
    session, _ = load_onnx(out / "model.onnx")
    X = torch.randn(3, 2, 512)
    (got,) = session.run(["output"], {"input": X.numpy()})
    np.testing.assert_allclose(got, traced(X).detach().numpy(), atol=1e-4)
