"""Pipelines: WrapperTasks chaining the tasks, configured from one ``.cfg``.

    LAW_CONFIG_FILE=projects/quickstart/quickstart.cfg law run aframe_flow.Pipeline
    LAW_CONFIG_FILE=projects/quickstart/quickstart.cfg law run aframe_flow.TunePipeline

The ``.cfg`` file sets the values once in ``[luigi_base]`` and every task's section refers to
them (``ifos: &::luigi_base::ifos``), so ``law run aframe_flow.Train`` with the same file trains
on the same data. :class:`~aframe_flow.tasks.tune.TunePipeline` (data -> search -> export and
evaluation of the best trial's model) lives beside Tune.
"""

from __future__ import annotations

import law
from luigi.util import inherits

from .tasks.export import Export
from .tasks.tune import TunePipeline


@inherits(Export)
class Pipeline(law.WrapperTask):
    """Data -> ``aframe-train fit`` -> deployable model (every parameter of Export)."""

    def requires(self):
        return Export.req(self)


__all__ = ["Pipeline", "TunePipeline"]
