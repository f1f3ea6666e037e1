"""Channel swap/mute augmentations."""

from __future__ import annotations

import pytest
import torch

from aframe_lib.augmentations import ChannelMuter, ChannelSwapper


def test_muter_zeros_exactly_one_channel_of_the_chosen_samples():
    X = torch.randn(1000, 3, 64)
    original = X.clone()
    X, idx = ChannelMuter(0.3)(X)
    assert 200 < len(idx) < 400
    zeroed = X.abs().sum(-1) == 0
    assert (zeroed.sum(1)[idx] == 1).all()
    untouched = torch.ones(1000, dtype=torch.bool)
    untouched[idx] = False
    torch.testing.assert_close(X[untouched], original[untouched])


def test_swapper_exchanges_one_channel_between_pairs():
    X = torch.arange(400 * 2 * 8, dtype=torch.float32).reshape(400, 2, 8)
    original = X.clone()
    X, idx = ChannelSwapper(0.5)(X)
    assert len(idx) % 2 == 0 and len(idx) > 100
    changed = (X != original).any(-1)  # (batch, ifo)
    assert (changed.sum(1)[idx] == 1).all()  # one channel per swapped sample
    others = torch.ones(400, dtype=torch.bool)
    others[idx] = False
    assert not changed[others].any()
    # every swapped channel holds another swapped sample's data for the same channel
    rows = {tuple(r.tolist()) for r in original[idx].reshape(-1, 8)}
    for i in idx.tolist():
        for c in range(2):
            assert tuple(X[i, c].tolist()) in rows


@pytest.mark.parametrize("cls", [ChannelSwapper, ChannelMuter])
def test_probability_outside_unit_interval_is_rejected(cls):
    with pytest.raises(ValueError, match="must be in"):
        cls(1.5)
