"""Streaming preprocessing: the training path's PSD policy and whitening, for a long stream.

Windows: window ``k`` of a stream is the ``kernel_length + fduration`` seconds starting at
sample ``k * stride``; whitening crops ``fduration / 2`` from each side, so its kernel ends at
sample ``kernel_end + k * stride``. The first window starts at the stream's first sample: the
whole stream is searched but ``fduration / 2`` at each end.

PSDs (the model's :class:`~aframe_lib.data.psd.PsdPolicy`): one every ``cadence`` samples
``C``. PSD ``b`` is the Welch estimate of samples ``[b C, b C + P)`` (``P`` the PSD length) and
whitens the windows starting in ``[b C + P, (b + 1) C + P)``: each window's PSD ends ``0`` to
``C`` samples before it, the ages training draws (:class:`~aframe_lib.data.preprocessing.
PsdEstimator`). The windows that start before ``P`` (the first ``psd.length`` seconds, where no
PSD of past data exists yet) use PSD 0, the data that follows the stream's start. ``cadence: 0``
means one PSD per window, ending exactly where the window starts.

Why it is cheap: consecutive PSDs share Welch segments. The STFT of a chunk is computed once
with a hop of ``gcd(C, welch_hop)`` and each PSD is the median (numpy's introselect on a CPU)
of its own columns; ml4gw's mean removal (per PSD stretch with ``fast``, per segment otherwise)
only changes the FFT bins where the window's own FFT is non-zero (bins 0 and 1 of a Hann
window), so those are corrected per PSD. The truncated whitening filter of each PSD (ml4gw
``truncate_inverse_power_spectrum``) is built once and applied to all its windows (ml4gw
``normalize_by_psd``): the same arithmetic as ml4gw ``Whiten`` per window (tested).
"""

# ruff: noqa: F722 - jaxtyping shapes ("batch ifo time") are not forward references
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from jaxtyping import Float, Float32, Float64
from ml4gw.transforms import SpectralDensity, Whiten
from torch import Tensor

from aframe_lib.data.preprocessing import apply_filters, median_bias, median_last, whitening_filters
from aframe_lib.data.psd import PsdPolicy, coerce_policy


