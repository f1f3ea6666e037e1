"""The search: an exported detector run over long strain, and its sensitivity.

- :mod:`~aframe_lib.search.strain`: spans of coincident, finite strain from a background
  directory or a mock-data-challenge file (gaps and NaNs split spans; bad input raises).
- :mod:`~aframe_lib.search.resample`: strain faster than the model's rate, decimated as it
  streams (torchaudio, on the device).
- :mod:`~aframe_lib.search.whitening`: :class:`StreamingWhitener`, the training path's PSD +
  whitening for every window of a stream (one shared STFT).
- :mod:`~aframe_lib.search.settings`: :class:`SearchSettings`, how a search runs (inference rate,
  batch size, integration, clustering, device ...), shared by every command that searches.
- :mod:`~aframe_lib.search.pipeline`: :class:`Search`, model + streaming + post-processing.
- :mod:`~aframe_lib.search.backends`: what runs the network (TorchScript, or onnxruntime on a
  CPU: ``backend: auto|torchscript|onnx``).
- :mod:`~aframe_lib.search.events`: integration, clustering, the events file (``time``,
  ``stat``, ``var``).
- :mod:`~aframe_lib.search.timeslides`: shifted spans for background livetime (validation's
  timeslides, :mod:`aframe_lib.data.timeslides`, applied to spans of strain).
- :mod:`~aframe_lib.search.injections`: a waveform population injected into background, or an
  external injection table.
- :mod:`~aframe_lib.search.calibration`: the network's response offset and timing spread,
  measured on injections (stored in ``model.json`` at export).
- :mod:`~aframe_lib.search.metrics`: FAR, efficiency, sensitive volume.
- :mod:`~aframe_lib.search.matched_filter`: the matched-filter ideal, rho(F) of a pycbc
  matched-filter search of the same held-out noise (pycbc imported only there).

Submodules are imported lazily: ``import aframe_lib.search`` pulls in neither torch nor h5py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aframe_lib.utils.lazy import lazy_exports

_EXPORTS = {
    "Events": "events",
    "read_events": "events",
    "write_events": "events",
    "Search": "pipeline",
    "SearchResult": "pipeline",
    "SearchSettings": "settings",
    "Span": "strain",
    "StrainError": "strain",
    "find_spans": "strain",
    "materialize": "strain",
    "StreamingWhitener": "whitening",
    "timeslide_spans": "timeslides",
    "inject_population": "injections",
}

if TYPE_CHECKING:
    from .events import Events, read_events, write_events
    from .injections import inject_population
    from .pipeline import Search, SearchResult
    from .settings import SearchSettings
    from .strain import Span, StrainError, find_spans, materialize
    from .timeslides import timeslide_spans
    from .whitening import StreamingWhitener


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [  # noqa: F822 - resolved lazily by __getattr__
    "Events",
    "Search",
    "SearchResult",
    "SearchSettings",
    "Span",
    "StrainError",
    "StreamingWhitener",
    "find_spans",
    "inject_population",
    "materialize",
    "read_events",
    "timeslide_spans",
    "write_events",
]
