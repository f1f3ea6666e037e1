"""Loss pieces of the semi-supervised autoencoder detector.

- :class:`CrossIfoCorrelation`: the detection statistic and (negated) main loss: how well each
  IFO's prediction matches another IFO's input, up to a small time shift (ml4gw's shifted
  Pearson correlation, as :class:`SlicedShiftedPearsonCorrelation` so it exports to ONNX).
- :class:`LossTerm`: the contract of optional extra loss terms (``extra_losses`` of
  :class:`~aframe_train.models.AutoencoderAframe`), and one of them, :class:`VICRegTerm`.
"""

from __future__ import annotations

import torch
from ml4gw.transforms import ShiftedPearsonCorrelation
from torch import Tensor


class SlicedShiftedPearsonCorrelation(ShiftedPearsonCorrelation):
    """ml4gw's ``ShiftedPearsonCorrelation`` with its shifts taken as plain slices.

    Same inputs, output ``(2 * max_shift + 1, batch, channels)`` and arithmetic; ml4gw 0.8.5
    builds the shifted windows with ``unfold_windows`` (``im2col`` with a kernel size computed
    from the input shape), which the ONNX exporter rejects, whereas a stack of
    ``2 * max_shift + 1`` slices exports to TorchScript and ONNX alike.
    """

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        self._shape_checks(x, y)
        size = x.size(-1)
        x = torch.nn.functional.pad(x, (self.max_shift, self.max_shift))
        x = torch.stack([x[..., k : k + size] for k in range(2 * self.max_shift + 1)])
        x = x - x.mean(-1, keepdim=True)
        y = y - y.mean(-1, keepdim=True)
        corr = (x * y).sum(-1)
        norm = (x**2).sum(-1) * (y**2).sum(-1)
        return corr / norm**0.5


class CrossIfoCorrelation(torch.nn.Module):
    """Correlation of each IFO's prediction with its partner IFO's input, combined over IFOs.

    IFO ``i``'s prediction is compared with the input of IFO ``(i + 1) % num_ifos`` (for two
    IFOs: each predicts the other, upstream's channel flip). The Pearson correlation is
    maximised over time shifts of ``-max_shift..max_shift`` samples (the prediction is
    zero-padded and shifted; an inter-IFO light travel time needs no exact alignment), then
    combined in quadrature and normalised, ``sqrt(sum_i c_i**2 / num_ifos)``, so a perfect
    predictor scores 1 for any number of IFOs. Squaring drops the sign of ``c_i``; with
    ``2 * max_shift + 1`` shifts to choose from, the maximum is positive in practice.

    Args:
        max_shift: Largest shift in each direction, in samples.
    """

    def __init__(self, max_shift: int) -> None:
        super().__init__()
        self.pearson = SlicedShiftedPearsonCorrelation(max_shift)

    def per_ifo(self, prediction: Tensor, X: Tensor) -> Tensor:
        """Max-over-shifts correlation of each pair, ``(batch, num_ifos)``.

        Args:
            prediction: ``(batch, num_ifos, time)``, channel ``i`` from IFO ``i``'s input only.
            X: The input ``(batch, num_ifos, time)``.
        """
        partner = X.roll(-1, dims=1)  # partner[:, i] = X[:, (i + 1) % num_ifos]
        return self.pearson(prediction, partner).max(dim=0).values

    def forward(self, prediction: Tensor, X: Tensor) -> Tensor:
        """Combined correlation, ``(batch,)``, in ``[0, 1]``; larger is more signal-like."""
        return self.per_ifo(prediction, X).pow(2).mean(dim=-1).sqrt()


class LossTerm(torch.nn.Module):
    """An extra term added to a model's loss as ``weight * term(...)``.

    Subclasses implement :meth:`forward`; the model logs each term as ``train_<name>``.

    Args:
        weight: Multiplier of the term in the total loss.
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def forward(self, model: torch.nn.Module, X: Tensor, prediction: Tensor, features: Tensor):
        """The unweighted scalar term.

        Args:
            model: The architecture (e.g. for weight penalties).
            X: Input ``(batch, num_ifos, time)``.
            prediction: Its output ``(batch, num_ifos, time)``.
            features: Per-IFO latent representations ``(batch, num_ifos, channels, time')``.
        """
        raise NotImplementedError


class VICRegTerm(LossTerm):
    """VICReg-style agreement of the latent representations of one event across IFOs.

    Every sample holds one event seen by all IFOs, so each IFO's encoding of it (computed from
    that IFO's data only) should be similar: the *invariance* term is the mean squared
    difference over all IFO pairs. Alone it can be met by collapsing the latents to a
    constant; the optional *variance* (hinge on each dimension's standard deviation over the
    batch, per IFO) and *covariance* (squared off-diagonal covariances / dimension, per IFO)
    terms of Bardes et al. (2022) prevent that (their ratio is 25 : 25 : 1). The loss combines
    information from all IFOs, but predictions still never do.

    Args:
        weight: Multiplier of the whole term in the loss.
        invariance: Coefficient of the invariance term.
        variance: Coefficient of the variance term (0 disables it).
        covariance: Coefficient of the covariance term (0 disables it).
        pool: Average the latents over time first (tolerates the inter-IFO arrival-time
            difference); ``False`` compares them sample by sample, flattened.
        gamma: Target standard deviation of the variance term.
        eps: Added to variances before the square root.
    """

    def __init__(
        self,
        weight: float = 1.0,
        invariance: float = 1.0,
        variance: float = 0.0,
        covariance: float = 0.0,
        pool: bool = True,
        gamma: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__(weight)
        self.invariance, self.variance, self.covariance = invariance, variance, covariance
        self.pool, self.gamma, self.eps = pool, gamma, eps

    def forward(self, model: torch.nn.Module, X: Tensor, prediction: Tensor, features: Tensor):
        Z = features.mean(-1) if self.pool else features.flatten(2)  # (batch, num_ifos, dim)
        num_ifos = Z.size(1)
        i, j = torch.triu_indices(num_ifos, num_ifos, offset=1, device=Z.device)
        loss = self.invariance * (Z[:, i] - Z[:, j]).pow(2).mean()
        if self.variance or self.covariance:
            Z = Z - Z.mean(0)
            if self.variance:
                std = (Z.var(0) + self.eps).sqrt()  # (num_ifos, dim)
                loss = loss + self.variance * torch.relu(self.gamma - std).mean()
            if self.covariance:
                batch, _, dim = Z.shape
                cov = torch.einsum("bid,bie->ide", Z, Z) / (batch - 1)
                off = cov - torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1))
                loss = loss + self.covariance * off.pow(2).sum((-2, -1)).mean() / dim
        return loss
