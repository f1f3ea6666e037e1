"""1-second frames landing in a directory, read second by second with their state vector.

:class:`FrameSource` polls a directory (``stat`` of the names the next second must have, every
``poll`` seconds: a directory of low-latency frames is small, and polling needs nothing beyond
the standard library; inotify would save a few milliseconds per frame) for the frames of each
IFO, named as the low-latency h(t) frames on the grid are (``H-H1_llhoft-{gps}-1.gwf``,
:mod:`aframe_lib.data.frames`), and reads them with :func:`~aframe_lib.data.frames.read_frames`
(gwpy over lalframe).

Why not sgn-ligo (the field's streaming framework, whose ``/dev/shm`` source does this): its
current releases need scipy < 1.17 and this environment pins scipy 1.17.1 (pip silently falls
back to sgn-ligo 0.1.0); pinning scipy 1.16 for every package would be a project-wide change for
one reader, and reading a 1-second frame with gwpy takes milliseconds against the second the
frame covers (``bench/lib/online.py`` measures the whole road), so the poll + gwpy reader was
kept. See docs/howto/online.md.

Every second is one :class:`Second`: its strain ``(num_ifos, sample_rate)`` or ``None`` with the
reason it is dead time:

- ``missing``: a frame of some IFO never came (a frame of that IFO for one of the next 16
  seconds arrived and ``late`` seconds passed, or ``timeout`` seconds passed with nothing
  newer); the source then jumps to
  the next second every IFO has a frame of, the seconds in between counted as dead time
  (:attr:`FrameSource.dead`). A frame that arrives after its second was given up is ignored
  (logged as late);
- ``unreadable``: a file gwpy cannot read, or without the channels;
- ``nonfinite``: NaN or inf strain;
- ``not ready``: a state-vector sample without every bit of ``bitmask`` set (default
  :data:`~aframe_lib.data.replay.READY_BITMASK` = 3: bit 0 ``HOFT_OK``, bit 1
  ``OBSERVATION_INTENT``);
- ``rate``: strain neither at the model's sample rate nor at an integer multiple of it (which
  :class:`~aframe_lib.online.engine.OnlineSearch` resamples as the offline search does), or
  at different rates in different IFOs.

The source never raises on bad data: it logs and goes on. Waiting for a frame costs a few
``stat`` calls per poll whatever the directory holds; the directory is listed only to find
where to start and after a ``timeout``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aframe_lib.data.frames import LLHOFT, ifo_frame_name, parse_frame_name
from aframe_lib.data.replay import READY_BITMASK, STATE_CHANNEL, STRAIN_CHANNEL

logger = logging.getLogger(__name__)

AHEAD = 16  # seconds after a missing one whose frames tell that it is missing, not late


@dataclass
class Second:
    """One second of every IFO: ``strain`` ``(num_ifos, n)`` float32, or ``None`` and why."""

    gps: int
    strain: np.ndarray | None
    reason: str | None = None
    rate: float | None = None  # Hz of ``strain``


class FrameSource:
    """The seconds of a directory of 1-second frames, in GPS order (see the module docstring).

    Args:
        directory: where the frames land.
        ifos: IFOs, in the model's channel order.
        sample_rate: the model's rate (Hz); frames at neither it nor a multiple of it are dead
            time.
        bitmask: state-vector bits that must all be set for a second to count.
        strain_channel: strain channel after ``{IFO}:``.
        state_channel: state-vector channel after ``{IFO}:``.
        tag: frame description after ``{IFO}_``.
        start: first GPS second; ``None``: the oldest second every IFO has a frame of.
        late: seconds to wait for a frame once a later frame of that IFO exists.
        timeout: seconds to wait for a frame when nothing newer has arrived.
        poll: seconds between looks at the directory.
        stop: a callable; the iteration ends when it returns true (checked while waiting).
    """

    def __init__(
        self,
        directory: str | Path,
        ifos: Sequence[str],
        sample_rate: float,
        bitmask: int = READY_BITMASK,
        strain_channel: str = STRAIN_CHANNEL,
        state_channel: str = STATE_CHANNEL,
        tag: str = LLHOFT,
        start: int | None = None,
        late: float = 1.0,
        timeout: float = 10.0,
        poll: float = 0.02,
        stop=None,
    ) -> None:
        self.directory = Path(directory)
        self.ifos = list(ifos)
        self.sample_rate = sample_rate
        self.bitmask = int(bitmask)
        self.strain_channel, self.state_channel, self.tag = strain_channel, state_channel, tag
        self.next = start
        self.late, self.timeout, self.poll = late, timeout, poll
        self.stop = stop or (lambda: False)
        self.resync = False
        self.dead: dict[str, int] = {}  # seconds of dead time by reason

    def path(self, ifo: str, gps: int) -> Path:
        return self.directory / ifo_frame_name(ifo, self.tag, gps)

    def _seconds(self, ifo: str) -> list[int]:
        out = []
        for p in self.directory.glob(f"{ifo[0]}-{ifo}_{self.tag}-*-1.gwf"):
            try:
                out.append(int(parse_frame_name(p).start))
            except ValueError:
                continue
        return out

    def _newer(self, ifo: str, gps: int) -> bool:
        """Whether a frame of ``ifo`` after ``gps`` is there: the next ``AHEAD`` names are
        looked up (a few ``stat`` calls, whatever the directory holds); a longer gap waits
        for ``timeout``."""
        return any(self.path(ifo, gps + k).exists() for k in range(1, AHEAD + 1))

    def _oldest_common(self, after: int | None) -> int | None:
        sets = [set(self._seconds(ifo)) for ifo in self.ifos]
        common = set.intersection(*sets) if sets else set()
        if after is not None:
            common = {t for t in common if t > after}
        return min(common) if common else None

    def __iter__(self) -> Iterator[Second]:
        while not self.stop():
            if self.next is None or self.resync:
                t = self._oldest_common(None if self.next is None else self.next - 1)
                if t is None:
                    time.sleep(self.poll)
                    continue
                if self.next is not None and t > self.next:
                    self._count("missing", t - self.next)
                self.next, self.resync = t, False
            second = self._wait(self.next)
            if second is None:
                return
            if second.reason is not None:
                self._count(second.reason, 1)
            yield second
            self.next += 1

    def _count(self, reason: str, seconds: int) -> None:
        self.dead[reason] = self.dead.get(reason, 0) + seconds

    def _wait(self, gps: int) -> Second | None:
        began = time.monotonic()
        newer_since: float | None = None
        while True:
            missing = [ifo for ifo in self.ifos if not self.path(ifo, gps).exists()]
            if not missing:
                return self.read(gps)
            if self.stop():
                return None
            now = time.monotonic()
            if all(self._newer(ifo, gps) for ifo in missing):
                newer_since = newer_since or now
                if now - newer_since >= self.late:
                    logger.warning(
                        "GPS %d: no frame of %s (dead time until the next second that every "
                        "IFO has)", gps, ",".join(missing),
                    )  # fmt: skip
                    self.resync = True
                    return Second(gps, None, "missing")
            elif now - began >= self.timeout:
                logger.warning(
                    "GPS %d: no frame of %s for %g s (dead time until frames come back)",
                    gps, ",".join(missing), self.timeout,
                )  # fmt: skip
                self.resync = True
                return Second(gps, None, "missing")
            time.sleep(self.poll)

    def read(self, gps: int) -> Second:
        """The second ``gps`` from its frames (dead time, with the reason, when bad)."""
        from aframe_lib.data.frames import read_frames

        rows = []
        for ifo in self.ifos:
            path = self.path(ifo, gps)
            strain_ch, state_ch = f"{ifo}:{self.strain_channel}", f"{ifo}:{self.state_channel}"
            try:
                got = read_frames([path], [strain_ch, state_ch], check_finite=False)
            except Exception as exc:  # never stop on bad data
                logger.warning("GPS %d: %s unreadable (%s): dead time", gps, path, exc)
                return Second(gps, None, "unreadable")
            x = np.asarray(got[strain_ch].value)
            state = np.asarray(got[state_ch].value).astype(np.int64)
            if ((state & self.bitmask) != self.bitmask).any():
                logger.info("GPS %d: %s state vector not ready: dead time", gps, ifo)
                return Second(gps, None, "not ready")
            if not np.isfinite(x).all():
                logger.warning("GPS %d: %s strain has NaN/inf: dead time", gps, ifo)
                return Second(gps, None, "nonfinite")
            if len(x) % round(self.sample_rate) or (rows and len(x) != rows[0].shape[-1]):
                logger.warning(
                    "GPS %d: %s strain at %d Hz, neither the model's %g Hz nor a multiple of it "
                    "that every IFO shares: dead time", gps, ifo, len(x), self.sample_rate,
                )  # fmt: skip
                return Second(gps, None, "rate")
            rows.append(x.astype(np.float32))
        return Second(gps, np.stack(rows), rate=float(rows[0].shape[-1]))
