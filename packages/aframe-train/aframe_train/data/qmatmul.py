"""ml4gw's single-Q transform written as real matrix products, so that it exports to ONNX.

``SingleQTransform`` uses ``torch.fft.rfft``/``ifft`` on complex tensors, which torch's
TorchScript-based ONNX exporter cannot express (``aten::fft_rfft`` has no ONNX mapping there),
and the dynamo-based exporter would need ``onnxscript`` plus complex support for every op on the
way. Everything before the tile energies is linear in the input, and the two bicubic
resamplings after the median normalisation are linear too, so the whole transform is::

    Xf     = X @ F                          rfft (norm="forward", bins >= 1 doubled): F (N, K)
    a_r    = Xf[..., indices_r]             the row's frequency bins (Gather)
    td_r   = a_r @ E_r                      window, zero-pad, ifftshift, ifft: E_r (w_r, n_r)
    e_r    = |td_r|^2 / median(|td_r|^2)    median of an even n_r = mean of the middle two
    S      = stack_r(e_r @ T_r)             bicubic resampling in time: T_r (n_r, num_t_bins)
    out    = G^T @ S                        bicubic resampling in frequency: G (rows, num_f_bins)

with complex matrices held as real and imaginary parts. Each matrix is built by pushing an
identity basis through the very torch/ml4gw operations the eager transform uses (in float64),
so the conventions (normalisation, padding, shifts, interpolation kernel and edge handling) are
those of ``SingleQTransform`` by construction; only the rounding differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from ml4gw.transforms import SingleQTransform
from torch import Tensor


def _resample_matrix(size_in: int, size_out: int) -> Tensor:
    """``(size_in, size_out)``: row ``k`` is the bicubic resampling of the unit vector ``e_k``,
    as ``SingleQTransform`` resamples (``F.interpolate(mode="bicubic")``, one axis at a time)."""
    basis = torch.eye(size_in, dtype=torch.float64)[None, :, None, :]  # (1, k, 1, size_in)
    out = F.interpolate(basis, (1, size_out), mode="bicubic")
    return out[0, :, 0, :]


def qtransform_matrices(transform: SingleQTransform, size: int) -> dict[str, list[Tensor]]:
    """The real float64 matrices of the module docstring for inputs of ``size`` samples."""
    if transform.interpolation_method != "bicubic":
        raise NotImplementedError(
            f"the matrix form of the Q-transform follows the bicubic resampling only, not "
            f"{transform.interpolation_method!r}"
        )
    dft = torch.fft.rfft(torch.eye(size, dtype=torch.float64), norm="forward")
    dft[..., 1:] *= 2
    rows: dict[str, list[Tensor]] = {"dft": [dft.real, dft.imag], "indices": [], "E": [], "T": []}
    num_f, num_t = transform.spectrogram_shape
    for qtile in transform.qtile_transforms:
        window = qtile.window.to(torch.float64)
        left, right = (int(p) for p in qtile.padding)
        basis = torch.diag(window).to(torch.complex128)  # row j: the windowed unit bin j
        basis = F.pad(basis, (left, right), mode="constant")
        E = torch.fft.ifft(torch.fft.ifftshift(basis, dim=-1))
        rows["indices"].append(qtile.indices.clone())
        rows["E"].append(torch.stack([E.real, E.imag]))
        rows["T"].append(_resample_matrix(E.shape[-1], num_t))
    rows["G"] = [_resample_matrix(len(transform.qtile_transforms), num_f)]
    return rows


def _median(x: Tensor) -> Tensor:
    """``torch.quantile(x, 0.5, dim=-1, keepdim=True)`` (linear interpolation), via a sort."""
    n = x.shape[-1]
    ordered = torch.sort(x, dim=-1).values
    if n % 2:
        return ordered[..., n // 2 : n // 2 + 1]
    return 0.5 * (ordered[..., n // 2 - 1 : n // 2] + ordered[..., n // 2 : n // 2 + 1])


def qtransform_as_matmuls(
    X: Tensor, matrices: dict[str, list[Tensor]], num_f_bins: int, num_t_bins: int
) -> Tensor:
    """``SingleQTransform`` (median normalisation, bicubic) of ``X`` with real matmuls only.

    Args:
        X: ``(batch, channels, size)`` float input.
        matrices: :func:`qtransform_matrices` for ``size``, in ``X``'s dtype and device.
        num_f_bins: Output frequency bins.
        num_t_bins: Output time bins.

    Returns:
        ``(batch, channels, num_f_bins, num_t_bins)``.
    """
    dft_re, dft_im = matrices["dft"]
    xf_re, xf_im = X @ dft_re, X @ dft_im
    rows = []
    for indices, (E_re, E_im), T in zip(
        matrices["indices"], matrices["E"], matrices["T"], strict=True
    ):
        a_re, a_im = xf_re[..., indices], xf_im[..., indices]
        td_re = a_re @ E_re - a_im @ E_im
        td_im = a_re @ E_im + a_im @ E_re
        energy = td_re**2 + td_im**2
        rows.append((energy / _median(energy)) @ T)
    (G,) = matrices["G"]
    return G.T @ torch.stack(rows, dim=-2)
