"""Supervised time-domain ResNet: ml4gw's 1D ResNet with one output logit."""

from __future__ import annotations

from functools import partial
from typing import Literal

from ml4gw.nn.norm import GroupNorm1D
from ml4gw.nn.resnet.resnet_1d import ResNet1D
from torch import Tensor

from .base import SupervisedArchitecture


class SupervisedTimeDomainResNet(SupervisedArchitecture):
    """ml4gw ``ResNet1D`` over whitened strain ``(batch, num_ifos, kernel_size)`` -> ``(batch, 1)``.

    Args:
        num_ifos: Input channels (linked from ``data.ifos``).
        sample_rate: Hz (linked from ``data.sample_rate``).
        kernel_length: Seconds (linked from ``data.kernel_length``).
        layers: Residual blocks per stage, e.g. ``[3, 4, 6, 3]`` (ResNet-34 shaped).
        kernel_size: Convolution kernel size, in samples.
        norm_groups: Groups of the GroupNorm layers (ml4gw ``GroupNorm1D``); ``0`` uses
            ml4gw's default normalisation. The first stage has 64 channels, doubled per stage.
        stride_type: Per stage after the first, ``"stride"`` or ``"dilation"``.
    """

    def __init__(
        self,
        num_ifos: int,
        sample_rate: float,
        kernel_length: float,
        layers: list[int] = [3, 4, 6, 3],  # noqa: B006 - shown by jsonargparse
        kernel_size: int = 3,
        norm_groups: int = 16,
        stride_type: list[Literal["stride", "dilation"]] | None = None,
    ) -> None:
        super().__init__(num_ifos, sample_rate, kernel_length)
        norm_layer = partial(GroupNorm1D, num_groups=norm_groups) if norm_groups else None
        self.resnet = ResNet1D(
            in_channels=num_ifos,
            layers=layers,
            classes=1,
            kernel_size=kernel_size,
            stride_type=stride_type,
            norm_layer=norm_layer,
        )

    def forward(self, X: Tensor) -> Tensor:
        return self.resnet(X)
