"""``aframe-train search``: run an exported detector over long strain and write its events.

    aframe-train search --model RUN/model.pt --data DATA --out events.hdf5
        [--inference_sampling_rate 4] [--threshold X] [--cluster_window 8] [--device cuda]

The flags after ``--out`` are :class:`aframe_lib.search.SearchSettings` fields (the same for
``aframe-train evaluate``).

``DATA`` is a background directory (``background-{t0}-{duration}.hdf5`` files), one such file,
or a mock-data-challenge file (a group per IFO, a dataset per segment with ``start_time`` and
``delta_t``). The preprocessing (IFOs, sample rate, kernel, whitening filter, highpass, the
coalescence pads or the calibrated ``timing``, and the PSD policy training used: length, Welch
segments, cadence) comes from the model's ``model.json``, so the network sees inputs whitened
as in training. Strain at an integer multiple of the model's rate (e.g. 2048 Hz for a 512 Hz
model) is low-passed and decimated as it streams, on the search's device
(:mod:`aframe_lib.search.resample`). Events are written in the mock-data-challenge convention
(``time``, ``stat``, ``var``); the real-time factor is printed at the end as
``realtime_factor: X``. Each span's events are saved in ``OUT.parts/`` as it ends, so the same
command rerun after a kill searches only the spans not yet done (``--resume false``: not).

Bad data: a missing IFO, a sample rate the model's cannot be reached from (slower than the
model's, or a non-integer multiple of it), or IFOs whose samples do not line up raise an error
naming the file and the fix. Gaps split the data into separate spans,
NaN/inf stretches are skipped with a warning, and spans too short for one output are skipped
with a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aframe_lib.search import SearchResult, SearchSettings


def search(
    model: str,
    data: str,
    out: str,
    settings: SearchSettings | None = None,
    progress: bool = True,
    resume: bool = True,
) -> SearchResult:
    """Search long strain with an exported model and write the events.

    Args:
        model: exported TorchScript model (``model.pt``, with ``model.json`` beside it).
        data: background directory, background file, or mock-data-challenge HDF5 file.
        out: events file to write (HDF5: ``time``, ``stat``, ``var``).
        settings: how the search runs (``None``: the defaults); the preprocessing is the
            model's.
        progress: show a progress bar.
        resume: save each span's events in ``OUT.parts/`` as it ends, and load those saved by
            an earlier run of the same model and settings that was killed (the directory is
            deleted once ``out`` is written); false: search everything, save nothing.
    """
    import shutil

    from aframe_lib.search import Search, find_spans, write_events
    from aframe_lib.search.checkpoint import model_digest

    engine = Search.from_exported(model, settings)
    spans = find_spans(
        data, engine.ifos, engine.sample_rate, engine.min_duration, engine.min_duration_desc
    )
    parts = f"{out}.parts" if resume else None
    result = engine.run(spans, progress=progress, checkpoint=parts, key=model_digest(model))
    attrs = {**engine.settings(), "livetime": result.livetime, "model": str(model)}
    write_events(out, result.events, {**attrs, "data": str(data)})
    if parts is not None:
        shutil.rmtree(parts, ignore_errors=True)
    print(f"events: {len(result.events)} written to {out}")
    print(f"livetime_s: {result.livetime:.6g}")
    print(f"strain_s: {result.strain_seconds:.6g}")
    print(f"wall_s: {result.wall_seconds:.4g}")
    print(f"realtime_factor: {result.realtime_factor:.4g}  (device {engine.device})")
    return result


def main(args: list[str] | None = None) -> None:
    """``aframe-train search ...`` (``args`` are the arguments after ``search``)."""
    from aframe_lib.search.settings import settings_cli

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings_cli(search, args, "aframe-train search")
