"""The online road: 1-second frames in, events with FAR and p_astro out to GraceDB.

- :mod:`.engine`: the offline search (:class:`~aframe_lib.search.pipeline.Search`) run
  incrementally on strain as it arrives (:class:`~.engine.OnlineSearch`).
- :mod:`.source`: frames landing in a directory, read per second with their state vector.
- :mod:`.significance`: FAR from evaluate's timeslide background, p_astro.
- :mod:`.gracedb`: the event file, the outbox and exactly-once uploads through ligo-gracedb.
- :mod:`.service`: ``aframe-online``.

Submodules are imported when used, so ``import aframe_lib.online`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aframe_lib.utils.lazy import lazy_exports

_EXPORTS = {
    "OnlineSearch": "engine",
    "FrameSource": "source",
    "Background": "significance",
    "PAstro": "significance",
    "Candidate": "gracedb",
    "Outbox": "gracedb",
    "Uploader": "gracedb",
    "run_online": "service",
}

if TYPE_CHECKING:
    from .engine import OnlineSearch
    from .gracedb import Candidate, Outbox, Uploader
    from .service import run_online
    from .significance import Background, PAstro
    from .source import FrameSource

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [  # noqa: F822 - resolved lazily by __getattr__
    "Background",
    "Candidate",
    "FrameSource",
    "OnlineSearch",
    "Outbox",
    "PAstro",
    "Uploader",
    "run_online",
]
