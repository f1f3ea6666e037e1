"""Hyper-parameter search over any LightningCLI with Ray Tune and ASHA (the ``[tune]`` extra).

Each trial runs the project's own ``fit`` with the trial's values as ``--key=value`` overrides,
in a child process with exactly its share of the cluster (``workers × (GPUs, CPUs)``), so that as
many trials run side by side as fit. Storage is a local directory or ``s3://``; a search resumes
from its directory; the end is a summary and the best trial's exported model.

    from aframe_lib.tune import TuneSettings, run_tune
    run_tune("my_project.cli.MyCLI", ["train.yaml"], [], TuneSettings(space="space.yaml"))

Modules: :mod:`.space` (search space files), :mod:`.config` (:class:`TuneSettings`, the
``--tune.*`` settings), :mod:`.training` (the CLI's parser and the resolved training config, on
the driver), :mod:`.tuner` (Tuner, ASHA, resources, resume), :mod:`.trainable` (one trial),
:mod:`.worker` and :mod:`.callbacks` (the trial's training process), :mod:`.storage`,
:mod:`.summary` (the table of trials, the best model),
:mod:`.cli` (the command line). Ray is imported only when a search runs;
the names below are imported from their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aframe_lib.utils.lazy import lazy_exports

_EXPORTS = {
    "SearchSpaceError": "space",
    "TrainingConfig": "training",
    "TrainingConfigError": "training",
    "TuneSettings": "config",
    "load_space": "space",
    "run_tune": "tuner",
}

if TYPE_CHECKING:
    from .config import TuneSettings
    from .space import SearchSpaceError, load_space
    from .training import TrainingConfig, TrainingConfigError
    from .tuner import run_tune

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [  # noqa: F822 - resolved lazily by __getattr__
    "SearchSpaceError",
    "TrainingConfig",
    "TrainingConfigError",
    "TuneSettings",
    "load_space",
    "run_tune",
]
