"""Real background strain over analysis segments, chunk by chunk, in the data contract.

``aframe-data fetch`` is :func:`fetch_strain` (needs the ``[fetch]`` extra: ``pip install
'aframe-lib[fetch]'``; gwpy, gwdatafind and lalframe are imported when a fetch runs). Over a
segments file (``aframe-data segments``) or one ``[start, end)``:

1. **Plan.** Each segment is cut into chunks of at most ``max_duration`` seconds whose edges
   fall on the source files' edges (frame files found through gwdatafind, or the open-data
   files gwosc lists), so a chunk reads whole files; a gap between segments splits the work.
2. **Fetch** each chunk (``jobs`` at a time, each in its own process): every IFO's strain from
   frames (``frametypes`` + ``channels``: gwdatafind for the files, :mod:`.frames` to read them)
   or from open data (``TimeSeries.fetch_open_data``, no download cache; a strain file
   download that fails for a passing reason, HTTP 5xx/429 or the network, is retried with
   backoff like every service call, :mod:`.services`), plus a margin of
   ``ceil(100 / sample_rate)`` s (at least 1 s) inside the segment on each side.
3. **Resample** to ``sample_rate`` with the search's own filter (torchaudio's ``kaiser_best``
   Kaiser-windowed sinc, :func:`aframe_lib.search.resample.decimate`; an integer factor), in
   blocks. Thanks to the margin a chunk equals its stretch of the *whole segment* resampled at
   once (zero-padded beyond the segment's ends only), so chunking leaves no trace and training
   data are what deployment sees.
4. **Write** ``background-{t0}-{duration}.hdf5`` (:func:`~.background.write_background`,
   atomic) with the provenance record (:mod:`.provenance`: source, channels, frame types,
   flags and versions from the ``segments.json`` beside the segments file, GPS span per IFO)
   and no wall-clock values: a rerun writes byte-identical files.

A file that exists is complete (writes are atomic), so a rerun fetches only the chunks still
missing. A hole inside a segment (a missing frame file, NaN/inf samples, a channel absent from a
frame, open data that do not cover it) refuses that chunk, naming the file, GPS time and IFO;
nothing is ever zero-filled. Refused chunks are listed in ``refused.json`` and fail the fetch
(exit 2) unless ``skip_bad``. ``fetch.json`` (written last) marks a complete fetch.

Memory is bounded by ``jobs`` x one chunk (plus its margin) of every IFO at the source rate,
float64, whatever the total; nothing is cached: at a month's scale a download cache would
double the disk (the frames are read where they lie).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aframe_lib.utils.errors import DataError

logger = logging.getLogger(__name__)

MANIFEST = "fetch.json"
REFUSED = "refused.json"
_BLOCK = 2**22  # source samples resampled at once (bounds the FFT's memory)


@dataclass(frozen=True)
class Chunk:
    """One output file: ``[start, end)`` of every IFO, read from ``[lo, hi)`` (the margin).

    Args:
        start: GPS start of the file (s).
        end: GPS end of the file (s).
        lo: GPS start of what is read (``start`` less the margin, not before the segment).
        hi: GPS end of what is read.
        files: IFO -> frame files (local paths) covering ``[lo, hi)``; empty for open data.
    """

    start: float
    end: float
    lo: float
    hi: float
    files: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """Where strain comes from and how it is recorded (the provenance of what is written).

    Args:
        kind: ``"frames"`` (gwdatafind + GWF), ``"gwosc"`` (open data) or ``"get"`` (gwpy's
            ``TimeSeries.get``, the single-span :func:`fetch_background`).
        ifos: IFO codes.
        channels: IFO -> channel (frames, get).
        frametypes: IFO -> frame type (frames).
        source_rate: open-data rate asked for (Hz).
        host: server URL (datafind or open data); empty: the client's setting.
        flags: IFO -> data-quality flags with versions (provenance only).
        vetoes: veto flags with versions (provenance only).
        flag_source: where the flags were asked, ``"dqsegdb"`` or ``"gwosc"`` (provenance
            only); ``None``: no segments query.
        flag_server: the segments server asked (provenance only).
    """

    kind: str
    ifos: tuple[str, ...]
    channels: dict[str, str] = field(default_factory=dict)
    frametypes: dict[str, str] = field(default_factory=dict)
    source_rate: float = 4096.0
    host: str | None = None
    flags: dict[str, list[str]] = field(default_factory=dict)
    vetoes: list[str] = field(default_factory=list)
    flag_source: str | None = None
    flag_server: str | None = None


def _num(x: float) -> str:
    """A GPS time as written in messages: an integer without ``.0``."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def margin_seconds(sample_rate: float) -> float:
    """Seconds read beyond each side of a chunk: longer than the resampling filter's half
    length (``64 / 0.9476`` output samples), whole seconds so the grid is kept."""
    return float(max(1, math.ceil(100.0 / sample_rate)))


