"""Supervised detection: one logit per sample, binary cross-entropy against signal/noise labels."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import AframeModel


class SupervisedAframe(AframeModel):
    """Binary classifier of whitened strain (time domain, or any ``transform`` of it)."""

    def compute_loss(self, X: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(self(X), y)

    def score(self, X: Tensor) -> Tensor:
        return self(X)[:, 0]
