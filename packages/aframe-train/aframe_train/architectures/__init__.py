"""Network architectures. Every one takes ``num_ifos`` first (then ``sample_rate`` and
``kernel_length``), so the CLI links them from the data section instead of repeating them."""

from .base import Architecture, SupervisedArchitecture
from .resnet1d import SupervisedTimeDomainResNet

__all__ = ["Architecture", "SupervisedArchitecture", "SupervisedTimeDomainResNet"]
