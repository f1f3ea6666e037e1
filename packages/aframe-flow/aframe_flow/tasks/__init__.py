"""The concrete tasks: data (``data``), training (``train``), tuning (``tune``),
export (``export``) and evaluation (``evaluate``)."""

from .data import (
    Data,
    FetchBackground,
    HeldOutBackground,
    Segments,
    SyntheticBackground,
    SyntheticData,
    TrainingWaveforms,
    ValidationWaveforms,
)
from .evaluate import Evaluate
from .export import Export
from .train import Train
from .tune import EvaluateTuned, ExportTuned, Tune, TunePipeline

__all__ = [
    "Data",
    "Evaluate",
    "EvaluateTuned",
    "Export",
    "ExportTuned",
    "FetchBackground",
    "HeldOutBackground",
    "Segments",
    "SyntheticBackground",
    "SyntheticData",
    "Train",
    "TrainingWaveforms",
    "Tune",
    "TunePipeline",
    "ValidationWaveforms",
]
