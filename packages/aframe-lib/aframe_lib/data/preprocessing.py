"""PSD estimation from the background that precedes each window (ml4gw ``SpectralDensity``)."""

from __future__ import annotations

import torch
from ml4gw.transforms import SpectralDensity
from torch import Tensor


class PsdEstimator(torch.nn.Module):
    """Split each sample into a PSD segment and the window that follows it.

    The PSD of the first ``psd_length`` seconds of each sample is estimated with ml4gw's
    :class:`~ml4gw.transforms.SpectralDensity` (Welch, median average), so the window is later
    whitened with a PSD measured on background that does not contain it (and never contains
    an injection: injection happens after this step).

    Args:
        window_length: Seconds kept for the network input plus whitening padding
            (``kernel_length + fduration``).
        sample_rate: Hz.
        fftlength: Welch segment length, in seconds.
        overlap: Welch overlap, in seconds; ``None`` means ``fftlength / 2``.
        average: ``"median"`` (robust to glitches) or ``"mean"``.
        fast: Use ml4gw's faster estimator that is inexact in the two lowest frequency bins
            (harmless when a highpass removes them).
    """

    def __init__(
        self,
        window_length: float,
        sample_rate: float,
        fftlength: float,
        overlap: float | None = None,
        average: str = "median",
        fast: bool = False,
    ) -> None:
        super().__init__()
        self.window_size = int(round(window_length * sample_rate))
        self.spectral_density = SpectralDensity(
            sample_rate, fftlength, overlap, average=average, fast=fast
        )

    def forward(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Estimate PSDs and return the windows.

        Args:
            X: ``(batch, num_ifos, psd_size + window_size)`` strain.

        Returns:
            ``(batch, num_ifos, window_size)`` windows and their PSDs
            ``(batch, num_ifos, fftlength * sample_rate // 2 + 1)`` (float64).
        """
        split = X.shape[-1] - self.window_size
        if split <= 0:
            raise ValueError(
                f"samples of {X.shape[-1]} points leave no room for a PSD segment before the "
                f"{self.window_size}-sample window"
            )
        background, X = X[..., :split], X[..., split:]
        psds = self.spectral_density(background.double())
        return X, psds
