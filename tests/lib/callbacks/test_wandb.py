"""W&B callbacks against a real offline run: the files wandb writes are read back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from helpers.wandb_files import run_dir, stored_config

from aframe_lib.callbacks import WandbPlotter, WandbSaveConfig, redact_secrets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
AWS_SECRET = "s3cr3t-aws-value-do-not-leak"
WANDB_KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def wandb_dirs(tmp_path, monkeypatch):
    """Offline W&B with every directory it writes (run, artifact staging, cache) in tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("DATA", "CACHE", "CONFIG", "ARTIFACT"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / f"wandb-{name.lower()}"))
    yield tmp_path
    import wandb

    wandb.finish()


def wandb_logger(save_dir: Path):
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(save_dir=str(save_dir), offline=True, project="aframe-test")


def logged_tables(root: Path, key: str = "validation/plots") -> list[dict]:
    """The table JSONs of the run's history, in the order they were logged."""
    # key "a/b" is logged as files/media/table/a/b_<history step>_<hash>.table.json
    folder, name = (run_dir(root) / "files" / "media" / "table" / key).parent, key.split("/")[-1]
    paths = sorted(folder.glob(f"{name}_*.table.json"), key=lambda p: int(p.name.split("_")[-2]))
    return [json.loads(p.read_text()) for p in paths]


def staged_artifacts(root: Path) -> tuple[list[dict], set[str]]:
    """Table JSONs (with their image references) and sha256 of PNGs in the artifact staging."""
    tables, pngs = [], set()
    for path in (root / "wandb-data").rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if data.startswith(PNG_MAGIC):
            pngs.add(hashlib.sha256(data).hexdigest())
        elif data.startswith(b"{"):
            table = json.loads(data)
            if table.get("_type") == "table":
                tables.append(table)
    return tables, pngs


@pytest.mark.parametrize("mode", ["incremental", "accumulate"])
def test_plots_are_rows_of_one_table_with_their_images(fit, wandb_dirs, mode):
    plotter = WandbPlotter(num_samples=2, num_background=1, table_mode=mode)
    trainer = fit([plotter], epochs=2, logger=wandb_logger(wandb_dirs))
    trainer.logger.experiment.finish()

    tables = logged_tables(wandb_dirs)
    assert len(tables) == 2  # one log per epoch, all under the one key
    columns = ["epoch", "step", "kind", "sample", "snr", "score", "image"]
    assert all(t["columns"] == columns for t in tables)
    epochs = [[row[0] for row in t["data"]] for t in tables]
    if mode == "incremental":  # each log adds its own rows
        assert epochs == [[0, 0, 0], [1, 1, 1]]
    else:  # each log holds every row so far
        assert epochs == [[0, 0, 0], [0, 0, 0, 1, 1, 1]]
    last = tables[-1]["data"][-3:]
    assert [(r[2], r[3]) for r in last] == [("foreground", 1), ("foreground", 2), ("background", 1)]
    assert [r[4] for r in last] == [9.0, 10.0, None]  # SNR = 8 + row; none for background
    assert plotter.rows[-1][5] == pytest.approx(last[-1][5])
    assert not (wandb_dirs / "plots").exists()  # no PNG files when W&B has them

    # the images travel in the table's artifact: every row points at a staged PNG
    staged, pngs = staged_artifacts(wandb_dirs)
    refs = {row[-1]["sha256"] for table in staged for row in table["data"]}
    assert len(refs) == 6 and refs <= pngs
    assert all(row[-1]["path"].startswith("media/images/") for t in staged for row in t["data"])


def test_plotter_without_wandb_logger_writes_png_files(fit, tmp_path):
    fit([WandbPlotter(num_samples=1, num_background=0)], epochs=1)
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["epoch=000-foreground-1.png"]


def test_redact_secrets_by_environment_value_and_by_key():
    env = {"AWS_SECRET_ACCESS_KEY": AWS_SECRET, "WANDB_API_KEY": WANDB_KEY, "HOME": "/home/me"}
    config = {
        "model": {"note": f"key={AWS_SECRET};", "api_key": "typed-in", "lr": 0.1},
        "storage": {"credentials": {"user": "me", "port": 9000}},
        "paths": ["/home/me/data", f"s3://{WANDB_KEY}@bucket"],
    }
    out = redact_secrets(config, env)
    assert out["model"] == {"note": "key=***REDACTED***;", "api_key": "***REDACTED***", "lr": 0.1}
    assert out["storage"]["credentials"] == {"user": "***REDACTED***", "port": 9000}
    assert out["paths"] == ["/home/me/data", "s3://***REDACTED***@bucket"]
    assert config["model"]["api_key"] == "typed-in"  # a copy: the input is untouched


def test_save_config_fills_wandb_config_without_trainer_or_secrets(tiny, wandb_dirs, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("WANDB_API_KEY", WANDB_KEY)
    TinyModule, TinyData = tiny
    root = wandb_dirs
    cli = LightningCLI(
        TinyModule,
        TinyData,
        save_config_callback=WandbSaveConfig,
        run=False,
        args=[
            f"--model.note=reads {AWS_SECRET} from the environment",
            "--model.api_key=typed-into-the-config",
            "--data.sample_rate=32",
            "--seed_everything=0",
            "--trainer.log_every_n_steps=1",
            "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
            f"--trainer.logger.save_dir={root}",
            "--trainer.logger.offline=true",
            "--trainer.logger.project=aframe-test",
            f"--trainer.default_root_dir={root}",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.accelerator=cpu",
        ],
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    cli.trainer.logger.experiment.finish()

    # read back from the run log that wandb wrote (offline runs keep the config only there)
    stored = stored_config(root)
    assert "trainer" not in stored and "config" not in stored
    assert stored["data"] == {"ifos": ["H1", "L1"], "sample_rate": 32.0}
    assert stored["model"] == {
        "autoencoder": False,
        "note": "reads ***REDACTED*** from the environment",
        "api_key": "***REDACTED***",
    }
    # the config.yaml of the log dir is redacted as well
    local = yaml.safe_load((root / "config.yaml").read_text())
    assert local["model"]["note"] == stored["model"]["note"] and "trainer" in local
    # and no secret reached any file: run files, the binary run log, artifacts, config.yaml
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (AWS_SECRET, WANDB_KEY, "typed-into-the-config"):
                assert secret.encode() not in data, f"{secret} written to {path}"
