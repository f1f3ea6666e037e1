"""The concrete tasks: data (``data``), training (``train``), tuning (``tune``),
export (``export``) and evaluation (``evaluate``)."""

from .data import (
    Data,
    FetchBackground,
    HeldOutBackground,
    Segments,
    SyntheticBackground,
    SyntheticData,
    TestWaveforms,
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
    "TestWaveforms",
    "TrainingWaveforms",
    "Tune",
    "TunePipeline",
    "ValidationWaveforms",
]