# ---------------------------------------------------------------- plan


def _frame_files(source: Source, ifo: str, start: float, end: float) -> list[str]:
    """The frame files of ``ifo`` overlapping ``[start, end)``, from gwdatafind (retried)."""
    import gwdatafind

    from .services import call, datafind_server

    server = datafind_server(source.host)
    frametype = source.frametypes[ifo]
    urls = call(
        lambda: gwdatafind.find_urls(ifo[0], frametype, math.floor(start), math.ceil(end),
                                     urltype="file", on_gaps="ignore", host=server),
        f"frame type {frametype} in GPS [{_num(start)}, {_num(end)})", server,
    )  # fmt: skip
    return sorted(u.split("://localhost", 1)[-1].split("file://", 1)[-1] for u in urls)


def _open_data_edges(source: Source, ifo: str, start: float, end: float) -> list[float]:
    """The file edges of the open data of ``ifo`` over ``[start, end)`` (gwosc's file list)."""
    from gwosc.locate import get_urls
    from gwosc.utils import url_segment

    from .services import call, open_data_server

    server = open_data_server(source.host)
    try:
        urls = call(
            lambda: get_urls(ifo, int(start), math.ceil(end), sample_rate=int(source.source_rate),
                             host=server),
            f"{ifo} open data in GPS [{_num(start)}, {_num(end)})", server,
        )  # fmt: skip
    except ValueError:  # no dataset covers it whole: the chunks there are refused later
        return []
    return sorted({float(x) for u in urls for x in url_segment(u)})


def plan(
    segments: Sequence[tuple[float, float]], source: Source, max_duration: float,
    sample_rate: float,
) -> list[Chunk]:  # fmt: skip
    """Cut ``segments`` into chunks of at most ``max_duration`` s with edges on file edges.

    From each chunk start the next edge is the furthest source-file edge within
    ``max_duration`` (of any IFO), else ``start + max_duration`` (files longer than a chunk).
    """
    from .frames import parse_frame_name

    if not max_duration > 0:
        raise DataError(f"max_duration={max_duration!r}: must be a positive number of seconds")
    pad = margin_seconds(sample_rate)
    chunks = []
    for s, e in segments:
        files: dict[str, list[str]] = {}
        edges: set[float] = set()
        for ifo in source.ifos:
            if source.kind == "frames":
                files[ifo] = _frame_files(source, ifo, s, e)
                for f in files[ifo]:
                    meta = parse_frame_name(f)
                    edges |= {meta.start, meta.end}
            elif source.kind == "gwosc":
                edges |= set(_open_data_edges(source, ifo, s, e))
        inner = sorted(x for x in edges if s < x < e) + [e]
        t = s
        while t < e:
            reach = [x for x in inner if t < x <= t + max_duration]
            stop = reach[-1] if reach else min(t + max_duration, e)
            lo, hi = max(s, t - pad), min(e, stop + pad)
            used = {ifo: [f for f in fl if _overlaps(f, lo, hi)] for ifo, fl in files.items()}
            chunks.append(Chunk(t, stop, lo, hi, used))
            t = stop
    return chunks


