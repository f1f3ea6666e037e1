"""Reading Lightning checkpoint files in tests."""

from __future__ import annotations

from pathlib import Path


def model_checkpoint_state(path: Path) -> dict:
    """The state of the one ``ModelCheckpoint`` a Lightning checkpoint file holds."""
    import torch

    states = torch.load(path, map_location="cpu", weights_only=False)["callbacks"]
    (state,) = [v for k, v in states.items() if k.startswith("ModelCheckpoint")]
    return state
