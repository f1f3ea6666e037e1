"""Batch augmentations of multi-IFO strain, as ``nn.Module``s.

ml4gw already provides :class:`~ml4gw.augmentations.SignalInverter` and
:class:`~ml4gw.augmentations.SignalReverser` (re-exported here). :class:`ChannelSwapper` and
:class:`ChannelMuter` act on the *injected* kernels only and make a signal inconsistent across
the network, so the sample is relabelled as noise: they teach the network to require coherence
between detectors. :class:`GlitchAdder` adds glitches from a bank to the raw background.
"""

# ruff: noqa: F722 - jaxtyping shapes ("batch ifo time") are not forward references
from __future__ import annotations

import torch
from jaxtyping import Float, Int
from ml4gw.augmentations import SignalInverter, SignalReverser
from torch import Tensor

__all__ = ["ChannelMuter", "ChannelSwapper", "GlitchAdder", "SignalInverter", "SignalReverser"]


def _check_prob(name: str, prob: float) -> None:
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {prob}")


def _draw(size: int, prob: float, device: torch.device) -> Tensor:
    """Indices of a Bernoulli(``prob``) draw over ``size`` samples, in random order."""
    mask = torch.rand(size, device=device) < prob
    idx = mask.nonzero().flatten()
    return idx[torch.randperm(len(idx), device=device)]


class ChannelSwapper(torch.nn.Module):
    """Swap one IFO's signal between pairs of injected samples.

    Each sample is chosen with probability ``prob`` (the last one dropped if the count is odd)
    and the chosen ones are paired up;
    within each pair one randomly chosen IFO channel is exchanged, so each sample of the pair
    carries the response of two different sources.

    Args:
        prob: Probability that a sample is swapped, in [0, 1].
    """

    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        _check_prob("swap_prob", prob)
        self.prob = prob

    def forward(
        self, X: Float[Tensor, "batch ifo time"]
    ) -> tuple[Float[Tensor, "batch ifo time"], Int[Tensor, " swapped"]]:
        """Swap channels in place.

        Args:
            X: Injected kernels, shape ``(batch, num_ifos, time)``.

        Returns:
            ``X`` and the indices (into the batch) of the swapped samples.
        """
        idx = _draw(len(X), self.prob, X.device)
        num = len(idx) // 2 * 2
        idx = idx[:num]
        if num == 0 or X.shape[1] < 2:
            return X, idx[:0]
        first, second = idx[: num // 2], idx[num // 2 :]
        channel = torch.randint(X.shape[1], (num // 2,), device=X.device)
        tmp = X[first, channel].clone()
        X[first, channel] = X[second, channel]
        X[second, channel] = tmp
        return X, idx


class ChannelMuter(torch.nn.Module):
    """Zero one randomly chosen IFO's signal in each sample with probability ``prob``.

    Args:
        prob: Probability that a sample is muted, in [0, 1].
    """

    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        _check_prob("mute_prob", prob)
        self.prob = prob

    def forward(
        self, X: Float[Tensor, "batch ifo time"]
    ) -> tuple[Float[Tensor, "batch ifo time"], Int[Tensor, " muted"]]:
        """Mute channels in place.

        Args:
            X: Injected kernels, shape ``(batch, num_ifos, time)``.

        Returns:
            ``X`` and the indices (into the batch) of the muted samples.
        """
        idx = _draw(len(X), self.prob, X.device)
        channel = torch.randint(X.shape[1], (len(idx),), device=X.device)
        X[idx, channel] = 0.0
        return X, idx


class GlitchAdder(torch.nn.Module):
    """Add glitches from a bank to raw background windows, independently per IFO.

    Each (sample, IFO) gets a glitch with probability ``prob``; with ``one_ifo`` a sample is
    chosen with probability ``prob`` and one random IFO of it gets the glitch, so glitches are
    never coincident. A glitch is a random row of that IFO's bank (coloured strain, made by
    ``aframe-data glitches``), added at a uniformly random position wholly inside the window.
    Labels do not change: a glitch is noise, on a noise or a signal sample alike.

    Args:
        bank: ``(num_ifos, num_glitches, size)`` glitch strain (``None``: no glitches).
        prob: Probability per sample and IFO (per sample with ``one_ifo``), in [0, 1].
        one_ifo: At most one IFO per sample.
    """

    def __init__(self, bank: Tensor | None = None, prob: float = 0.0, one_ifo: bool = False):
        super().__init__()
        _check_prob("glitch_prob", prob)
        self.prob, self.one_ifo = prob, one_ifo
        self.register_buffer("bank", bank, persistent=False)

    def forward(
        self, X: Float[Tensor, "batch ifo time"]
    ) -> tuple[Float[Tensor, "batch ifo time"], Tensor]:
        """Add glitches in place.

        Returns:
            ``X`` and a boolean ``(batch, ifo)`` mask of where a glitch was added.
        """
        batch, num_ifos, size = X.shape
        mask = torch.zeros((batch, num_ifos), dtype=torch.bool, device=X.device)
        if self.bank is None or self.prob == 0:
            return X, mask
        if self.one_ifo:
            chosen = (torch.rand(batch, device=X.device) < self.prob).nonzero().flatten()
            ifo = torch.randint(num_ifos, (len(chosen),), device=X.device)
            mask[chosen, ifo] = True
        else:
            mask = torch.rand((batch, num_ifos), device=X.device) < self.prob
        b, i = mask.nonzero(as_tuple=True)
        if len(b) == 0:
            return X, mask
        bank = self.bank
        if bank.shape[-1] > size:  # rows longer than the window: their middle
            cut = (bank.shape[-1] - size) // 2
            bank = bank[..., cut : cut + size]
        length = bank.shape[-1]
        rows = torch.randint(bank.shape[1], (len(b),), device=X.device)
        offsets = torch.randint(size - length + 1, (len(b),), device=X.device)
        # one slice add per glitch (a few per batch): ~80x faster on CPU than one advanced-index
        # add, whose (glitches, length) index tensors cost more than the additions themselves
        for k, j, row, at in zip(*(t.tolist() for t in (b, i, rows, offsets)), strict=True):
            X[k, j, at : at + length] += bank[j, row].to(X.dtype)
        return X, mask
