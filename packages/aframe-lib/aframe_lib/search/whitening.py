"""Streaming preprocessing: the training path's whitening, for every window of a long stream.

For a window whose kernel ends at sample ``e``, training (:class:`~aframe_lib.data.base.
AframeDataset`) does three things: estimate a PSD (ml4gw ``SpectralDensity``: Welch, Hann
window, median average) from the ``psd_length`` seconds before the window; whiten the
``kernel_length + fduration`` seconds ``[e - kernel - fduration/2, e + fduration/2)`` with that
PSD (ml4gw ``Whiten``: the same ``fduration`` and ``highpass``); crop ``fduration/2`` from each
side. :class:`StreamingWhitener` does exactly that for windows every ``stride`` samples.

Why it is cheap: consecutive windows' Welch segments overlap. The STFT of the whole chunk is
computed once with a hop of ``gcd(stride, welch_hop)``, and each window's PSD is the median of
its own columns. The mean removal ml4gw applies (per series with ``fast``, per segment
otherwise) only changes the FFT bins where the window's own FFT is non-zero (bins 0 and 1 of a
Hann window), so those bins are corrected per window and every other bin is shared. The result
equals ml4gw's per-window estimate in float64 (tested against the training path).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from ml4gw.transforms import SpectralDensity, Whiten
from torch import Tensor

from aframe_lib.data.preprocessing import median_bias


class StreamingWhitener(torch.nn.Module):
    """Whitened windows of a multi-IFO stream, each with the PSD of the data just before it.

    Args:
        sample_rate: Hz.
        kernel_length: seconds the network sees.
        fduration: seconds of whitening filter; half is cropped from each side.
        psd_length: seconds of data before each window whose PSD whitens it.
        stride: samples between consecutive windows (``sample_rate / inference_sampling_rate``).
        fftlength: Welch segment length (s); ``None`` means ``kernel_length + fduration``
            (the training default).
        overlap: Welch overlap (s); ``None`` means ``fftlength / 2``.
        highpass: Hz; whitening zeroes frequencies below it. ``None``: no highpass.
        lowpass: Hz; whitening zeroes frequencies above it. ``None``: no lowpass.
        average: ``"median"`` (training's) or ``"mean"``.
        fast: remove each PSD segment's mean once over the whole ``psd_length`` (ml4gw's
            ``fast``) rather than per Welch segment; ``None`` means ``highpass is not None``,
            as in training.
        psd_batch: windows whose PSDs are computed at once (bounds memory:
            ``psd_batch * num_ifos * freqs * segments`` float64 values).
    """

    def __init__(
        self,
        sample_rate: float,
        kernel_length: float,
        fduration: float,
        psd_length: float,
        stride: int,
        fftlength: float | None = None,
        overlap: float | None = None,
        highpass: float | None = None,
        lowpass: float | None = None,
        average: str = "median",
        fast: bool | None = None,
        psd_batch: int = 32,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.kernel_size = int(round(kernel_length * sample_rate))
        self.window_size = int(round((kernel_length + fduration) * sample_rate))
        self.psd_size = int(round(psd_length * sample_rate))
        self.pad = int(fduration * sample_rate / 2)  # what ml4gw's Whiten crops per side
        self.stride = int(stride)
        self.average = average
        self.fast = highpass is not None if fast is None else fast
        self.psd_batch = psd_batch
        fftlength = fftlength or kernel_length + fduration
        self.spectral_density = SpectralDensity(
            sample_rate, fftlength, overlap, average=average, fast=self.fast
        )
        sd = self.spectral_density
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 sample, got {stride}")
        if sd.nperseg > self.psd_size:
            raise ValueError(
                f"psd_length={psd_length} s is shorter than one FFT of fftlength={fftlength} s; "
                "raise psd_length"
            )
        self.num_segments = (self.psd_size - sd.nperseg) // sd.nstride + 1
        self.hop = math.gcd(self.stride, sd.nstride)
        self.whitener = Whiten(fduration, sample_rate, highpass, lowpass)
        window = sd.window.double()
        window_fft = torch.fft.rfft(window)
        # bins where removing a mean changes the FFT: where the window's own FFT is non-zero
        # (bins 0 and 1 of a Hann window; the rest is float32 rounding of the window, ~1e-8 of
        # the peak, whose effect on the PSD is far below float32 precision)
        bins = (window_fft.abs() > 1e-6 * window_fft.abs().max()).nonzero().squeeze(1)
        self.register_buffer("window_fft", window_fft[bins], persistent=False)
        self.register_buffer("mean_bins", bins, persistent=False)

    @property
    def sample_size(self) -> int:
        """Samples each window needs: PSD data, then kernel plus whitening padding."""
        return self.psd_size + self.window_size

    @property
    def kernel_end(self) -> int:
        """Index of the sample just after window 0's kernel (add ``k * stride`` for window k)."""
        return self.psd_size + self.pad + self.kernel_size

    def num_windows(self, size: int) -> int:
        """Windows in a stream of ``size`` samples."""
        return max(0, (size - self.sample_size) // self.stride + 1)

    def forward(self, X: Tensor) -> Tensor:
        """All whitened windows of ``X``.

        Args:
            X: ``(num_ifos, size)`` strain.

        Returns:
            ``(num_windows(size), num_ifos, kernel_size)`` float32; window ``k``'s kernel ends
            at sample ``kernel_end + k * stride`` of ``X``.
        """
        batches = list(self.batches(X, self.psd_batch))
        if not batches:
            return X.new_empty((0, X.shape[0], self.kernel_size))
        return torch.cat(batches)

    def batches(self, X: Tensor, batch_size: int) -> Iterator[Tensor]:
        """:meth:`forward` in batches of ``batch_size`` windows (the STFT is computed once)."""
        num = self.num_windows(X.shape[-1])
        if num == 0:
            return
        x = X.double()
        power, scale, corrected = self._stft(x, num)
        csum = torch.nn.functional.pad(x.cumsum(-1), (1, 0)) if corrected is not None else None
        windows = X[:, self.psd_size :].unfold(-1, self.window_size, self.stride)
        windows = windows.transpose(0, 1)  # (num, num_ifos, window_size)
        for first in range(0, num, batch_size):
            last = min(first + batch_size, num)
            psds = torch.cat(
                [
                    self._psds(power, scale, corrected, csum, k, min(k + self.psd_batch, last))
                    for k in range(first, last, self.psd_batch)
                ]
            )
            yield self.whitener(windows[first:last], psds).float()

    def _stft(self, x: Tensor, num: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """STFT power of every column (hop ``self.hop``), its scale, and the mean-bin columns.

        The power is returned as float32 divided by ``scale`` (``(num_ifos, 1, 1)``, float64):
        strain powers (~1e-42) underflow float32, powers of order one do not, and float32 halves
        the cost of the per-window medians.
        """
        sd = self.spectral_density
        span = (num - 1) * self.stride + self.psd_size
        stft = torch.stft(
            x[:, :span],
            sd.nperseg,
            self.hop,
            window=sd.window.to(x),
            center=False,
            return_complex=True,
        )  # (num_ifos, freqs, columns)
        if not self.fast:
            # per-segment mean: a per-column correction, the same for every window
            csum = torch.nn.functional.pad(x[:, :span].cumsum(-1), (1, 0))
            starts = torch.arange(stft.shape[-1], device=x.device) * self.hop
            means = (csum[:, starts + sd.nperseg] - csum[:, starts]) / sd.nperseg
            stft[:, self.mean_bins] -= means[:, None, :] * self.window_fft[None, :, None]
        power = stft.real.square() + stft.imag.square()
        scale = power.amax((1, 2), keepdim=True).clamp_min(torch.finfo(power.dtype).tiny)
        power = (power / scale).float()
        return power, scale, None if not self.fast else stft[:, self.mean_bins]

    def _psds(
        self,
        power: Tensor,
        scale: Tensor,
        corrected: Tensor | None,
        csum: Tensor | None,
        k0: int,
        k1: int,
    ) -> Tensor:
        """PSDs of windows ``[k0, k1)``: ``(k1 - k0, num_ifos, freqs)`` float64."""
        sd = self.spectral_density
        device = power.device
        k = torch.arange(k0, k1, device=device)
        j = torch.arange(self.num_segments, device=device)
        columns = (k[:, None] * self.stride + j[None] * sd.nstride) // self.hop  # (K, nseg)
        segs = power[:, :, columns]  # (num_ifos, freqs, K, nseg)
        if corrected is not None:
            # ml4gw's fast estimate removes the mean of each window's whole PSD stretch
            starts = k * self.stride
            means = (csum[:, starts + self.psd_size] - csum[:, starts]) / self.psd_size
            fixed = corrected[:, :, columns] - (
                means[:, None, :, None] * self.window_fft[None, :, None, None]
            )
            fixed = (fixed.real.square() + fixed.imag.square()) / scale[..., None]
            for i, b in enumerate(self.mean_bins.tolist()):
                segs[:, b] = fixed[:, i].float()
        n = self.num_segments
        if self.average == "mean":
            psd = segs.double().mean(-1)
        elif n % 2:
            psd = segs.median(-1).values.double() / median_bias(n)
        else:  # numpy's median of an even count: the mean of the two middle values
            top = segs.topk(n // 2 + 1, -1).values[..., -2:].double()
            psd = top.mean(-1) / median_bias(n)
        stop = None if sd.nperseg % 2 else -1
        psd[:, 1:stop] *= 2  # one-sided
        psd = psd * (scale * sd.scale.to(scale))
        return psd.permute(2, 0, 1)  # (K, num_ifos, freqs)