def _overlaps(path: str, lo: float, hi: float) -> bool:
    from .frames import parse_frame_name

    meta = parse_frame_name(path)
    return meta.end > lo and meta.start < hi


# ---------------------------------------------------------------- one chunk

# what a strain file download that failed for a passing reason says: gwpy's fetch_open_data
# keeps only the text of its last error ("No data found ..., last error: HTTP Error 503: ..."),
# so the text is all there is to tell a loaded server from data that are not there
_TRANSIENT_DOWNLOAD = re.compile(
    r"HTTP Error (5\d\d|429)|urlopen error|timed out|Connection (reset|refused|aborted)"
    r"|Remote end closed|RemoteDisconnected|IncompleteRead"
)


def _last_error(exc: BaseException) -> str:
    """The message of ``exc``, or of the last exception of a (nested) exception group."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[-1]
    return str(exc)


def _transient_download(exc: BaseException) -> bool:
    """Whether an open-data fetch failed on a transient download error (5xx, 429, network)."""
    return bool(_TRANSIENT_DOWNLOAD.search(_last_error(exc)))


def _read(source: Source, ifo: str, chunk: Chunk):
    """One IFO's strain over ``[chunk.lo, chunk.hi)`` as a gwpy ``TimeSeries``."""
    from gwpy.timeseries import TimeSeries

    if source.kind == "frames":
        from .frames import read_frames

        channel = source.channels[ifo]
        if not chunk.files.get(ifo):
            raise DataError(
                f"{ifo}: gwdatafind lists no {source.frametypes[ifo]} frame files for GPS "
                f"[{_num(chunk.lo)}, {_num(chunk.hi)}) (missing frames); the chunk is refused"
            )
        return read_frames(chunk.files[ifo], [channel], chunk.lo, chunk.hi)[channel]
    if source.kind == "gwosc":
        from .services import call, open_data_server

        server = open_data_server(source.host)
        rate = int(source.source_rate)

        def fetch():
            try:
                return TimeSeries.fetch_open_data(
                    ifo, chunk.lo, chunk.hi, host=server, sample_rate=rate, cache=False
                )
            except (ValueError, ExceptionGroup) as exc:
                if _transient_download(exc):  # retried by ``call`` as a ConnectionError
                    raise ConnectionError(_last_error(exc)) from exc
                raise

        try:
            return call(fetch, f"{ifo} open data in GPS [{_num(chunk.lo)}, {_num(chunk.hi)})",
                        server)  # fmt: skip
        except (ValueError, ExceptionGroup) as exc:  # gwpy 4: a GetExceptionGroup of sources
            why = exc
            while isinstance(why, ExceptionGroup):
                why = why.exceptions[-1]
            raise DataError(
                f"{ifo}: no open data for all of GPS [{_num(chunk.lo)}, {_num(chunk.hi)}) on "
                f"{server} ({str(why).splitlines()[0][:300]}); the chunk is refused"
            ) from exc
    return TimeSeries.get(source.channels[ifo], chunk.lo, chunk.hi)


