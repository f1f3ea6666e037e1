"""Analysis segments: where every IFO passes its data-quality flags, split into periods by GPS.

``aframe-data segments`` is :func:`query_segments`. The flags come from DQSegDB (``source=
"dqsegdb"``, through ``dqsegdb2``; flags ``H1:DMT-ANALYSIS_READY:1``) or from the open-data
timeline (``source="gwosc"``, through ``gwosc``; flags ``H1_DATA``, ``H1_CBC_CAT1`` ...). The
active segments of every flag are intersected, veto flags' active segments subtracted, the
result cut into the periods ``train [start, train_stop)``, ``valid [train_stop, valid_stop)``
and ``test [valid_stop, end)`` (upstream aframe's ``train_start/train_stop/test_stop``), and
stretches shorter than ``min_duration`` dropped.

Written into ``out_dir`` (nothing at all when any step fails):

- ``segments.txt`` (every period) and ``train.txt``/``valid.txt``/``test.txt``: segwizard
  segment lists (``# seg start stop duration``), read by gwpy (``SegmentList.read(path,
  format="segwizard")``) and igwn-segments/ligo-segments (``utils.fromsegwizard``);
- ``segments.json``: the query (source, server, flags with versions, vetoes, span, periods,
  livetime, and when it was asked: DQSegDB flags gain versions and segments over time).

Servers are reached through the clients' settings (``DEFAULT_SEGMENT_SERVER``,
``GWOSC_SERVER_URL``) or ``host``; credentials through igwn-auth-utils (see
:mod:`~aframe_lib.data.services`).
"""

from __future__ import annotations

import datetime
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from aframe_lib.utils.errors import DataError

from .services import call, dqsegdb_server, open_data_server

logger = logging.getLogger(__name__)

QUERY = "segments.json"
ALL = "segments.txt"
PERIODS = ("train", "valid", "test")
DEFAULT_FLAGS = {"dqsegdb": "{ifo}:DMT-ANALYSIS_READY:1", "gwosc": "{ifo}_DATA"}


class SegmentsError(DataError):
    """Segments that cannot be made (no active time, an empty intersection, bad periods)."""


def flag_ifo(flag: str) -> str:
    """The IFO a flag belongs to: ``H1`` of ``H1:DMT-ANALYSIS_READY:1`` or of ``H1_DATA``."""
    return flag.split(":", 1)[0] if ":" in flag else flag.split("_", 1)[0]


def _query_flag(flag: str, start: float, end: float, source: str, server: str):
    """The active segments of one flag in ``[start, end)`` and its version (``None``: all)."""
    from igwn_segments import segment, segmentlist

    if source == "dqsegdb":
        from dqsegdb2.query import query_segments as dq_query

        result = call(lambda: dq_query(flag, start, end, host=server), f"flag {flag}", server)
        return segmentlist(result["active"]).coalesce(), result.get("version")
    from gwosc.timeline import get_segments

    pairs = call(lambda: get_segments(flag, int(start), int(end), host=server),
                 f"timeline {flag}", server)  # fmt: skip
    return segmentlist(segment(a, b) for a, b in pairs).coalesce(), None


def read_segments(path: str | Path) -> list[tuple[float, float]]:
    """The segments of a segwizard file (or a two-column ``start end`` file), sorted."""
    from igwn_segments import utils

    text = Path(path).read_text()
    try:
        segs = utils.fromsegwizard(io.StringIO(text), coltype=float, strict=False)
    except (ValueError, IndexError) as exc:
        raise SegmentsError(
            f"{path}: not a segments file ({exc}); write one with aframe-data segments "
            "(segwizard: 'index start stop duration' per line)"
        ) from exc
    lines = [ln for ln in text.splitlines() if ln.strip() and ln.strip()[0] not in "#;"]
    if len(segs) != len(lines):  # fromsegwizard stops silently at the first bad line
        raise SegmentsError(
            f"{path}: line {lines[len(segs)]!r} is not a segment ('index start stop duration' "
            "or 'start stop', GPS seconds)"
        )
    return [(float(a), float(b)) for a, b in segs.coalesce()]


def write_segments(path: str | Path, segments: Sequence[tuple[float, float]]) -> None:
    """Write a segwizard segments file atomically (integer GPS when every bound is whole)."""
    from igwn_segments import segment, segmentlist, utils

    from aframe_lib.utils.fs import atomic_local_path

    whole = all(float(x).is_integer() for s in segments for x in s)
    coltype = int if whole else float
    segs = segmentlist(segment(coltype(a), coltype(b)) for a, b in segments)
    text = io.StringIO()
    utils.tosegwizard(text, segs, header=True, coltype=coltype)
    with atomic_local_path(path) as tmp:
        Path(tmp).write_text(text.getvalue())


def _periods(start, end, train_stop, valid_stop) -> dict[str, tuple[float, float]]:
    cuts = [start] + [t for t in (train_stop, valid_stop) if t is not None] + [end]
    if any(b <= a for a, b in zip(cuts[:-1], cuts[1:], strict=False)):
        raise SegmentsError(
            f"start={start}, train_stop={train_stop}, valid_stop={valid_stop}, end={end}: "
            "the period bounds must increase (start < train_stop < valid_stop < end)"
        )
    if train_stop is None:
        return {"train": (start, end)}
    if valid_stop is None:
        return {"train": (start, train_stop), "test": (train_stop, end)}
    return {"train": (start, train_stop), "valid": (train_stop, valid_stop),
            "test": (valid_stop, end)}  # fmt: skip


