"""A trial's report comes after ``ModelCheckpoint`` has judged the same validation.

A trial's training (``aframe_lib.tune.worker``'s CLI, here on the tiny LightningCLI, no Ray)
writes one report line and one checkpoint per validation. Each checkpoint's
``ModelCheckpoint`` state must name the best epoch up to and including its own (a retried trial
resumes from it and exports that file), must carry a copy of the files it names, and a retry
must find them where that state says, in a folder that does not change between attempts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers.checkpoints import model_checkpoint_state

pytest.importorskip("ray")

from aframe_lib.distributed.checkpoints import KEPT, MANIFEST, restore_kept  # noqa: E402
from aframe_lib.tune.worker import trial_cli  # noqa: E402

HERE = Path(__file__).resolve().parent


def run(tmp_path: Path, *extra: str, callbacks: list | None = None) -> tuple[list[dict], Path]:
    import sys

    sys.path.insert(0, str(HERE))
    try:
        from tune_tiny_cli import TinyCLI
    finally:
        sys.path.remove(str(HERE))
    root = tmp_path / "trial"
    config = tmp_path / "config.yaml"
    trainer = {
        "max_epochs": 4,
        "default_root_dir": str(root),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(root), "name": "logs"},
        },
    }
    if callbacks is not None:
        trainer["callbacks"] = callbacks
    # scores rise at epochs 0-1, drop at 2 (the weights knocked off) and stay below epoch 1's:
    # a new best that the report must name, then a best that is not the latest epoch
    model = {"learning_rate": 0.01, "kick_epoch": 2}
    config.write_text(yaml.safe_dump({"trainer": trainer, "model": model}))
    report = tmp_path / "report.jsonl"
    cli = trial_cli(TinyCLI, str(report), str(tmp_path / "epochs"))
    cli(args=["fit", "--config", str(config), *extra])
    return [json.loads(line) for line in report.read_text().splitlines()], root


CHECKPOINT = {
    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
    "init_args": {"monitor": "valid_score", "mode": "max", "filename": "{epoch}-{valid_score:.6f}"},
}


def assert_each_report_names_the_best_epoch_so_far(records: list[dict], root: Path) -> None:
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    scores = [r["metrics"]["valid_score"] for r in records]
    assert scores[0] < scores[1] and max(scores) == scores[1]
    for i, record in enumerate(records):
        state = model_checkpoint_state(Path(record["checkpoint"], "last.ckpt"))
        best = max(range(i + 1), key=lambda k: scores[k])
        assert float(state["best_model_score"]) == pytest.approx(scores[best], abs=1e-6)
        assert Path(state["best_model_path"]).name.startswith(f"epoch={best}-")
        # one folder for every attempt: not the logger's version_N
        assert Path(state["best_model_path"]).parent == root / "checkpoints"
        manifest = json.loads(Path(record["checkpoint"], KEPT, MANIFEST).read_text())
        assert list(manifest.values()) == [state["best_model_path"]]
        copy = Path(record["checkpoint"], KEPT, next(iter(manifest)))
        assert torch.load(copy, weights_only=False)["epoch"] == best


def test_each_report_names_the_best_epoch_so_far_and_carries_its_file(tmp_path):
    records, root = run(tmp_path, callbacks=[CHECKPOINT])
    assert_each_report_names_the_best_epoch_so_far(records, root)
    # a retry that finds the best file gone (a later save deleted it before the failure)
    last = Path(records[-1]["checkpoint"])
    best_path = Path(model_checkpoint_state(last / "last.ckpt")["best_model_path"])
    content = best_path.read_bytes()
    best_path.unlink()
    assert restore_kept(last) == [str(best_path)]
    assert best_path.read_bytes() == content
    assert restore_kept(last) == []  # present: left alone


def test_a_model_checkpoint_from_the_model_s_configure_callbacks_is_judged_first(tmp_path):
    """Lightning attaches the model's callbacks after the trainer's, so after the reporter;
    the reporter moves itself after them and gives theirs the stable folder."""
    records, root = run(tmp_path, "--model.own_checkpoint=true")
    assert_each_report_names_the_best_epoch_so_far(records, root)


def test_a_config_without_model_checkpoint_keeps_lightning_s_default(tmp_path):
    """The reporter is a ``Checkpoint`` callback (run after ``ModelCheckpoint``): Lightning adds
    no default ``ModelCheckpoint`` then, so the trial's CLI does."""
    records, root = run(tmp_path, "--trainer.max_epochs=2")
    state = model_checkpoint_state(Path(records[-1]["checkpoint"], "last.ckpt"))
    assert Path(state["best_model_path"]).name == "epoch=1-step=8.ckpt"  # Lightning's default
    assert Path(state["best_model_path"]).is_file()


def test_checkpointing_off_still_reports(tmp_path):
    records, root = run(tmp_path, "--trainer.max_epochs=2", "--trainer.enable_checkpointing=false")
    assert [r["epoch"] for r in records] == [0, 1]
    assert json.loads(Path(records[-1]["checkpoint"], KEPT, MANIFEST).read_text()) == {}
    assert not (root / "checkpoints").exists()


def test_validation_within_the_epoch_is_reported_after_its_save(tmp_path):
    records, _ = run(tmp_path, "--trainer.max_epochs=2", "--trainer.val_check_interval=0.5",
                     callbacks=[CHECKPOINT])  # fmt: skip
    assert [r["epoch"] for r in records] == [0, 0, 1, 1]
    # ASHA's time counts epochs, not reports; the possibly-last report is the final one
    assert [r["epochs_trained"] for r in records] == [0.5, 1.0, 1.5, 2.0]
    assert [r["last"] for r in records] == [False, False, False, True]
    # one checkpoint per validation, each its own step's (none overwritten by the next)
    assert len({r["checkpoint"] for r in records}) == 4
    steps = [torch.load(Path(r["checkpoint"], "last.ckpt"), weights_only=False)["global_step"]
             for r in records]  # fmt: skip
    assert steps == [2, 4, 6, 8]  # 4 batches an epoch
    scores = [r["metrics"]["valid_score"] for r in records]
    state = model_checkpoint_state(Path(records[-1]["checkpoint"], "last.ckpt"))
    assert float(state["best_model_score"]) == pytest.approx(max(scores), abs=1e-6)
