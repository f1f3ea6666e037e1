"""Lightning callbacks shared by aframe models.

- :class:`ExportModel`: export the best checkpoint as TorchScript and ONNX at the end of training;
  the LightningModule must be :class:`Exportable` (``export_module()``).
- :class:`ValidationPlotter`: figures of a few validation samples with SNR and score, as PNGs;
  the LightningModule's ``validation_step`` returns the batch's :class:`ValidationScores`.
- :class:`WandbPlotter`: the same figures as rows of one W&B table per run.
- :class:`WandbSaveConfig`: LightningCLI config saver that also fills ``wandb.config``.

Importing this package loads neither wandb nor matplotlib: the plotters import them when created.
"""

from .export import ExampleSource, Exportable, ExportModel
from .plots import ValidationPlotter, ValidationScores
from .wandb import WandbPlotter, WandbSaveConfig, redact_secrets

__all__ = [
    "ExampleSource",
    "ExportModel",
    "Exportable",
    "ValidationPlotter",
    "ValidationScores",
    "WandbPlotter",
    "WandbSaveConfig",
    "redact_secrets",
]
