"""TorchScript export: traced on a real batch, checked, with its JSON metadata beside it."""

from __future__ import annotations

import pytest
import torch

from aframe_lib.export import export_torchscript, load_exported


def test_trace_round_trip_with_metadata(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 5), torch.nn.Flatten(), torch.nn.LazyLinear(1)
    )
    example = torch.randn(6, 2, 32)
    model(example)  # materialise the lazy layer
    diff = export_torchscript(model, example, tmp_path / "model.pt", {"ifos": ["H1", "L1"]})
    assert diff < 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pt"]
    traced, info = load_exported(tmp_path / "model.pt")
    assert info == {"input_shape": [None, 2, 32], "max_abs_diff": diff, "ifos": ["H1", "L1"]}
    X = torch.randn(3, 2, 32)
    torch.testing.assert_close(traced(X), model(X))


class SignBranch(torch.nn.Module):
    """Data-dependent control flow: a trace bakes in the branch of its tracing batch."""

    def forward(self, X):
        return X * 2 if X.sum() > 0 else X


def test_parity_is_checked_on_another_batch(tmp_path):
    positive, negative = torch.rand(4, 2, 8) + 0.1, -torch.rand(4, 2, 8) - 0.1
    # on the tracing batch a wrong trace agrees by construction ...
    path = tmp_path / "a" / "model.pt"
    with pytest.warns(torch.jit.TracerWarning):
        assert export_torchscript(SignBranch(), positive, path) == 0.0
    # ... on another batch the difference shows, and is recorded with the parity of other formats
    path = tmp_path / "b" / "model.pt"
    with pytest.warns(torch.jit.TracerWarning):
        diff = export_torchscript(
            SignBranch(), positive, path, {"parity": {"onnx": None}}, check=negative
        )
    assert diff == pytest.approx(negative.abs().max().item())
    _, info = load_exported(path)
    assert info["max_abs_diff"] == diff and info["parity"] == {"torchscript": diff, "onnx": None}