def resample(x, factor: int):
    """``decimate(x, factor)`` (the search's resampler, zero-padded beyond ``x``'s ends) of a
    float64 ``(channels, size)`` array, computed in blocks of :data:`_BLOCK` source samples:
    the same samples (to float64 rounding) with bounded memory."""
    import numpy as np
    import torch

    from aframe_lib.search.resample import decimate, margin

    if factor == 1:
        return np.asarray(x, dtype=np.float64)
    size = x.shape[-1]
    n_out = math.ceil(size / factor)
    pad = margin(factor)
    step = max(1, _BLOCK // factor)
    out = np.empty((x.shape[0], n_out), np.float64)
    for j0 in range(0, n_out, step):
        j1 = min(n_out, j0 + step)
        a, b = max(0, j0 * factor - pad), min(size, j1 * factor + pad)
        y = decimate(torch.from_numpy(np.ascontiguousarray(x[:, a:b])), factor)
        k0 = (j0 * factor - a) // factor
        out[:, j0:j1] = y[:, k0 : k0 + j1 - j0].numpy()
    return out


def fetch_chunk(chunk: Chunk, source: Source, sample_rate: float, path: str) -> str:
    """Fetch, resample and write one chunk (see the module docstring).

    Raises:
        DataError: a hole (missing frame, NaN/inf, absent channel, uncovered open data) or
            a rate that cannot be resampled to ``sample_rate``, naming file/GPS/IFO.
    """
    import numpy as np

    from .background import write_background
    from .provenance import fetched

    rows = []
    for ifo in source.ifos:
        try:
            ts = _read(source, ifo, chunk)
        except DataError as exc:
            if str(exc).startswith(f"{ifo}:"):
                raise
            raise DataError(f"{ifo}: {exc}") from exc
        rate = float(ts.sample_rate.value)
        factor = _factor(ifo, rate, sample_rate)
        expect = round((chunk.hi - chunk.lo) * rate)
        t0 = float(ts.t0.value)
        if abs(t0 - chunk.lo) > 0.5 / rate or len(ts) != expect:
            raise DataError(
                f"{ifo}: got {len(ts)} samples from GPS {t0!r}, expected {expect} from "
                f"{chunk.lo!r}: the data do not cover GPS [{_num(chunk.lo)}, {_num(chunk.hi)}); "
                "the chunk is refused"
            )
        x = np.asarray(ts.value, dtype=np.float64)
        if not np.isfinite(x).all():
            first = int(np.argmax(~np.isfinite(x)))
            raise DataError(
                f"{ifo}: strain is {x[first]} at GPS {chunk.lo + first / rate:.6f} "
                f"({int((~np.isfinite(x)).sum())} non-finite samples in [{_num(chunk.lo)}, "
                f"{_num(chunk.hi)})); the chunk is refused, never zero-filled"
            )
        y = resample(x[None], factor)[0]
        skip = round((chunk.start - chunk.lo) * sample_rate)
        rows.append(y[skip : skip + round((chunk.end - chunk.start) * sample_rate)])
        del ts, x, y
    record = fetched(
        {ifo: [[chunk.start, chunk.end]] for ifo in source.ifos},
        source={"get": "TimeSeries.get"}.get(source.kind, source.kind),
        channels=source.channels,
        frametypes=source.frametypes,
        flags=source.flags,
        vetoes=source.vetoes,
        flag_source=source.flag_source,
        flag_server=source.flag_server,
    )
    strain = dict(zip(source.ifos, rows, strict=True))
    write_background(path, strain, t0=chunk.start, sample_rate=sample_rate, provenance=record)
    return path


def _factor(ifo: str, rate: float, sample_rate: float) -> int:
    ratio = rate / sample_rate
    if ratio < 1 or not math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-9):
        raise DataError(
            f"{ifo}: the source is sampled at {rate:g} Hz, not a whole multiple of "
            f"sample_rate={sample_rate:g} Hz; ask for {rate:g} Hz or a divisor of it"
        )
    return int(round(ratio))


def _one(args: tuple) -> tuple[str, str | None]:
    """Worker: fetch one chunk; ``(path, None)`` or ``(path, why it was refused)``."""
    chunk, source, sample_rate, path = args
    try:
        fetch_chunk(chunk, source, sample_rate, path)
    except DataError as exc:
        return path, str(exc)
    return path, None


# ---------------------------------------------------------------- the command