class StreamingWhitener(torch.nn.Module):
    """Whitened windows of a multi-IFO stream, PSDs as the model's policy prescribes.

    Args:
        sample_rate: Hz.
        kernel_length: seconds the network sees.
        fduration: seconds of whitening filter; half is cropped from each side.
        psd: the PSD policy (a :class:`PsdPolicy` or its dict, as in ``model.json``).
        stride: samples between consecutive windows (``sample_rate / inference_sampling_rate``).
        highpass: Hz; whitening zeroes frequencies below it. ``None``: no highpass.
        lowpass: Hz; whitening zeroes frequencies above it. ``None``: no lowpass.
        fast: remove each PSD stretch's mean once (ml4gw's ``fast``) rather than per Welch
            segment; ``None`` means ``highpass is not None``, as in training.
        psd_batch: PSDs computed at once (bounds memory: ``psd_batch * num_ifos * freqs *
            segments`` float32 values).
    """

    def __init__(
        self,
        sample_rate: float,
        kernel_length: float,
        fduration: float,
        psd: PsdPolicy | dict,
        stride: int,
        highpass: float | None = None,
        lowpass: float | None = None,
        fast: bool | None = None,
        psd_batch: int = 32,
    ) -> None:
        super().__init__()
        policy = coerce_policy(psd, "psd")
        policy.check(kernel_length, fduration, where="psd")
        self.policy = policy.resolve(kernel_length, fduration)
        self.sample_rate = sample_rate
        self.kernel_size = int(round(kernel_length * sample_rate))
        self.window_size = int(round((kernel_length + fduration) * sample_rate))
        self.psd_size = self.policy.psd_size(sample_rate)
        self.pad = int(fduration * sample_rate / 2)  # what ml4gw's Whiten crops per side
        self.stride = int(stride)
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 sample, got {stride}")
        self.cadence = self.policy.cadence_size(sample_rate) or self.stride
        self.average = self.policy.average
        self.fast = highpass is not None if fast is None else fast
        self.psd_batch = psd_batch
        self.spectral_density = SpectralDensity(
            sample_rate, self.policy.fftlength, self.policy.overlap, average=self.average,
            fast=self.fast,
        )  # fmt: skip
        sd = self.spectral_density
        self.num_segments = (self.psd_size - sd.nperseg) // sd.nstride + 1
        self.hop = math.gcd(self.cadence, sd.nstride)
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
    def kernel_end(self) -> int:
        """Index of the sample just after window 0's kernel (add ``k * stride`` for window k)."""
        return self.pad + self.kernel_size

    @property
    def min_size(self) -> int:
        """Samples a stream needs for one window: a PSD and a window."""
        return max(self.psd_size, self.window_size)

    def num_windows(self, size: int) -> int:
        """Windows in a stream of ``size`` samples."""
        if size < self.min_size:
            return 0
        return (size - self.window_size) // self.stride + 1

    def psd_of(self, k: int) -> int:
        """Index of the PSD that whitens window ``k``."""
        return max(0, (k * self.stride - self.psd_size) // self.cadence)

    def read_range(self, first: int, last: int) -> tuple[int, int]:
        """Samples ``[start, stop)`` of the stream that windows ``[first, last)`` need."""
        start = self.psd_of(first) * self.cadence
        stop = max((last - 1) * self.stride + self.window_size,
                   self.psd_of(last - 1) * self.cadence + self.psd_size)  # fmt: skip
        return start, stop

    def forward(self, X: Float[Tensor, "ifo time"]) -> Float32[Tensor, "window ifo kernel"]:
        """All whitened windows of ``X``.

        Args:
            X: ``(num_ifos, size)`` strain, the stream from its start.

        Returns:
            ``(num_windows(size), num_ifos, kernel_size)`` float32; window ``k``'s kernel ends
            at sample ``kernel_end + k * stride`` of ``X``.
        """
        batches = list(self.batches(X, self.psd_batch))
        if not batches:
            return X.new_empty((0, X.shape[0], self.kernel_size))
        return torch.cat(batches)

    def batches(
        self,
        X: Float[Tensor, "ifo time"],
        batch_size: int,
        first: int = 0,
        last: int | None = None,
        offset: int = 0,
    ) -> Iterator[Float32[Tensor, "window ifo kernel"]]:
        """Whitened windows ``[first, last)`` in batches of ``batch_size``.

        Args:
            X: ``(num_ifos, n)`` samples ``[offset, offset + n)`` of the stream; they must
                include :meth:`read_range` of the windows.
            batch_size: windows per yielded batch.
            first: first window (stream numbering).
            last: one past the last window; ``None``: every window that ``X`` completes.
            offset: stream index of ``X``'s first sample.
        """
        if last is None:
            last = self.num_windows(offset + X.shape[-1])
        if last <= first:
            return
        start, stop = self.read_range(first, last)
        if start < offset or stop > offset + X.shape[-1]:
            raise ValueError(
                f"windows [{first}, {last}) need stream samples [{start}, {stop}); got "
                f"[{offset}, {offset + X.shape[-1]})"
            )
        b0, b1 = self.psd_of(first), self.psd_of(last - 1) + 1
        w0 = first * self.stride - offset
        windows = X[:, w0:].unfold(-1, self.window_size, self.stride).transpose(0, 1)
        # filters are made as the batches need them, ``psd_batch`` PSDs at a time: a scoring
        # network running beside the caller (the search's ONNX backend) never waits for a
        # whole chunk's PSDs, and memory holds the filters of about one batch
        blocks: list[tuple[int, Tensor]] = []  # (first PSD, its filters), in order
        made = b0
        for k in range(first, last, batch_size):
            end = min(k + batch_size, last)
            lo, hi = self.psd_of(k), self.psd_of(end - 1) + 1
            while made < hi:
                blocks.append(
                    (made, self._filters(X, made, min(made + self.psd_batch, b1), offset))
                )
                made = min(made + self.psd_batch, b1)
            while blocks[0][0] + len(blocks[0][1]) <= lo:
                blocks.pop(0)
            base = blocks[0][0]
            filters = blocks[0][1] if len(blocks) == 1 else torch.cat([f for _, f in blocks])
            which = torch.tensor([self.psd_of(i) - base for i in range(k, end)], device=X.device)
            yield apply_filters(windows[k - first : end - first], filters[which], self.whitener)

    def psds(
        self, X: Float[Tensor, "ifo time"], b0: int, b1: int, offset: int = 0
    ) -> Float64[Tensor, "psd ifo freq"]:
        """PSDs ``[b0, b1)`` (samples ``[b C, b C + P)``) of the stream, ``(b1 - b0, num_ifos,
        freqs)`` float64; ``X`` holds stream samples from ``offset`` on."""
        sd = self.spectral_density
        x = X[:, b0 * self.cadence - offset : (b1 - 1) * self.cadence + self.psd_size - offset]
        x = x.double()
        stft = torch.stft(
            x, sd.nperseg, self.hop, window=sd.window.to(x), center=False, return_complex=True
        )  # (num_ifos, freqs, columns)
        if not self.fast:
            # per-segment mean: a per-column correction, the same for every PSD
            csum = torch.nn.functional.pad(x.cumsum(-1), (1, 0))
            starts = torch.arange(stft.shape[-1], device=x.device) * self.hop
            means = (csum[:, starts + sd.nperseg] - csum[:, starts]) / sd.nperseg
            stft[:, self.mean_bins] -= means[:, None, :] * self.window_fft[None, :, None]
        power = stft.real.square() + stft.imag.square()
        # float32 of unit-peak powers: strain powers (~1e-42) underflow float32, O(1) do not,
        # and float32 halves the cost of the medians
        scale = power.amax((1, 2), keepdim=True).clamp_min(torch.finfo(power.dtype).tiny)
        power = (power / scale).float()
        b = torch.arange(b1 - b0, device=x.device)
        j = torch.arange(self.num_segments, device=x.device)
        columns = (b[:, None] * self.cadence + j[None] * sd.nstride) // self.hop  # (B, nseg)
        segs = power[:, :, columns]  # (num_ifos, freqs, B, nseg)
        if self.fast:
            # ml4gw's fast estimate removes the mean of each PSD's whole stretch
            csum = torch.nn.functional.pad(x.cumsum(-1), (1, 0))
            starts = b * self.cadence
            means = (csum[:, starts + self.psd_size] - csum[:, starts]) / self.psd_size
            fixed = stft[:, self.mean_bins][:, :, columns] - (
                means[:, None, :, None] * self.window_fft[None, :, None, None]
            )
            fixed = (fixed.real.square() + fixed.imag.square()) / scale[..., None]
            for i, bin_ in enumerate(self.mean_bins.tolist()):
                segs[:, bin_] = fixed[:, i].float()
        n = self.num_segments
        if self.average == "mean":
            psd = segs.double().mean(-1)
        else:
            psd = median_last(segs).double() / median_bias(n)
        stop = None if sd.nperseg % 2 else -1
        psd[:, 1:stop] *= 2  # one-sided
        psd = psd * (scale * sd.scale.to(scale))
        return psd.permute(2, 0, 1)  # (B, num_ifos, freqs)

    def _filters(self, X: Tensor, b0: int, b1: int, offset: int) -> Tensor:
        """Whitening filters of PSDs ``[b0, b1)`` for windows of ``window_size`` samples."""
        return whitening_filters(self.psds(X, b0, b1, offset), self.whitener, self.window_size)
