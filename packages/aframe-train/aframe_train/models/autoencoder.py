"""Semi-supervised detection: each IFO predicts another IFO's strain from its own alone.

Every training sample holds a signal (``waveform_prob: 1.0``) and labels are ignored. A
network that can only see one IFO can predict another IFO's data only through what they share:
the astrophysical signal. The loss rewards the correlation of the predictions with the partner
IFOs' inputs, and the same correlation is the detection statistic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aframe_lib.metrics import TimeSlideAUROC

from ..architectures.autoencoder import GroupedAutoencoder
from ..losses import CrossIfoCorrelation, LossTerm
from .base import AframeModel


class AutoencoderAframe(AframeModel):
    """Grouped autoencoder trained to maximise cross-IFO correlation.

    Args:
        arch: The network; output channel ``i`` must depend on input channel ``i`` only.
        metric: Validation metric (see :class:`AframeModel`).
        max_shift: Seconds of time shift in each direction over which the correlation of a
            prediction with its partner IFO is maximised.
        extra_losses: Terms added to the loss (e.g. :class:`~aframe_train.losses.VICRegTerm`);
            ``None`` means the loss is the negative correlation alone.
        learning_rate: See :class:`AframeModel`.
        pct_lr_ramp: See :class:`AframeModel`.
        weight_decay: See :class:`AframeModel`.
    """

    def __init__(
        self,
        arch: GroupedAutoencoder,
        metric: TimeSlideAUROC,
        max_shift: float = 0.005,
        extra_losses: list[LossTerm] | None = None,
        learning_rate: float = 1e-3,
        pct_lr_ramp: float = 0.1,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(arch, metric, learning_rate, pct_lr_ramp, weight_decay)
        # the loss modules are state, not hyperparameters
        self.save_hyperparameters(ignore=["arch", "metric", "extra_losses"])
        self.correlation = CrossIfoCorrelation(int(max_shift * arch.sample_rate))
        self.extra_losses = torch.nn.ModuleList(extra_losses or [])

    def compute_loss(self, X: Tensor, y: Tensor) -> Tensor:
        """``-mean(correlation) + sum(weight * term)``; ``y`` is unused (semi-supervised)."""
        prediction, features = self.model.forward_features(X)
        loss = -self.correlation(prediction, X).mean()
        for term in self.extra_losses:
            value = term(self.model, X, prediction, features)
            if self._trainer is not None:
                self.log(f"train_{term.name}", value, on_step=False, on_epoch=True, sync_dist=True)
            loss = loss + term.weight * value
        return loss

    def score(self, X: Tensor) -> Tensor:
        return self.correlation(self(X), X)

    def reconstruct(self, X: Tensor) -> Tensor:
        """The network's prediction of each IFO, ``(batch, num_ifos, time)``, in input order.

        Output channel ``i`` of the network is computed from IFO ``i`` and predicts IFO
        ``(i + 1) % num_ifos`` (:class:`~aframe_train.losses.CrossIfoCorrelation`), so channel
        ``j`` here is output channel ``j - 1``: the prediction *of* IFO ``j``, to be drawn over
        IFO ``j``'s input (``ValidationPlotter``).
        """
        return self(X).roll(1, dims=1)

    def export_module(self) -> torch.nn.Module:
        return CorrelationScore(self.model, self.correlation)


class CorrelationScore(torch.nn.Module):
    """What deployment runs: input ``(batch, num_ifos, time)`` -> score ``(batch, 1)``."""

    def __init__(self, model: torch.nn.Module, correlation: CrossIfoCorrelation) -> None:
        super().__init__()
        self.model = model
        self.correlation = correlation

    def forward(self, X: Tensor) -> Tensor:
        return self.correlation(self.model(X), X)[:, None]