def fetch_strain(
    data_dir: str | None = None,
    ifos: list[str] | None = None,
    sample_rate: float = 2048.0,
    segments: str | None = None,
    start: float | None = None,
    end: float | None = None,
    frametypes: list[str] | None = None,
    channels: list[str] | None = None,
    source_rate: float = 4096.0,
    max_duration: float = 4096.0,
    jobs: int = 1,
    skip_bad: bool = False,
    host: str | None = None,
    path: str | None = None,
) -> str:
    """Fetch real strain over analysis segments into background files (the data contract).

    Args:
        data_dir: Directory for ``background-{t0}-{duration}.hdf5`` (local).
        ifos: IFO codes, one dataset each.
        sample_rate: Rate (Hz) written; the source's rate must be a whole multiple of it.
        segments: Segments file (``aframe-data segments``' ``train.txt`` ...); or give
            ``start``/``end``.
        start: GPS start of one segment (without ``segments``).
        end: GPS end of one segment.
        frametypes: One frame type per IFO (``H1_HOFT_C00``, ...): read frames found with
            gwdatafind (``GWDATAFIND_SERVER``); empty: open data.
        channels: One channel per IFO (``H1:GDS-CALIB_STRAIN_CLEAN``), with ``frametypes``.
        source_rate: Open data: the rate of the files asked for (4096 or 16384 Hz).
        max_duration: Longest file (s); chunk edges fall on source-file edges.
        jobs: Chunks fetched in parallel (processes); memory grows with it.
        skip_bad: Keep going past refused chunks (listed in ``refused.json``) and succeed.
        host: GWDataFind or open-data server URL; empty: ``GWDATAFIND_SERVER`` /
            ``GWOSC_SERVER_URL``.
        path: Instead of ``data_dir``: the one file (local or ``s3://``) of ``[start, end)``,
            unchunked (:func:`fetch_background`; the form of earlier releases).

    Returns:
        ``data_dir`` (or ``path``).

    Raises:
        DataError: bad arguments, or refused chunks without ``skip_bad`` (the good chunks are
            kept; a rerun fetches only what is missing).
    """
    from .background import background_fname
    from .segments import read_query, read_segments

    ifos = list(ifos or [])
    if (data_dir is None) == (path is None):
        raise DataError("give --data_dir DIR (background files) or --path FILE (one file)")
    if path is not None and (segments is not None or start is None or end is None):
        raise DataError("--path FILE takes one span: give --start and --end, not --segments")
    if not ifos:
        raise DataError("ifos: give at least one IFO, e.g. --ifos=[H1,L1]")
    if not sample_rate > 0:
        raise DataError(f"sample_rate={sample_rate!r}: must be a positive number (Hz)")
    if not jobs >= 1:
        raise DataError(f"jobs={jobs!r}: must be at least 1")
    if (segments is None) == (start is None or end is None):
        raise DataError(
            "give --segments FILE (from aframe-data segments) or --start and --end, not both"
        )
    if segments is None and not end > start:
        raise DataError(f"end={end!r}: must be after start={start!r} (GPS seconds)")
    frametypes, channels = list(frametypes or []), list(channels or [])
    if frametypes or (channels and path is None):
        for name, values in (("frametypes", frametypes), ("channels", channels)):
            if len(values) != len(ifos):
                raise DataError(
                    f"{name}={values}: give one per IFO ({ifos}) to read frames (both "
                    "--frametypes and --channels), or neither for open data"
                )
    if path is not None:
        if frametypes:
            raise DataError("--path fetches open data or --channels with TimeSeries.get; "
                            "for --frametypes give --data_dir")  # fmt: skip
        return fetch_background(path, ifos, start, end, sample_rate, channels)
    spans = [(float(start), float(end))] if segments is None else read_segments(segments)
    query = read_query(segments) if segments else None
    flags, dq = {}, {}
    if query:
        versions = query.get("versions", {})

        def versioned(f: str) -> str:  # a DQSegDB flag asked without version: the one used
            if ":" not in f or f.count(":") == 2 or versions.get(f) is None:
                return f
            return f"{f}:{versions[f]}"

        flags = {ifo: [versioned(f) for f in fl]
                 for ifo, fl in query.get("flags", {}).items() if ifo in ifos}  # fmt: skip
        dq = dict(vetoes=[versioned(f) for f in query.get("vetoes", [])],
                  flag_source=query.get("source"), flag_server=query.get("server"))  # fmt: skip
    source = Source(
        kind="frames" if frametypes else "gwosc", ifos=tuple(ifos),
        channels=dict(zip(ifos, channels, strict=True)) if channels else {},
        frametypes=dict(zip(ifos, frametypes, strict=True)) if frametypes else {},
        source_rate=float(source_rate), host=host or None, flags=flags, **dq,
    )  # fmt: skip
    chunks = plan(spans, source, max_duration, sample_rate)
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    todo = []
    for c in chunks:
        path = str(root / background_fname(c.start, c.end - c.start))
        if not os.path.exists(path):  # written atomically: present means complete
            todo.append((c, source, float(sample_rate), path))
    logger.info("%d chunks, %d to fetch, %d done", len(chunks), len(todo), len(chunks) - len(todo))
    refused = dict(_run(todo, jobs))
    refused = {p: why for p, why in refused.items() if why}
    _write_json(root / REFUSED, {"refused": [
        {"file": Path(p).name, "reason": why} for p, why in sorted(refused.items())
    ]})  # fmt: skip
    if refused and not skip_bad:
        first = next(iter(sorted(refused.items())))
        raise DataError(
            f"{len(refused)} of {len(chunks)} chunks refused (listed in {root / REFUSED}); "
            f"the first, {Path(first[0]).name}: {first[1]}. Fix the data or the segments, or "
            "pass --skip_bad to keep the rest"
        )
    done = [c for c in chunks if str(root / background_fname(c.start, c.end - c.start))
            not in refused]  # fmt: skip
    _write_json(root / MANIFEST, {
        "source": {k: v for k, v in asdict(source).items() if k != "host"},
        "sample_rate": float(sample_rate), "max_duration": float(max_duration),
        "segments": [list(s) for s in spans],
        "files": [background_fname(c.start, c.end - c.start) for c in done],
        "refused": sorted(Path(p).name for p in refused),
    })  # fmt: skip
    return data_dir


