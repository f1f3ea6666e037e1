"""``--trainer.logger=WandbLogger`` through the real ``aframe-train`` script, W&B offline."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers.console import aframe_train
from helpers.wandb_files import run_info, stored_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart" / "train.yaml"
SECRET = "do-not-leak-this-aws-secret"


def test_wandb_logger_with_name_group_tags_project_entity(tmp_path):
    cmd = [
        *aframe_train(), "fit", "--config", str(QUICKSTART),
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=WandbLogger",
        f"--trainer.logger.save_dir={tmp_path}",
        "--trainer.logger.name=my-run",
        "--trainer.logger.group=my-search",
        "--trainer.logger.tags=[bbh,test]",
        "--trainer.logger.project=aframe",
        "--trainer.logger.entity=ml4gw",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.data_dir={tmp_path / 'data'}",
        "--data.init_args.batches_per_epoch=2",
        "--data.init_args.batch_size=8",
        "--data.init_args.valid_livetime=200",
        "--data.init_args.synthetic.background_duration=768",
        "--data.init_args.synthetic.segment_duration=256",
        "--data.init_args.synthetic.num_waveforms=32",
        "--data.init_args.synthetic.num_val_waveforms=8",
    ]  # fmt: skip
    # a wandb service started by an in-process test exports WANDB_SERVICE: never inherit it
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env = {
        **inherited,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = run_info(tmp_path)
    assert info == {
        "name": "my-run",
        "group": "my-search",
        "tags": ["bbh", "test"],
        "project": "aframe",
        "entity": "ml4gw",
    }
    config = stored_config(tmp_path)  # the resolved config, minus the trainer section
    assert config["data"]["init_args"]["ifos"] == ["H1", "L1"]
    assert "trainer" not in config
    assert (tmp_path / "model.pt").exists()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert SECRET.encode() not in path.read_bytes(), path
