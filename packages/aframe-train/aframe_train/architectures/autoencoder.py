"""Grouped convolutional autoencoder: one prediction per IFO from that IFO's input alone.

The semi-supervised detector asks each IFO's branch to predict another IFO's strain. That only
means something if no branch ever sees another IFO's data, so every layer here keeps the
``num_ifos`` channel groups apart. ml4gw's ``ConvolutionalAutoencoder`` does this with
``groups=num_ifos`` convolutions (group-major channel order: channels
``[i * C, (i + 1) * C)`` belong to IFO ``i``), per-channel norms and elementwise skip additions.
Its ``ConcatSkipConnect`` does *not* (see :class:`GroupedConcatSkipConnect`), so this module
uses its own concatenation.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from ml4gw.nn.autoencoder import AddSkipConnect, ConvolutionalAutoencoder, SkipConnection
from ml4gw.nn.norm import GroupNorm1D
from torch import Tensor

from .base import Architecture


class GroupedConcatSkipConnect(SkipConnection):
    """Concatenate decoder output and encoder state *within* each IFO's channel group.

    ml4gw 0.8.5's ``ConcatSkipConnect(groups)`` splits the channels into chunks of ``groups``
    channels (``torch.split(X, groups)``) and interleaves them, which lines up with the next
    grouped convolution only when the channels per group are a multiple of ``groups``; with
    the default ``groups=1`` (upstream aframe's config) it stacks all IFOs' decoder channels
    in front of all encoder states, so the IFOs mix. Here both tensors are viewed as
    ``(batch, groups, channels_per_group, time)`` and joined on the per-group axis, so group
    ``i`` of the output is exactly ``[X_i, state_i]``.

    Args:
        groups: Number of channel groups (IFOs).
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def get_out_channels(self, in_channels: int) -> int:
        return 2 * in_channels

    def forward(self, X: Tensor, state: Tensor) -> Tensor:
        X = super().forward(X, state)  # crop/pad time to the state's length
        X = X.unflatten(1, (self.groups, -1))
        state = state.unflatten(1, (self.groups, -1))
        return torch.cat([X, state], dim=2).flatten(1, 2)


class GroupedAutoencoder(Architecture):
    """ml4gw ``ConvolutionalAutoencoder`` with ``groups=num_ifos``: ``(batch, num_ifos, time)``
    -> ``(batch, num_ifos, time)``, where output channel ``i`` depends only on input channel
    ``i`` (bit for bit; checked in ``tests/train/architectures/test_grouped_autoencoder.py``).

    Each stage halves (``stride``) the time axis on the way down and restores it on the way
    up; the last decoder has no activation, so predictions of whitened strain keep their sign.

    Args:
        num_ifos: Input channels and channel groups (linked from ``data.ifos``); at least 2.
        sample_rate: Hz (linked from ``data.sample_rate``).
        kernel_length: Seconds (linked from ``data.kernel_length``).
        encode_channels: Channels *per IFO* of each encoder stage (the convolutions have
            ``num_ifos`` times as many); the last stage is the latent representation.
        kernel_size: Convolution kernel size, in samples.
        stride: Down/upsampling factor of each stage.
        skip_connection: How each decoder stage receives the matching encoder output:
            ``"concat"`` (per-IFO concatenation), ``"add"``, or ``None`` for no skips.
        norm: ``"batch"``: BatchNorm (per channel, so IFOs stay apart; in train mode a
            sample's output depends on the other samples of its batch, never on other IFOs);
            ``"group"``: one GroupNorm group per IFO (per sample, identical in train and eval
            mode); ``None``: no normalisation.
    """

    def __init__(
        self,
        num_ifos: int,
        sample_rate: float,
        kernel_length: float,
        encode_channels: list[int] = [16, 32, 64],  # noqa: B006 - shown by jsonargparse
        kernel_size: int = 7,
        stride: int = 2,
        skip_connection: Literal["concat", "add"] | None = "concat",
        norm: Literal["batch", "group"] | None = "batch",
    ) -> None:
        super().__init__(num_ifos, sample_rate, kernel_length)
        if num_ifos < 2:
            raise ValueError(f"needs at least 2 IFOs to predict one from another, got {num_ifos}")
        skips = {"concat": GroupedConcatSkipConnect(num_ifos), "add": AddSkipConnect(), None: None}
        # GroupNorm1D's groups are contiguous channel blocks, i.e. exactly the IFO groups
        norms = {
            "batch": torch.nn.BatchNorm1d,
            "group": partial(GroupNorm1D, num_groups=num_ifos),
            None: lambda _: torch.nn.Identity(),
        }
        self.autoencoder = ConvolutionalAutoencoder(
            in_channels=num_ifos,
            encode_channels=encode_channels,
            kernel_size=kernel_size,
            stride=stride,
            groups=num_ifos,
            activation=torch.nn.ReLU,
            output_activation=torch.nn.Identity,
            norm=norms[norm],
            decode_channels=num_ifos,
            skip_connection=skips[skip_connection],
        )

    def forward_features(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """The predictions and each IFO's latent representation.

        Args:
            X: ``(batch, num_ifos, time)``.

        Returns:
            ``(batch, num_ifos, time)`` predictions and the deepest encoder output split by
            IFO, ``(batch, num_ifos, encode_channels[-1], time / stride**len(encode_channels))``.
        """
        ae = self.autoencoder
        if ae.skip_connection is None:
            Z, states = ae.encode(X), None
        else:
            Z, states = ae.encode(X, return_states=True)
        prediction = ae.decode(Z, states=states, input_size=X.size(-1))
        return prediction, Z.unflatten(1, (self.num_ifos, -1))

    def forward(self, X: Tensor) -> Tensor:
        return self.forward_features(X)[0]