def _run(todo: list[tuple], jobs: int):
    """Yield ``(path, refusal or None)`` for each chunk, ``jobs`` processes at a time."""
    if jobs == 1 or len(todo) <= 1:
        for args in todo:
            yield _one(args)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: no fork of a process holding threads (torch, the HTTP clients)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        yield from pool.map(_one, todo)


def _write_json(path: Path, obj: Any) -> None:
    from aframe_lib.utils.fs import atomic_local_path

    with atomic_local_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def fetch_background(
    path: str,
    ifos: Sequence[str],
    start: float,
    end: float,
    sample_rate: float,
    channels: Sequence[str] = (),
) -> str:
    """Fetch ``[start, end)`` of every IFO into one background file (the single-span road).

    Open data (``TimeSeries.fetch_open_data``) or, with ``channels``, gwpy's
    ``TimeSeries.get`` (which finds the frames itself); resampled and written as
    :func:`fetch_strain` does. For a month of data use :func:`fetch_strain`.

    Args:
        path: The file (local or ``s3://``), named ``background-{start}-{end - start}.hdf5``
            (:func:`~aframe_lib.data.background.background_fname`).
        ifos: IFO codes, one dataset each.
        start: GPS start (s).
        end: GPS end (s).
        sample_rate: Rate (Hz) the strain is resampled to.
        channels: One frame channel per IFO; empty: open data.

    Returns:
        ``path``.
    """
    if not end > start:
        raise DataError(f"end={end!r}: must be after start={start!r} (GPS seconds)")
    if channels and len(channels) != len(ifos):
        raise DataError(
            f"channels={list(channels)}: give one channel per IFO ({list(ifos)}), or none for "
            "open data"
        )
    source = Source(
        kind="get" if channels else "gwosc", ifos=tuple(ifos),
        channels=dict(zip(ifos, channels, strict=True)) if channels else {},
    )  # fmt: skip
    fetch_chunk(Chunk(float(start), float(end), float(start), float(end)), source,
                float(sample_rate), path)  # fmt: skip
    return path


__all__ = ["Chunk", "Source", "fetch_background", "fetch_chunk", "fetch_strain", "plan"]
