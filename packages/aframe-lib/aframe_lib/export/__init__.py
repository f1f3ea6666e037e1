"""Export of trained networks for deployment: TorchScript (``model.pt``) with its input shape."""

from .torchscript import export_torchscript, load_exported

__all__ = ["export_torchscript", "load_exported"]
