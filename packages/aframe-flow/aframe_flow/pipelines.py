"""Pipelines: WrapperTasks chaining data -> train -> export, configured from one ``.cfg``.

    LAW_CONFIG_FILE=projects/quickstart/quickstart.cfg law run aframe_flow.Pipeline

The ``.cfg`` file sets the values once in ``[luigi_base]`` and every task's section refers to
them (``ifos: &::luigi_base::ifos``), so ``law run aframe_flow.Train`` with the same file trains
on the same data.
"""

from __future__ import annotations

import law
from luigi.util import inherits

from .tasks.export import Export


@inherits(Export)
class Pipeline(law.WrapperTask):
    """Data -> ``aframe-train fit`` -> deployable model folder (every parameter of Export)."""

    def requires(self):
        return Export.req(self)
