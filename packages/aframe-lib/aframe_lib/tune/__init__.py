"""Hyper-parameter search over any LightningCLI with Ray Tune and ASHA (the ``[tune]`` extra).

Each trial runs the project's own ``fit`` with the trial's values as ``--key=value`` overrides,
in a child process with exactly its share of the cluster (``workers × (GPUs, CPUs)``), so that as
many trials run side by side as fit. Storage is a local directory or ``s3://``; a search resumes
from its directory; the end is a summary and the best trial's exported model.

    from aframe_lib.tune import SearchConfig, run_search
    run_search("my_project.cli.MyCLI", ["train.yaml"], [], SearchConfig(space="space.yaml"))

Modules: :mod:`.space` (search space files), :mod:`.config` (the CLI's parser on the driver),
:mod:`.search` (Tuner, ASHA, resources, resume, summary), :mod:`.trainable` (one trial),
:mod:`.worker` and :mod:`.callbacks` (the trial's training process), :mod:`.storage`,
:mod:`.summary` (the table of trials, the best model),
:mod:`.cli` (the command line). Ray is imported only when a search runs.
"""

from .search import SearchConfig, run_search
from .space import SearchSpaceError, load_space

__all__ = ["SearchConfig", "SearchSpaceError", "load_space", "run_search"]
