"""The spectrogram ResNet architecture (``SupervisedSpectrogramResNet``): shapes, IFO count,
norm layers, pickling."""

from __future__ import annotations

import pickle

import pytest
import torch
from helpers.tiny_data import SAMPLE_RATE

from aframe_train.architectures import SupervisedSpectrogramResNet

SHAPE = [16, 32]  # spectrogram (num_f_bins, num_t_bins)


@pytest.mark.parametrize("depth", ["resnet18", "resnet34", "resnet50"])
def test_architecture_maps_spectrograms_to_one_logit(depth):
    arch = SupervisedSpectrogramResNet(2, SAMPLE_RATE, 1.0, depth=depth)
    assert arch(torch.randn(3, 2, *SHAPE)).shape == (3, 1)


@pytest.mark.parametrize("norm_groups", [0, 8])
def test_architecture_takes_any_number_of_ifos(norm_groups):
    arch = SupervisedSpectrogramResNet(3, SAMPLE_RATE, 1.0, norm_groups=norm_groups)
    assert arch.resnet.conv1.in_channels == 3
    norm = torch.nn.BatchNorm2d if norm_groups == 0 else torch.nn.GroupNorm
    assert isinstance(arch.resnet.bn1, norm)
    arch.eval()  # BatchNorm in eval mode accepts a batch of one
    assert arch(torch.randn(1, 3, *SHAPE)).shape == (1, 1)
    with pytest.raises(RuntimeError):
        arch(torch.randn(2, 2, *SHAPE))  # wrong number of IFO channels


def test_architecture_pickles_and_zero_inits_residuals():
    arch = SupervisedSpectrogramResNet(2, SAMPLE_RATE, 1.0, zero_init_residual=True)
    clone = pickle.loads(pickle.dumps(arch))
    assert clone.resnet.layer1[0].bn2.weight.abs().sum() == 0
