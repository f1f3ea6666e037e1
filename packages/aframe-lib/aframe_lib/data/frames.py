"""GWF frame files: their names, and reading and writing them (lalframe through gwpy).

The one GWF module of aframe, shared by the real-data road (``aframe-data fetch`` over frame
files found through gwdatafind) and the online road (``aframe-data replay`` writes 1-second
low-latency frames, ``aframe-online`` reads them). Needs the ``[fetch]`` extra (gwpy and
lalsuite); gwpy is imported when a frame is read or written, not with this module.

File names follow the frame-naming convention of LIGO-T010150 that gwdatafind and the
low-latency frame directories use, ``{observatory}-{description}-{gps}-{duration}.gwf``, e.g.
``H-H1_llhoft-1264316116-1.gwf`` (1 s of H1 low-latency h(t)) or
``L-L1_HOFT_C00-1264312320-4096.gwf``.

Reading never fills a hole: a span not covered by the files, or NaN/inf samples in them, is a
:class:`~aframe_lib.utils.errors.DataError` naming the file, the GPS time and the channel.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aframe_lib.utils.errors import DataError

FRAME_NAME = re.compile(
    r"^(?P<observatory>[A-Z][A-Z0-9]*)-(?P<description>[^-/]+)-"
    r"(?P<start>\d+(?:\.\d+)?)-(?P<duration>\d+(?:\.\d+)?)\.gwf$"
)

# the low-latency h(t) description on the grid: H-H1_llhoft-{gps}-1.gwf
LLHOFT = "llhoft"


@dataclass(frozen=True, order=True)
class FrameFile:
    """One GWF file and the span its name says it holds: ``[start, start + duration)``."""

    start: float
    duration: float
    observatory: str
    description: str
    path: str

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def ifo(self) -> str | None:
        """The IFO the description starts with (``H1`` of ``H1_llhoft``), if any."""
        head = self.description.split("_", 1)[0]
        return head if re.fullmatch(r"[A-Z]\d", head) else None


def frame_name(observatory: str, description: str, start: float, duration: float) -> str:
    """The file name of a frame: ``{observatory}-{description}-{start}-{duration}.gwf``."""
    return f"{observatory}-{description}-{_num(start)}-{_num(duration)}.gwf"


def ifo_frame_name(ifo: str, tag: str, start: float, duration: float = 1) -> str:
    """The name of one IFO's frame, e.g. ``ifo_frame_name("H1", "llhoft", 1264316116)`` gives
    ``H-H1_llhoft-1264316116-1.gwf``."""
    return frame_name(ifo[0], f"{ifo}_{tag}", start, duration)


def parse_frame_name(path: str | os.PathLike) -> FrameFile:
    """The :class:`FrameFile` a path's name describes.

    Raises:
        ValueError: when the name does not follow the convention (temporary files of
            :func:`write_frame` never do).
    """
    name = Path(path).name
    match = FRAME_NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a frame file name (OBS-DESCRIPTION-GPS-DURATION.gwf)")
    return FrameFile(
        start=float(match["start"]),
        duration=float(match["duration"]),
        observatory=match["observatory"],
        description=match["description"],
        path=str(path),
    )


def covering(files: Iterable[str | os.PathLike | FrameFile], start: float, end: float) -> list:
    """The frame files (sorted by start) that overlap ``[start, end)``, checked to cover it whole.

    Raises:
        DataError: naming the first GPS stretch of ``[start, end)`` that no file holds.
    """
    frames = sorted(f if isinstance(f, FrameFile) else parse_frame_name(f) for f in files)
    used = [f for f in frames if f.end > start and f.start < end]
    t = start
    for f in used:
        if f.start > t:
            break
        t = max(t, f.end)
    if t < end:
        nxt = next((f.start for f in used if f.start > t), end)
        raise DataError(
            f"frames: no file holds GPS [{_num(t)}, {_num(min(nxt, end))}) of the requested "
            f"[{_num(start)}, {_num(end)}) (a missing frame file); the span is refused, never "
            "zero-filled: exclude it from the segments or fetch the missing frames"
        )
    return used


def write_frame(path: str | os.PathLike, series: Mapping[str, Any]) -> str:
    """Write gwpy series (``TimeSeries`` or ``StateVector``, keyed by channel) as one GWF file.

    The file appears whole or not at all (a temporary file in the same directory, then a
    rename), so a reader polling the directory never sees half a frame.

    Returns:
        ``path`` as a string.
    """
    from gwpy.timeseries import TimeSeriesDict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = TimeSeriesDict()
    for channel, ts in series.items():
        ts = ts.copy()
        ts.name = ts.channel = channel
        out[channel] = ts
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        out.write(tmp, format="gwf")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def read_frames(
    files: Sequence[str | os.PathLike | FrameFile],
    channels: Sequence[str],
    start: float | None = None,
    end: float | None = None,
    check_finite: bool = True,
) -> dict[str, Any]:
    """Read ``channels`` over ``[start, end)`` from GWF files, as gwpy series keyed by channel.

    ``start``/``end`` default to the files' own span. The span must be covered by the files
    (:func:`covering`) and, with ``check_finite``, hold only finite samples.

    Raises:
        DataError: a span not covered, a channel absent from a file, or NaN/inf samples,
            naming the file, the GPS time and the channel.
    """
    from gwpy.timeseries import TimeSeriesDict

    frames = sorted(f if isinstance(f, FrameFile) else parse_frame_name(f) for f in files)
    if not frames:
        raise DataError("frames: no frame files to read")
    start = frames[0].start if start is None else float(start)
    end = max(f.end for f in frames) if end is None else float(end)
    used = covering(frames, start, end)
    out: dict[str, Any] = {}
    for channel in channels:
        parts = []
        for f in used:
            lo, hi = max(start, f.start), min(end, f.end)
            try:
                got = TimeSeriesDict.read(f.path, [channel], start=lo, end=hi, format="gwf")
            except (RuntimeError, ValueError, KeyError) as exc:
                raise DataError(
                    f"frames: {f.path}: channel {channel!r} could not be read for GPS "
                    f"[{_num(lo)}, {_num(hi)}) ({exc}); check the channel name "
                    "(FrChannels lists a file's channels)"
                ) from exc
            ts = got[channel]
            if check_finite:
                _check_finite(ts, f.path, channel)
            parts.append(ts)
        series = parts[0]
        for ts in parts[1:]:
            series = series.append(ts, inplace=False, gap="raise")
        series.name = series.channel = channel
        out[channel] = series
    return out


def _check_finite(ts: Any, path: str, channel: str) -> None:
    import numpy as np

    bad = ~np.isfinite(np.asarray(ts.value))
    if bad.any():
        first = int(np.argmax(bad))
        gps = float(ts.t0.value) + first * float(ts.dt.value)
        raise DataError(
            f"frames: {path}: channel {channel!r} holds {int(bad.sum())} NaN/inf samples, the "
            f"first at GPS {gps:.6f}; the span is refused, never zero-filled: exclude it "
            "from the segments"
        )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


__all__ = [
    "FRAME_NAME",
    "LLHOFT",
    "FrameFile",
    "covering",
    "frame_name",
    "ifo_frame_name",
    "parse_frame_name",
    "read_frames",
    "write_frame",
]
