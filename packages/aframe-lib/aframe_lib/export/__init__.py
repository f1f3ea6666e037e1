"""Export of trained networks for deployment, each checked against the eager model on a real batch.

- :mod:`~aframe_lib.export.torchscript`: TorchScript ``model.pt`` with ``model.json`` beside it.
- :mod:`~aframe_lib.export.onnx`: ONNX ``model.onnx`` (metadata inside), the ``export`` extra.
"""

from .onnx import export_onnx, load_onnx
from .torchscript import export_torchscript, load_exported

__all__ = ["export_onnx", "export_torchscript", "load_exported", "load_onnx"]
