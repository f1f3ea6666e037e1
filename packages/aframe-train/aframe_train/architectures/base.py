"""The architecture contract that the CLI's argument links rely on."""

from __future__ import annotations

import torch


class Architecture(torch.nn.Module):
    """Base of every aframe network.

    Subclasses take ``num_ifos, sample_rate, kernel_length`` as their first three arguments
    (in that order), even when they ignore some of them: ``aframe-train`` fills them from the
    data section (``data.ifos``, ``data.sample_rate``, ``data.kernel_length``).

    Args:
        num_ifos: Number of input channels (detectors).
        sample_rate: Hz.
        kernel_length: Seconds of input.
    """

    def __init__(self, num_ifos: int, sample_rate: float, kernel_length: float) -> None:
        super().__init__()
        self.num_ifos = num_ifos
        self.sample_rate = sample_rate
        self.kernel_length = kernel_length

    @property
    def kernel_size(self) -> int:
        return int(round(self.sample_rate * self.kernel_length))


class SupervisedArchitecture(Architecture):
    """Maps ``(batch, num_ifos, ...)`` to one logit per sample, ``(batch, 1)``."""
