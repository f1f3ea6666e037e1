"""The frequency-domain Dataset: whitened strain -> Q-transform spectrogram, one per IFO.

The spectrogram is the Dataset's :attr:`~aframe_lib.data.AframeDataset.transform`, so it runs on
the training device after whitening and is exported together with the network: the deployed
model still takes whitened strain ``(batch, num_ifos, kernel_size)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ml4gw.transforms import SingleQTransform
from torch import Tensor

from aframe_lib.data import AframeDataset
from aframe_lib.data.config import DataConfigError

from .qmatmul import qtransform_as_matmuls, qtransform_matrices


class QSpectrogram(SingleQTransform):
    """ml4gw's :class:`~ml4gw.transforms.SingleQTransform` with a fixed 4D output.

    ``SingleQTransform.forward`` ends in ``torch.squeeze``, which drops *every* size-1
    dimension: a batch of one sample (or a single IFO) would lose its batch (or channel) axis,
    and a traced export would do the same at inference. This subclass restores
    ``(batch, num_ifos, H, W)`` from the input's own shape (recorded dynamically by
    ``torch.jit.trace``), and drops the per-row tiles that ``SingleQTransform`` keeps on
    ``self.qtiles`` after each call, so no batch stays alive on the device between steps.

    While being exported to ONNX (``torch.onnx.is_in_onnx_export()``) it computes the same
    transform as real matrix products (:mod:`~aframe_train.data.qmatmul`), since ONNX export
    of the FFTs on complex tensors fails. ``aframe_lib.export.export_onnx`` first calls
    :meth:`prepare_onnx_export` (the matrices must be built outside the traced graph), then
    checks the ONNX model against this (FFT) forward with onnxruntime.

    Args:
        duration: Seconds of input (the kernel length).
        sample_rate: Hz.
        spectrogram_shape: ``(num_f_bins, num_t_bins)`` of the output; frequency bins are
            log-spaced over ``frange``, time bins span ``duration``.
        q: Quality factor of the Q tiles.
        frange: ``[f_min, f_max]`` in Hz; ``None`` uses ml4gw's defaults (see
            :class:`SpectrogramAframeDataset`). Copied, never modified in place.
    """

    def __init__(
        self,
        duration: float,
        sample_rate: float,
        spectrogram_shape: tuple[int, int] | list[int],
        q: float = 12.0,
        frange: list[float] | None = None,
    ) -> None:
        # SingleQTransform fills a zero/infinite bound of frange in place: pass a copy
        frange = list(frange) if frange is not None else None
        self.kernel_size = int(round(duration * sample_rate))
        super().__init__(
            duration=duration,
            sample_rate=sample_rate,
            spectrogram_shape=tuple(spectrogram_shape),
            q=q,
            frange=frange,
        )

    def forward(self, X: Tensor) -> Tensor:  # type: ignore[override]
        """Q-transform each IFO of each sample.

        Args:
            X: Whitened strain, ``(batch, num_ifos, kernel_size)``.

        Returns:
            Median-normalised tile energies ``(batch, num_ifos, num_f_bins, num_t_bins)``,
            float32.
        """
        if torch.onnx.is_in_onnx_export():
            return self.forward_matmul(X)
        out = super().forward(X).reshape(X.shape[0], X.shape[1], *self.spectrogram_shape)
        self.qtiles = None
        return out

    def prepare_onnx_export(self, dtype: torch.dtype = torch.float32) -> None:
        """Build the matrices of :meth:`forward_matmul` for ``kernel_size`` inputs (not traced)."""
        self._matrix_cache(self.kernel_size, dtype, self.qtile_transforms[0].window.device)

    def _matrix_cache(self, size: int, dtype: torch.dtype, device: torch.device) -> dict:
        key = (size, dtype, device)
        if getattr(self, "_matrices_key", None) != key:  # built once per size/dtype/device
            cast = {torch.long: torch.long, torch.float64: dtype}
            matrices = qtransform_matrices(self, size)
            self._matrices = {
                name: [m.to(device, cast[m.dtype]) for m in ms] for name, ms in matrices.items()
            }
            self._matrices_key = key
        return self._matrices

    def forward_matmul(self, X: Tensor) -> Tensor:
        """:meth:`forward` as real matrix products (ONNX-exportable); same input and output."""
        matrices = self._matrix_cache(X.shape[-1], X.dtype, X.device)
        return qtransform_as_matmuls(X, matrices, *self.spectrogram_shape)


class SpectrogramAframeDataset(AframeDataset):
    """:class:`~aframe_lib.data.AframeDataset` whose samples are Q-transform spectrograms.

    Batches are ``(batch, num_ifos, num_f_bins, num_t_bins)`` float32 (training, and
    ``background``/``foreground`` in validation); every other argument is
    :class:`~aframe_lib.data.AframeDataset`'s, passed through by keyword.

    Args:
        data_dir: See :class:`~aframe_lib.data.AframeDataset`.
        q: Quality factor of the Q-transform (dimensionless; centre frequency over
            bandwidth). It must stay below ``pi * kernel_length * sample_rate / 50 - sqrt(11)``
            (about 29 for 1 s at 512 Hz), checked when the Dataset is built.
        spectrogram_shape: ``[num_f_bins, num_t_bins]`` of each IFO's spectrogram: frequency
            bins log-spaced over ``frange``, time bins spanning ``kernel_length``.
        frange: ``[f_min, f_max]`` in Hz covered by the spectrogram. ``None`` (or a bound of 0
            / ``.inf``) uses ml4gw's defaults, ``f_min = 50 q / (2 pi kernel_length)`` (about
            95 Hz for q=12 and 1 s, above most of a BBH inspiral) and
            ``f_max = sample_rate / 2 / (1 + sqrt(11) / q)``; give it explicitly, e.g.
            ``[highpass, f_max]``, to keep low frequencies.
        **kwargs: The remaining :class:`~aframe_lib.data.AframeDataset` arguments.
    """

    def __init__(
        self,
        data_dir: str,
        q: float = 12.0,
        spectrogram_shape: list[int] = [64, 128],  # noqa: B006 - shown by jsonargparse
        frange: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir, **kwargs)
        _check_spectrogram_args(q, spectrogram_shape, frange, self.kernel_length, self.sample_rate)
        self.q = q
        self.spectrogram_shape = list(spectrogram_shape)
        self.frange = None if frange is None else list(frange)
        self.transform = QSpectrogram(
            duration=self.kernel_length,
            sample_rate=self.sample_rate,
            spectrogram_shape=self.spectrogram_shape,
            q=q,
            frange=self.frange,
        )


def _check_spectrogram_args(
    q: float,
    spectrogram_shape: list[int],
    frange: list[float] | None,
    kernel_length: float,
    sample_rate: float,
) -> None:
    """Name the config field on bad values (ml4gw's own errors name neither field nor fix)."""
    max_q = math.pi * kernel_length * sample_rate / 50 - math.sqrt(11)
    if not 0 < q < max_q:
        raise DataConfigError(
            f"data.q={q!r}: must be in (0, {max_q:.3g}) for kernel_length={kernel_length} s at "
            f"sample_rate={sample_rate} Hz (pi * kernel_length * sample_rate / 50 - sqrt(11))"
        )
    if len(spectrogram_shape) != 2 or min(spectrogram_shape) < 1:
        raise DataConfigError(
            f"data.spectrogram_shape={spectrogram_shape!r}: give [num_f_bins, num_t_bins]"
        )
    if frange is not None:
        nyquist = sample_rate / 2
        too_high = len(frange) == 2 and nyquist < frange[1] < math.inf
        if len(frange) != 2 or not 0 <= frange[0] < frange[1] or too_high:
            raise DataConfigError(
                f"data.frange={frange!r}: give [f_min, f_max] in Hz with "
                f"0 <= f_min < f_max <= {nyquist} (Nyquist; 0 / .inf: ml4gw's default), or null"
            )
