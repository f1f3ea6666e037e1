"""aframe-flow: law tasks that run aframe's data generation, training and export locally, inside
Apptainer images, or (for tuning) on Ray clusters in Kubernetes.

``law run aframe_flow.<Task>`` finds every task below; nothing here imports torch or aframe-train
(training runs through the ``aframe-train`` command line, possibly inside an image).

- framework: :mod:`~aframe_flow.base` (base tasks), :mod:`~aframe_flow.config` (``luigi.Config``
  sections), :mod:`~aframe_flow.parameters`, :mod:`~aframe_flow.targets`,
  :mod:`~aframe_flow.sandbox` (Apptainer command lines), :mod:`~aframe_flow.clusters` (Ray on
  Kubernetes);
- tasks: :mod:`~aframe_flow.tasks` (data, train, tune, export, evaluate) and
  :mod:`~aframe_flow.pipelines`.

``LAW_CONFIG`` is the path of the law.cfg shipped with the package (``python -m aframe_flow``
prints it; ``python -m aframe_flow init`` copies it to ``./law.cfg``, where law finds it).
"""

from pathlib import Path

from . import reporting
from .pipelines import Pipeline
from .tasks import (
    Data,
    Evaluate,
    Export,
    FetchBackground,
    HeldOutBackground,
    Segments,
    SyntheticBackground,
    SyntheticData,
    TestWaveforms,
    Train,
    TrainingWaveforms,
    Tune,
    ValidationWaveforms,
)
from .tasks.tune import EvaluateTuned, ExportTuned, TunePipeline

reporting.install()  # our errors in `law run`: their message once, no traceback

__version__ = "0.1.0"
LAW_CONFIG = str(Path(__file__).with_name("law.cfg"))

__all__ = [
    "LAW_CONFIG",
    "Data",
    "Evaluate",
    "EvaluateTuned",
    "Export",
    "ExportTuned",
    "FetchBackground",
    "HeldOutBackground",
    "Segments",
    "Pipeline",
    "SyntheticBackground",
    "SyntheticData",
    "Train",
    "TestWaveforms",
    "TrainingWaveforms",
    "Tune",
    "TunePipeline",
    "ValidationWaveforms",
]
