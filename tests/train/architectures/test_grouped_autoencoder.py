"""The grouped autoencoder architecture: each IFO's prediction ignores every other IFO."""

from __future__ import annotations

import pytest
import torch
from ml4gw.nn.autoencoder import ConcatSkipConnect, ConvolutionalAutoencoder

from aframe_train.architectures import GroupedAutoencoder

SAMPLE_RATE, TIME = 128.0, 200  # odd sizes on purpose: stride-2 stages must crop/pad back


def make_arch(num_ifos: int, **kwargs) -> GroupedAutoencoder:
    kwargs.setdefault("encode_channels", [4, 6, 8])  # 4 and 8 are not multiples of 3 IFOs
    return GroupedAutoencoder(num_ifos, SAMPLE_RATE, TIME / SAMPLE_RATE, **kwargs)


# ---------------------------------------------------------------- (a) IFO independence
@pytest.mark.parametrize("num_ifos", [2, 3])
@pytest.mark.parametrize("skip_connection", ["concat", "add", None])
@pytest.mark.parametrize("norm", ["batch", "group", None])
@pytest.mark.parametrize("train", [False, True])
def test_each_ifo_prediction_ignores_every_other_ifo_bit_for_bit(
    num_ifos, skip_connection, norm, train
):
    # in train mode BatchNorm normalises with batch statistics, but per channel, i.e. per IFO:
    # a sample's output then depends on the rest of its batch, still never on another IFO
    arch = make_arch(num_ifos, skip_connection=skip_connection, norm=norm).train(train)
    X = torch.randn(5, num_ifos, TIME)
    with torch.no_grad():
        reference = arch(X)
        for perturbed in range(num_ifos):
            Y = X.clone()
            Y[:, perturbed] = torch.randn(5, TIME) * 3 + 1
            out = arch(Y)
            assert not torch.equal(out[:, perturbed], reference[:, perturbed])
            for other in range(num_ifos):
                if other != perturbed:
                    assert torch.equal(out[:, other], reference[:, other]), (perturbed, other)


def test_per_ifo_features_ignore_other_ifos_too():
    arch = make_arch(3).eval()
    X = torch.randn(4, 3, TIME)
    Y = X.clone()
    Y[:, 1] += 1
    with torch.no_grad():
        (_, a), (_, b) = arch.forward_features(X), arch.forward_features(Y)
    assert a.shape == (4, 3, 8, 25)  # (batch, ifos, encode_channels[-1], TIME / 2**3)
    assert torch.equal(a[:, [0, 2]], b[:, [0, 2]]) and not torch.equal(a[:, 1], b[:, 1])


def test_ml4gw_concat_skip_mixes_ifos_which_is_why_we_have_our_own():
    """ml4gw 0.8.5's ConcatSkipConnect interleaves chunks of ``groups`` channels: IFOs mix
    when the channels per IFO are not a multiple of the number of IFOs (and always with its
    default groups=1). If this starts failing, ml4gw fixed it."""
    for skip in (ConcatSkipConnect(3), ConcatSkipConnect()):
        ae = ConvolutionalAutoencoder(3, [4, 8], 7, 2, groups=3, skip_connection=skip).eval()
        X = torch.randn(2, 3, 64)
        Y = X.clone()
        Y[:, 0] += 1
        with torch.no_grad():
            leaked = not torch.equal(ae(X)[:, 1:], ae(Y)[:, 1:])
        assert leaked
