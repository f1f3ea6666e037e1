"""LightningModules: one template (:class:`AframeModel`) and one small subclass per scheme."""

from .base import AframeModel
from .supervised import SupervisedAframe

__all__ = ["AframeModel", "SupervisedAframe"]
