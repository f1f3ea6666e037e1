"""Network architectures. Every one takes ``num_ifos`` first (then ``sample_rate`` and
``kernel_length``), so the CLI links them from the data section instead of repeating them."""

from .autoencoder import GroupedAutoencoder
from .base import Architecture, SupervisedArchitecture
from .resnet1d import SupervisedTimeDomainResNet
from .resnet2d import SupervisedSpectrogramResNet

__all__ = [
    "Architecture",
    "GroupedAutoencoder",
    "SupervisedArchitecture",
    "SupervisedSpectrogramResNet",
    "SupervisedTimeDomainResNet",
]
