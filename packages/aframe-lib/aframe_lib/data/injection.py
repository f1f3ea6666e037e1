"""Waveform injection on the training device: sky projection, SNR rescaling, slicing.

Every step is batched and uses ml4gw: :class:`ml4gw.transforms.WaveformProjector`
(``ml4gw.gw.compute_observed_strain``) projects the polarisations onto the detectors for random
sky positions, and ``ml4gw.gw.compute_network_snr`` measures each response against the PSD of
the very background it will be added to, so the rescaled signal has the requested network SNR
in that noise. Only the bookkeeping around those calls lives here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from ml4gw.distributions import Cosine
from ml4gw.gw import compute_network_snr
from ml4gw.transforms import WaveformProjector
from torch import Tensor
from torch.distributions import Distribution, Uniform


class Injector(torch.nn.Module):
    """Project waveforms onto a network of IFOs and rescale them to target SNRs.

    Args:
        ifos: Detector codes, in channel order (e.g. ``["H1", "L1"]``).
        sample_rate: Sample rate of the waveforms and strain, in Hz.
        highpass: Frequency (Hz) below which nothing counts towards the SNR; ``None``: all.
        lowpass: Frequency (Hz) above which nothing counts towards the SNR; ``None``: Nyquist.
        snr_sampler: Distribution of target network SNRs (e.g.
            ``ml4gw.distributions.PowerLaw(4, 100, -3)``). ``None`` keeps each waveform's own SNR.
        dec: Distribution of declinations (rad); default uniform on the sphere.
        psi: Distribution of polarisation angles (rad); default ``U(0, pi)``.
        phi: Distribution of right ascension relative to the geocentre (rad); default
            ``U(-pi, pi)``.
    """

    def __init__(
        self,
        ifos: Sequence[str],
        sample_rate: float,
        highpass: float | None = None,
        lowpass: float | None = None,
        snr_sampler: Distribution | None = None,
        dec: Distribution | None = None,
        psi: Distribution | None = None,
        phi: Distribution | None = None,
    ) -> None:
        super().__init__()
        self.ifos = list(ifos)
        self.sample_rate = sample_rate
        self.highpass = highpass
        self.lowpass = lowpass
        self.snr_sampler = snr_sampler
        self.dec = dec or Cosine()
        self.psi = psi or Uniform(0.0, math.pi)
        self.phi = phi or Uniform(-math.pi, math.pi)
        self.projector = WaveformProjector(self.ifos, sample_rate)

    def sample_sky(self, num: int, device: torch.device | str = "cpu") -> tuple[Tensor, ...]:
        """Draw ``num`` sky positions and polarisations: ``(dec, psi, phi)``, each ``(num,)``."""
        return tuple(d.sample((num,)).to(device) for d in (self.dec, self.psi, self.phi))

    def project(self, cross: Tensor, plus: Tensor, sky: tuple[Tensor, ...] | None = None) -> Tensor:
        """Detector responses to the given polarisations.

        Args:
            cross: Cross polarisation, ``(batch, time)``.
            plus: Plus polarisation, ``(batch, time)``.
            sky: ``(dec, psi, phi)``, each ``(batch,)``; drawn from the priors when ``None``.

        Returns:
            Responses, ``(batch, num_ifos, time)``, with each IFO's light-travel delay applied.
        """
        if sky is None:
            sky = self.sample_sky(len(cross), cross.device)
        dec, psi, phi = (s.to(cross.device, cross.dtype) for s in sky)
        return self.projector(dec, psi, phi, cross=cross, plus=plus)

    def snr(self, responses: Tensor, psds: Tensor) -> Tensor:
        """Network SNR of each response against its PSD.

        Args:
            responses: ``(batch, num_ifos, time)``.
            psds: One-sided PSDs, ``(batch, num_ifos, freqs)`` or ``(num_ifos, freqs)``, spanning
                0 Hz to Nyquist (any resolution: ml4gw interpolates to the responses' grid);
                used in float64.

        Returns:
            ``(batch,)`` network SNRs.
        """
        # PSDs in strain units (~1e-47 /Hz) underflow float32 (to 0, so SNRs become inf/NaN):
        # ml4gw divides by sqrt(psd) in the PSD's own precision, so keep them float64
        snrs = compute_network_snr(
            responses, psds.to(torch.float64), self.sample_rate, self.highpass, self.lowpass
        )
        if not torch.isfinite(snrs).all():
            raise ValueError(
                "non-finite SNR: the PSD has zeros or NaNs in the band "
                f"(dtype {psds.dtype}); strain PSDs underflow float32, keep them float64"
            )
        return snrs

    def rescale(
        self, responses: Tensor, psds: Tensor, target_snrs: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Rescale responses so each has the target network SNR in its PSD.

        Args:
            responses: ``(batch, num_ifos, time)``.
            psds: See :meth:`snr`.
            target_snrs: ``(batch,)``; drawn from ``snr_sampler`` when ``None``.

        Returns:
            The rescaled responses and the target SNRs.
        """
        snrs = self.snr(responses, psds)
        if target_snrs is None:
            if self.snr_sampler is None:
                return responses, snrs
            target_snrs = self.snr_sampler.sample((len(responses),))
        target_snrs = target_snrs.to(responses.device, snrs.dtype)
        weights = target_snrs / snrs.clamp_min(torch.finfo(snrs.dtype).tiny)
        return responses * weights.to(responses.dtype)[:, None, None], target_snrs


def slice_around(
    responses: Tensor, coalescence_index: int, positions: Tensor, window_size: int
) -> Tensor:
    """Cut a window out of each response so that coalescence lands at ``positions``.

    Samples that would fall outside a response are zeros (never wrapped around).

    Args:
        responses: ``(batch, num_ifos, time)``.
        coalescence_index: Sample index of coalescence in every row of ``responses``.
        positions: ``(batch,)`` sample index within the window where coalescence should land.
        window_size: Length of the returned windows, in samples.

    Returns:
        ``(batch, num_ifos, window_size)`` windows.
    """
    batch, num_ifos, size = responses.shape
    padded = torch.nn.functional.pad(responses, (window_size, window_size))
    starts = coalescence_index - positions.to(responses.device).long() + window_size
    idx = starts[:, None] + torch.arange(window_size, device=responses.device)[None]
    idx = idx.clamp(0, size + 2 * window_size - 1)
    idx = idx[:, None, :].expand(batch, num_ifos, window_size)
    return torch.gather(padded, 2, idx)
