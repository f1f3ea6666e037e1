"""LightningModules: one template (:class:`AframeModel`) and one small subclass per scheme."""

from .autoencoder import AutoencoderAframe
from .base import AframeModel
from .supervised import SupervisedAframe

__all__ = ["AframeModel", "AutoencoderAframe", "SupervisedAframe"]
