"""``aframe-data replay``: background strain written out as low-latency frames, at real-time pace.

Each second of every IFO becomes one GWF file named as the low-latency h(t) frames on the grid
are, ``{OUT}/H-H1_llhoft-{gps}-1.gwf`` (:func:`~aframe_lib.data.frames.ifo_frame_name`),
holding two channels (the names of the LIGO low-latency frames):

- ``{IFO}:GDS-CALIB_STRAIN_CLEAN``: the strain, at the data's rate (float64);
- ``{IFO}:GDS-CALIB_STATE_VECTOR``: the calibration state vector at 16 Hz (int32), every sample
  ``READY_BITMASK`` = 3 (bit 0 ``HOFT_OK``, bit 1 ``OBSERVATION_INTENT``: the bits of an
  analysis-ready second that ``aframe-online`` requires by default).

The frames keep the data's GPS times. Second ``[t, t + 1)`` is written (atomically, see
:func:`~aframe_lib.data.frames.write_frame`) when the wall clock reaches
``wall0 + (t + 1 - gps0) / speed``, ``gps0`` the first second replayed and ``wall0`` the start of
the replay: the pace of a detector writing frames, ``speed`` times faster (``--speed 0``: as
fast as the disk allows). The gaps between the data's files are replayed as gaps (no frames for
those seconds, the clock running on), as a detector's downtime looks to a consumer.

With ``--injections WAVEFORMS`` (a waveform file of the data contract, at the strain's rate), the
waveforms are first added to the strain every ``--injection_spacing`` seconds (each moved later
by up to ``--injection_jitter``, 1 s by default, so that mergers fall at every phase of the
search's output grid) by
:func:`~aframe_lib.search.injections.inject_population` (the injections ``aframe-train evaluate``
makes, at random sky positions, at their physical amplitude), into ``OUT/.injected/``; the
table of what was injected (GPS times, SNRs, parameters) is ``OUT/injections.hdf5``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .frames import LLHOFT, ifo_frame_name, write_frame

logger = logging.getLogger(__name__)

STRAIN_CHANNEL = "GDS-CALIB_STRAIN_CLEAN"
STATE_CHANNEL = "GDS-CALIB_STATE_VECTOR"
STATE_RATE = 16.0
# bit 0 HOFT_OK, bit 1 OBSERVATION_INTENT of the GDS calibration state vector
READY_BITMASK = 3


def write_second(
    out: str | Path,
    ifo: str,
    gps: int,
    strain: np.ndarray,
    state: int | np.ndarray = READY_BITMASK,
    strain_channel: str = STRAIN_CHANNEL,
    state_channel: str = STATE_CHANNEL,
    tag: str = LLHOFT,
) -> str:
    """Write one IFO's 1-second frame at ``gps``: ``strain`` (its length is the sample rate)
    and the state vector (one value for the second, or 16 samples). Returns the path."""
    from gwpy.timeseries import StateVector, TimeSeries

    strain = np.asarray(strain, np.float64)
    states = np.broadcast_to(np.asarray(state, np.int32), (int(STATE_RATE),)).copy()
    series = {
        f"{ifo}:{strain_channel}": TimeSeries(strain, t0=gps, sample_rate=len(strain)),
        f"{ifo}:{state_channel}": StateVector(states, t0=gps, sample_rate=STATE_RATE),
    }
    return write_frame(Path(out) / ifo_frame_name(ifo, tag, gps), series)


def replay(
    data: str,
    out: str,
    speed: float = 1.0,
    injections: str | None = None,
    ifos: list[str] = ["H1", "L1"],  # noqa: B006 - shown in --help
    injection_spacing: float = 16.0,
    injection_start: float = 32.0,
    injection_jitter: float = 1.0,
    max_seconds: float | None = None,
    keep: int | None = None,
    seed: int = 0,
) -> str:
    """Write the strain of ``data`` as 1-second GWF frames per IFO, at real-time pace.

    Args:
        data: background strain: a background directory or file (or a mock-data-challenge
            file), as ``aframe-train search`` reads it, at the rate the frames get.
        out: directory the frames are written to (created).
        speed: replayed seconds per wall-clock second; 0: as fast as possible.
        injections: a waveform file (``waveforms.hdf5``, at the strain's rate) to inject into
            the strain before it is replayed; ``OUT/injections.hdf5`` records them.
        ifos: IFOs to replay, in order.
        injection_spacing: seconds between injections.
        injection_start: seconds from each file's start to its first injection (leave the
            online search its ``psd.length`` of warm-up).
        injection_jitter: seconds; each injection moves later by a time drawn uniformly from
            ``[0, injection_jitter)``, so mergers fall at every phase of the online search's
            output grid and of the 1-second frames, as real signals do (1 s covers every
            inference rate of at least 1 Hz); 0 puts them on ``injection_start`` plus whole
            ``injection_spacing`` seconds.
        max_seconds: stop after this many seconds of GPS time (``None``: replay everything).
        keep: delete each frame this many seconds after writing it, as a low-latency frame
            directory keeps only its last few minutes (``None``: keep every frame).
        seed: seed of the injections' sky positions and jitter.

    Returns:
        ``out``.
    """
    from aframe_lib.search.strain import find_spans
    from aframe_lib.utils.errors import ConfigError

    if speed < 0:
        raise ConfigError(f"--speed={speed}: must be >= 0 (0 replays as fast as possible)")
    if injections is not None and not 0 <= injection_jitter < injection_spacing:
        raise ConfigError(
            f"--injection_jitter={injection_jitter}: must be >= 0 and less than "
            f"--injection_spacing ({injection_spacing} s)"
        )
    Path(out).mkdir(parents=True, exist_ok=True)
    if injections is not None:
        from aframe_lib.data.waveforms import read_waveforms
        from aframe_lib.search.injections import inject_population

        where = Path(out) / ".injected"
        waveforms = read_waveforms(injections)
        table = inject_population(
            data,
            str(where),
            waveforms,
            ifos,
            injection_spacing,
            injection_start,
            seed=seed,
            jitter=injection_jitter,
        )
        (where / "injections.hdf5").replace(Path(out) / "injections.hdf5")
        logger.info("replay: %d injections, table in %s", len(table["time"]), out)
        data = str(where)
    spans = find_spans(data, ifos)
    for span in spans:
        rate = span.sample_rate
        if not float(rate).is_integer() or not float(span.t0).is_integer():
            raise ConfigError(
                f"{data}: strain from GPS {span.t0} at {rate} Hz cannot be cut into whole "
                "1-second frames (integer GPS start and sample rate needed)"
            )
    if not spans:
        return out
    gps0, wall0 = spans[0].t0, time.monotonic()
    # the GPS-to-wall-clock mapping of this replay (a log line, for latency measurements)
    logger.info("replay: GPS %d begins at unix time %.6f (speed %g)", gps0, time.time(), speed)
    written = 0
    for span in spans:
        rate = int(span.sample_rate)
        for i in range(int(span.duration)):
            gps = int(span.t0) + i
            if max_seconds is not None and gps - gps0 >= max_seconds:
                return out
            x = span.read(i * rate, (i + 1) * rate)
            if speed > 0:
                delay = wall0 + (gps + 1 - gps0) / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            for j, ifo in enumerate(span.ifos):
                write_second(out, ifo, gps, x[j])
                if keep is not None:
                    Path(out, ifo_frame_name(ifo, LLHOFT, gps - keep)).unlink(missing_ok=True)
            written += 1
    logger.info("replay: %d seconds of %s written to %s", written, ",".join(ifos), out)
    return out


def frame_paths(out: str | Path, ifos: Sequence[str], gps: int) -> list[Path]:
    """The frame files of second ``gps`` for ``ifos`` in ``out``."""
    return [Path(out) / ifo_frame_name(ifo, LLHOFT, gps) for ifo in ifos]
