"""ONNX export: a free batch axis, checked with onnxruntime, written atomically, local or s3://."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from aframe_lib.export import export_onnx, export_torchscript, load_exported, load_onnx


def conv_net(num_ifos: int = 2) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv1d(num_ifos, 8, 7, padding=3),
        torch.nn.GroupNorm(4, 8),
        torch.nn.ReLU(),
        torch.nn.Conv1d(8, 8, 3, stride=2),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 1),
    ).eval()


def run(session, X: torch.Tensor) -> np.ndarray:
    return session.run(["output"], {"input": X.numpy()})[0]


def test_export_is_checked_and_has_a_free_batch_axis(tmp_path):
    model, example = conv_net(), torch.randn(8, 2, 128)
    path = tmp_path / "out" / "model.onnx"
    diff = export_onnx(model, example, path, metadata={"sample_rate": 128})
    assert diff < 1e-5
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no temp files
    session, info = load_onnx(path)
    assert info["input_shape"] == [None, 2, 128]
    assert info["max_abs_diff"] == diff and info["sample_rate"] == 128 and info["opset"] == 17
    assert session.get_inputs()[0].shape == ["batch", 2, 128]
    X = torch.randn(5, 2, 128)
    with torch.no_grad():
        np.testing.assert_allclose(run(session, X), model(X).numpy(), atol=1e-5)


def test_the_callers_model_stays_in_train_mode(tmp_path):
    model = conv_net().train()
    export_onnx(model, torch.randn(4, 2, 64), tmp_path / "model.onnx")
    assert model.training  # a copy was put in eval mode and exported


def test_failed_check_leaves_no_file(tmp_path):
    class FixedBatch(torch.nn.Module):
        def forward(self, X):
            # len(X) is a Python int: the trace bakes in batch 4, so batch 1 gives 4 outputs
            return X.sum(dim=(1, 2)) + torch.zeros(len(X))

    path = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError, match="ONNX output shape"):
        export_onnx(FixedBatch(), torch.randn(4, 2, 16), path)
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ImportError, match=r"aframe-lib\[export\]"):
        export_onnx(conv_net(), torch.randn(2, 2, 64), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.s3
def test_export_to_s3_and_load_back(s3_bucket):
    from aframe_lib.utils import fs

    model, example = conv_net(), torch.randn(4, 2, 64)
    onnx_diff = export_onnx(model, example, f"{s3_bucket}/run/model.onnx", {"ifos": ["H1", "L1"]})
    ts_diff = export_torchscript(model, example, f"{s3_bucket}/run/model.pt", {"ifos": ["H1"]})
    filesystem, inner = fs.filesystem(f"{s3_bucket}/run")
    assert sorted(p.rsplit("/", 1)[-1] for p in filesystem.ls(inner)) == [
        "model.json",
        "model.onnx",
        "model.pt",
    ]

    X = torch.randn(3, 2, 64)
    with torch.no_grad():
        expected = model(X).numpy()
    session, info = load_onnx(f"{s3_bucket}/run/model.onnx")
    assert info["ifos"] == ["H1", "L1"] and info["max_abs_diff"] == onnx_diff < 1e-5
    np.testing.assert_allclose(run(session, X), expected, atol=1e-5)
    traced, info = load_exported(f"{s3_bucket}/run/model.pt")
    assert info["input_shape"] == [None, 2, 64] and info["max_abs_diff"] == ts_diff
    np.testing.assert_allclose(traced(X).detach().numpy(), expected, atol=1e-5)
