"""The concrete tasks: data (``data``), training (``train``) and export (``export``)."""

from .data import (
    Data,
    FetchBackground,
    SyntheticBackground,
    TrainingWaveforms,
    ValidationWaveforms,
)
from .export import Export
from .train import Train

__all__ = [
    "Data",
    "Export",
    "FetchBackground",
    "SyntheticBackground",
    "Train",
    "TrainingWaveforms",
    "ValidationWaveforms",
]
