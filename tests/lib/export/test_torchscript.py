"""TorchScript export: traced on a real batch, checked, with its JSON metadata beside it."""

from __future__ import annotations

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
