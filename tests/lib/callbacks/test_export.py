"""ExportModel: TorchScript and ONNX side by side at the end of training; ONNX never fatal."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from aframe_lib.callbacks import ExportModel
from aframe_lib.export import load_exported, load_onnx


def test_torchscript_and_onnx_are_written_and_agree(fit, tmp_path):
    callback = ExportModel(num_examples=4)
    fit([callback], epochs=1)
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["input_shape"] == [None, 2, 64] and info["max_abs_diff"] < 1e-5
    assert info["onnx"]["filename"] == "model.onnx" and info["onnx"]["max_abs_diff"] < 1e-5
    assert callback.onnx_path == str(tmp_path / "model.onnx")

    traced, _ = load_exported(tmp_path / "model.pt")
    session, onnx_info = load_onnx(tmp_path / "model.onnx")
    assert onnx_info["input_shape"] == [None, 2, 64]
    X = torch.randn(7, 2, 64)
    (got,) = session.run(["output"], {"input": X.numpy()})
    np.testing.assert_allclose(got, traced(X).detach().numpy(), atol=1e-5)


def test_parity_of_both_formats_is_checked_on_another_batch(fit, tmp_path, monkeypatch):
    """The check batch is not the tracing batch; both differences land in model.json."""
    import aframe_lib.callbacks.export as export_module

    seen = {}

    def spy(name, real):
        def wrapped(model, example, path, metadata=None, check=None, **kwargs):
            seen[name] = (example.clone(), check.clone())
            return real(model, example, path, metadata, check=check, **kwargs)

        return wrapped

    monkeypatch.setattr(export_module, "export_onnx", spy("onnx", export_module.export_onnx))
    monkeypatch.setattr(
        export_module, "export_torchscript", spy("ts", export_module.export_torchscript)
    )
    fit([ExportModel(num_examples=4)], epochs=1)
    for example, check in seen.values():
        assert example.shape == check.shape == (4, 2, 64) and not torch.equal(example, check)
    info = json.loads((tmp_path / "model.json").read_text())
    parity = info["parity"]
    assert parity["torchscript"] == info["max_abs_diff"] < 1e-5
    assert parity["onnx"] == info["onnx"]["max_abs_diff"] < 1e-5
    assert parity["num_examples"] == 4


def test_onnx_can_be_switched_off(fit, tmp_path):
    fit([ExportModel(onnx=False)], epochs=1)
    assert not (tmp_path / "model.onnx").exists()
    assert "onnx" not in json.loads((tmp_path / "model.json").read_text())


def test_missing_onnx_warns_and_training_still_exports_torchscript(fit, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.warns(RuntimeWarning, match=r"ONNX export skipped.*aframe-lib\[export\]"):
        fit([ExportModel()], epochs=1)
    info = json.loads((tmp_path / "model.json").read_text())
    assert "aframe-lib[export]" in info["onnx"]["skipped"]
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "model.onnx").exists()


def test_a_module_without_export_module_is_refused_before_training(tiny, tmp_path):
    """The contract (aframe_lib.callbacks.Exportable) is checked at setup, naming the fix."""
    import lightning.pytorch as pl

    from aframe_lib.callbacks import Exportable
    from aframe_lib.utils.errors import ConfigError

    TinyModule, TinyData = tiny

    class NoExport(TinyModule):
        export_module = None  # as if it had none: not callable, so not Exportable

    assert isinstance(TinyModule(), Exportable) and not isinstance(NoExport(), Exportable)
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=1, logger=False,
        callbacks=[ExportModel()], enable_progress_bar=False, accelerator="cpu",
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"NoExport has no export_module\(\).*def export_module"):
        trainer.fit(NoExport(), TinyData())
    assert trainer.global_step == 0 and not (tmp_path / "model.pt").exists()


def test_a_data_module_with_example_batch_but_no_transform_is_refused(tiny, tmp_path):
    import lightning.pytorch as pl

    from aframe_lib.utils.errors import ConfigError

    TinyModule, TinyData = tiny

    class HalfData(TinyData):
        def example_batch(self, num, device="cpu"):
            return self.X[:num].to(device)

    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=1, logger=False,
        callbacks=[ExportModel()], enable_progress_bar=False, accelerator="cpu",
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"HalfData has example_batch but no transform"):
        trainer.fit(TinyModule(), HalfData())


def test_a_run_resumed_from_its_last_checkpoint_still_exports(tiny, tmp_path):
    """Rerunning a command that was killed while it exported resumes from the last epoch's
    checkpoint, trains nothing, and Lightning skips on_train_end: the model is exported at
    on_fit_end from the tracing batch the checkpoint carries."""
    import lightning.pytorch as pl

    TinyModule, TinyData = tiny

    def trainer(root):
        return pl.Trainer(
            default_root_dir=root, max_epochs=1, limit_train_batches=2, limit_val_batches=2,
            callbacks=[ExportModel(onnx=False)], logger=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
        )  # fmt: skip

    first = trainer(tmp_path / "first")
    first.fit(TinyModule(), TinyData())
    checkpoint = first.checkpoint_callback.best_model_path
    assert checkpoint and (tmp_path / "first" / "model.pt").is_file()
    again = trainer(tmp_path / "again")
    again.fit(TinyModule(), TinyData(), ckpt_path=checkpoint)
    assert again.current_epoch == 1  # nothing was trained again
    traced, _ = load_exported(tmp_path / "again" / "model.pt")
    assert traced(torch.randn(3, 2, 64)).shape[0] == 3
