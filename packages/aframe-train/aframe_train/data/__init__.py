"""Datasets of the concrete detectors: :class:`~aframe_lib.data.AframeDataset` subclasses that
differ only in the ``transform`` applied to whitened strain (and exported with the network).

- :mod:`~aframe_train.data.spectrogram`: Q-transform spectrograms for 2D networks.

The time-domain detector uses :class:`~aframe_lib.data.AframeDataset` itself.
"""

from .spectrogram import QSpectrogram, SpectrogramAframeDataset

__all__ = ["QSpectrogram", "SpectrogramAframeDataset"]
