"""Decimation of strain to the model's rate as the search streams it (torchaudio's resampler).

Foreign data (a mock-data-challenge file at 2048 Hz, open data at 4096 or 16384 Hz) rarely come
at the rate a model was trained at. :func:`resample_channels` reads a chunk of a resampled
:class:`~aframe_lib.search.strain.Span` and low-passes and decimates it with
``torchaudio.transforms.Resample``'s filter (Kaiser-windowed sinc, torchaudio's ``kaiser_best``
settings), applied by FFT convolution (:func:`decimate`), on the search's device, in float64.

No chunk boundary leaves a trace: output sample ``j`` of torchaudio's polyphase filter uses the
stored samples ``[j q - width, j q + width + q)``, so each chunk is read with that margin (cut
only at the span's own ends, where torchaudio's zero padding applies exactly as when the whole
span is resampled at once). The result equals ``Resample`` of the whole span to float64
rounding, whatever the chunking.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import h5py
import numpy as np
import torch

if TYPE_CHECKING:
    from .strain import Span

# torchaudio's "kaiser_best" (resampy's): stopband ~ -100 dB, passband to 0.9476 of Nyquist
KAISER_BEST = {
    "resampling_method": "sinc_interp_kaiser",
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "beta": 14.769656459379492,
}


@functools.lru_cache(maxsize=8)
def resampler(factor: int, device: str) -> torch.nn.Module:
    """A float64 ``Resample(factor -> 1)`` on ``device`` (cached: its kernel is built once)."""
    from torchaudio.transforms import Resample

    return Resample(factor, 1, dtype=torch.float64, **KAISER_BEST).to(device)


def decimate(x: torch.Tensor, factor: int, device: str = "cpu") -> torch.Tensor:
    """``Resample(factor -> 1)(x)`` of ``(channels, size)`` ``x``, its FIR applied by FFT.

    torchaudio applies its kernel with a strided ``conv1d``, which on a CPU runs only ~50x real
    time for 2048 Hz strain; the same kernel convolved by a power-of-two FFT, then decimated,
    gives the same samples (to float64 rounding, tested) several times faster.
    """
    r = resampler(factor, device)
    kernel = r.kernel[0, 0].flip(-1)  # conv1d correlates: convolve with the reversed kernel
    padded = torch.nn.functional.pad(x, (r.width, r.width + factor))
    n = 1 << (padded.shape[-1] + len(kernel) - 2).bit_length()  # >= the full convolution
    full = torch.fft.irfft(torch.fft.rfft(padded, n) * torch.fft.rfft(kernel, n), n)
    first = len(kernel) - 1  # the first output that sees only padded data: conv1d's sample 0
    return full[:, first::factor][:, : math.ceil(x.shape[-1] / factor)]


def margin(factor: int) -> int:
    """Stored samples read beyond each side of a chunk (a multiple of ``factor``)."""
    width = resampler(factor, "cpu").width
    return math.ceil((width + factor) / factor) * factor


def resample_channels(
    span: Span, start: int, stop: int, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Samples ``[start, stop)`` of a resampled span: float32 ``(num_ifos, stop - start)``.

    Args:
        span: a span whose channels have ``factor > 1`` (see :func:`.strain.resampled`).
        start: first span sample (model rate).
        stop: one past the last.
        device: where the filter runs.
    """
    device = torch.device(device)
    q = span.factor
    pad = margin(q)
    stored = span.size * q  # the stored stretch this span resamples: zero beyond it
    lo = max(0, start * q - pad)
    hi = min(stored, stop * q + pad)
    x = np.empty((len(span.channels), hi - lo), np.float32)
    for row, c in enumerate(span.channels):
        first = c.origin + c.start * q
        with h5py.File(c.path, "r") as f:
            x[row] = f[c.dataset][first + lo : first + hi]
    key = f"{device.type}:{device.index}" if device.index is not None else device.type
    y = decimate(torch.from_numpy(x).to(device, torch.float64), q, key)
    skip = start - lo // q
    return y[:, skip : skip + stop - start].float()
