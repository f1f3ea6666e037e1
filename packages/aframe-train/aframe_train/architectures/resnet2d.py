"""Supervised frequency-domain ResNet: torchvision's 2D ResNet family with one output logit."""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch import Tensor

from .base import SupervisedArchitecture


class SupervisedSpectrogramResNet(SupervisedArchitecture):
    """torchvision ResNet over spectrograms ``(batch, num_ifos, H, W)`` -> ``(batch, 1)``.

    The network is torchvision's own builder (``weights=None``: randomly initialised, nothing
    is downloaded) with one output class; only its first convolution is replaced, to take one
    input channel per IFO instead of three colours. Any ``H, W`` works (the head pools
    adaptively), but each stage halves them: 32x downsampling in all.

    Args:
        num_ifos: Input channels (linked from ``data.ifos``).
        sample_rate: Hz (linked from ``data.sample_rate``; unused, the input is a spectrogram).
        kernel_length: Seconds (linked from ``data.kernel_length``; unused).
        depth: Which torchvision ResNet: ``resnet18``/``resnet34`` (basic blocks) or
            ``resnet50`` (bottlenecks, 4x wider output).
        norm_groups: Groups of the GroupNorm layers that replace BatchNorm (batch statistics
            differ between training batches, with injected signals, and searches on
            background); ``0`` keeps torchvision's BatchNorm. Must divide every stage's
            width (64, 128, 256, 512; times 4 in ``resnet50``).
        zero_init_residual: Start the last normalisation of every residual block at zero, so
            each block begins as the identity (torchvision's option).
    """

    def __init__(
        self,
        num_ifos: int,
        sample_rate: float,
        kernel_length: float,
        depth: Literal["resnet18", "resnet34", "resnet50"] = "resnet18",
        norm_groups: int = 16,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(num_ifos, sample_rate, kernel_length)
        # a required dependency of aframe-train, imported here because it takes seconds and
        # only this architecture needs it
        from torchvision import models

        if depth not in ("resnet18", "resnet34", "resnet50"):
            raise ValueError(f"depth must be resnet18, resnet34 or resnet50, got {depth!r}")
        if norm_groups < 0 or (norm_groups and 64 % norm_groups):
            raise ValueError(f"norm_groups={norm_groups} must be 0 or divide 64")
        kwargs = {}
        if norm_groups:
            kwargs["norm_layer"] = partial(torch.nn.GroupNorm, norm_groups)  # (channels) -> norm
        self.resnet = getattr(models, depth)(
            weights=None, num_classes=1, zero_init_residual=zero_init_residual, **kwargs
        )
        old = self.resnet.conv1
        self.resnet.conv1 = torch.nn.Conv2d(
            num_ifos,
            old.out_channels,
            kernel_size=old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            bias=False,
        )
        # the same initialisation torchvision gives its own first convolution
        torch.nn.init.kaiming_normal_(self.resnet.conv1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, X: Tensor) -> Tensor:
        """Args:
            X: Spectrograms ``(batch, num_ifos, H, W)``.

        Returns:
            Logits ``(batch, 1)``.
        """
        return self.resnet(X)