def query_segments(
    out_dir: str,
    ifos: list[str],
    start: float,
    end: float,
    flags: list[str] | None = None,
    vetoes: list[str] | None = None,
    source: Literal["dqsegdb", "gwosc"] = "dqsegdb",
    min_duration: float = 0.0,
    train_stop: float | None = None,
    valid_stop: float | None = None,
    host: str | None = None,
) -> str:
    """Query data-quality segments, intersect them over the IFOs and write them by period.

    Args:
        out_dir: Directory for ``segments.txt``, ``train.txt`` (``valid.txt``, ``test.txt``)
            and ``segments.json``.
        ifos: IFO codes; every one must pass its flags.
        start: GPS start of the query (the training period's start).
        end: GPS end (the last period's end).
        flags: Flags that must be active, each naming its IFO (``H1:DMT-ANALYSIS_READY:1``
            in DQSegDB, ``H1_DATA`` on the open-data timeline); empty: the analysis-ready flag
            of each IFO (``{ifo}:DMT-ANALYSIS_READY:1`` or ``{ifo}_DATA``).
        vetoes: Flags whose active time is removed from every IFO's (DQSegDB veto flags).
        source: ``dqsegdb`` (``dqsegdb2``) or ``gwosc`` (the open-data timeline).
        min_duration: Shortest segment kept (s), applied after the periods are cut.
        train_stop: End of the training period; the rest is test (or validation then test).
            Empty: everything is training.
        valid_stop: End of a validation period after ``train_stop``; empty: none.
        host: Server URL; empty: the client's setting (``DEFAULT_SEGMENT_SERVER`` or
            ``GWOSC_SERVER_URL``).

    Returns:
        ``out_dir``.

    Raises:
        SegmentsError: a flag with no active time, an empty intersection or period (nothing is
            written).
        ServiceError: a server that does not answer after retries.
    """
    from igwn_segments import segment, segmentlist

    ifos = list(ifos)
    if not end > start:
        raise SegmentsError(f"end={end!r}: must be after start={start!r} (GPS seconds)")
    periods = _periods(float(start), float(end), train_stop, valid_stop)
    flags = list(flags or [DEFAULT_FLAGS[source].format(ifo=ifo) for ifo in ifos])
    vetoes = list(vetoes or [])
    by_ifo: dict[str, list[str]] = {ifo: [] for ifo in ifos}
    for flag in flags:
        ifo = flag_ifo(flag)
        if ifo not in by_ifo:
            raise SegmentsError(
                f"flags: {flag!r} belongs to {ifo!r}, which is not one of --ifos={ifos}; "
                "give flags of the requested IFOs only"
            )
        by_ifo[ifo].append(flag)
    if missing := [ifo for ifo, fl in by_ifo.items() if not fl]:
        raise SegmentsError(f"flags: none given for {missing}; give one flag per IFO at least")
    server = dqsegdb_server(host) if source == "dqsegdb" else open_data_server(host)
    span = segmentlist([segment(float(start), float(end))])
    live = segmentlist(span)  # a copy: &= works in place
    versions: dict[str, Any] = {}
    active: dict[str, float] = {}
    for flag in flags:
        segs, version = _query_flag(flag, start, end, source, server)
        segs = segs & span
        versions[flag] = version
        active[flag] = float(abs(segs))
        if not segs:
            raise SegmentsError(
                f"flag {flag} has no active segments in GPS [{start}, {end}) on {server}; "
                "check the flag name and version, the GPS span, and the IFO"
            )
        live &= segs
    if not live:
        raise SegmentsError(
            f"the flags {flags} are never active together in GPS [{start}, {end}) "
            f"(each alone: {active} s); choose another span or fewer IFOs"
        )
    for flag in vetoes:
        segs, version = _query_flag(flag, start, end, source, server)
        versions[flag] = version
        live -= segs
    out: dict[str, list[tuple[float, float]]] = {}
    for name, (a, b) in periods.items():
        cut = live & segmentlist([segment(a, b)])
        out[name] = [(float(s[0]), float(s[1])) for s in cut if abs(s) >= min_duration]
    if empty := [name for name, segs in out.items() if not segs]:
        raise SegmentsError(
            f"no segments of at least min_duration={min_duration:g} s left in the period(s) "
            f"{empty} ({ {n: periods[n] for n in empty} }) after intersecting {flags}"
            + (f" and removing {vetoes}" if vetoes else "")
            + "; widen the span, lower min_duration or move train_stop/valid_stop"
        )
    record = {
        "source": source, "server": server, "ifos": ifos, "start": float(start),
        "end": float(end), "flags": {ifo: fl for ifo, fl in by_ifo.items()},
        "vetoes": vetoes, "versions": versions, "min_duration": float(min_duration),
        "periods": {n: list(p) for n, p in periods.items()},
        "livetime": {n: sum(b - a for a, b in segs) for n, segs in out.items()},
        "files": {n: f"{n}.txt" for n in out},
        "queried_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    root = Path(out_dir)
    for name, segs in out.items():
        write_segments(root / f"{name}.txt", segs)
    write_segments(root / ALL, [s for segs in out.values() for s in segs])
    from aframe_lib.utils.fs import atomic_local_path

    with atomic_local_path(root / QUERY) as tmp:  # last: marks the directory complete
        Path(tmp).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    for name, segs in out.items():
        logger.info("%s: %d segments, %.0f s", name, len(segs), record["livetime"][name])
    return out_dir


def read_query(segments_file: str | Path) -> dict[str, Any] | None:
    """The ``segments.json`` beside a segments file, if any (flags and versions for the
    provenance of what is fetched over it)."""
    path = Path(segments_file).parent / QUERY
    return json.loads(path.read_text()) if path.is_file() else None


__all__ = [
    "SegmentsError",
    "flag_ifo",
    "query_segments",
    "read_query",
    "read_segments",
    "write_segments",
]
