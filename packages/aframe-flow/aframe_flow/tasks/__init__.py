"""The concrete tasks: data (``data``), training (``train``), tuning (``tune``),
export (``export``) and evaluation (``evaluate``)."""

from .data import (
    Data,
    FetchBackground,
    SyntheticBackground,
    TrainingWaveforms,
    ValidationWaveforms,
)
from .evaluate import Evaluate
from .export import Export
from .train import Train
from .tune import Tune

__all__ = [
    "Data",
    "Evaluate",
    "Export",
    "FetchBackground",
    "SyntheticBackground",
    "Train",
    "TrainingWaveforms",
    "Tune",
    "ValidationWaveforms",
]
