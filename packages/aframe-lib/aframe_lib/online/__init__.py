"""The online road: 1-second frames in, events with FAR and p_astro out to GraceDB.

- :mod:`.engine`: the offline search (:class:`~aframe_lib.search.pipeline.Search`) run
  incrementally on strain as it arrives (:class:`~.engine.OnlineSearch`).
- :mod:`.source`: frames landing in a directory, read per second with their state vector.
- :mod:`.significance`: FAR from evaluate's timeslide background, p_astro.
- :mod:`.gracedb`: the event file, the outbox and exactly-once uploads through ligo-gracedb.
- :mod:`.service`: ``aframe-online``.

Submodules are imported when used, so ``import aframe_lib.online`` is cheap.
"""
