"""What the data tasks execute, on the host or inside the data image.

    python -m aframe_flow.payloads background --out DIR --ifos H1 L1 --sample-rate 2048 ...
    python -m aframe_flow.payloads waveforms --out FILE --num 2000 --sample-rate 2048 ...
    python -m aframe_flow.payloads fetch --out FILE --ifos H1 L1 --start T0 --end T1 ...

Each writes its files atomically (aframe-lib's writers), so a killed run leaves nothing that counts
as done. Heavy imports (aframe-lib's data modules, torch, gwpy) happen inside the functions.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)

MANIFEST = "background.json"


def synthetic_background(
    out: str,
    ifos: Sequence[str],
    sample_rate: float,
    duration: float,
    segment_duration: float,
    seed: int,
) -> list[str]:
    """Coloured Gaussian background (aframe-lib), then ``background.json`` naming the files."""
    from aframe_lib.data.noise import generate_background
    from aframe_lib.utils import fs

    files = generate_background(out, list(ifos), duration, sample_rate, segment_duration, seed=seed)
    manifest = dict(
        ifos=list(ifos),
        sample_rate=sample_rate,
        duration=duration,
        segment_duration=segment_duration,
        seed=seed,
        files=[str(f).rsplit("/", 1)[-1] for f in files],
    )
    fs.write_bytes_atomic(fs.join(out, MANIFEST), json.dumps(manifest, indent=2).encode())
    return files


def waveforms(
    out: str,
    num: int,
    sample_rate: float,
    duration: float,
    coalescence_time: float,
    seed: int,
) -> None:
    """IMRPhenomD waveforms drawn by aframe-lib, written to ``out``."""
    from aframe_lib.data.synthetic import generate_waveforms

    generate_waveforms(out, num, sample_rate, duration, coalescence_time, seed=seed)


def _fetch_one(ifo: str, channel: str | None, start: float, end: float):
    """One IFO's strain: open data (``fetch_open_data``) or a frame channel (``get``)."""
    from gwpy.timeseries import TimeSeries

    if channel:
        return TimeSeries.get(channel, start, end)
    return TimeSeries.fetch_open_data(ifo, start, end, cache=True)


def fetch(
    out: str,
    ifos: Sequence[str],
    start: float,
    end: float,
    sample_rate: float,
    channels: Sequence[str] = (),
) -> None:
    """Fetch ``[start, end)`` of every IFO with gwpy, resample, and write one background file.

    Args:
        out: the file, named ``background-{start}-{end - start}.hdf5``.
        ifos: IFO codes, one dataset each.
        start: GPS start (s).
        end: GPS end (s).
        sample_rate: rate (Hz) the strain is resampled to.
        channels: one frame channel per IFO, read with ``TimeSeries.get``; empty: open data.

    Raises:
        ValueError: when gwpy returns strain that does not cover ``[start, end)``.
    """
    import numpy as np

    from aframe_lib.data.background import write_background

    strain = {}
    for i, ifo in enumerate(ifos):
        ts = _fetch_one(ifo, channels[i] if channels else None, start, end)
        if float(ts.sample_rate.value) != sample_rate:
            ts = ts.resample(sample_rate)
        ts = ts.crop(start, end)
        size = round((end - start) * sample_rate)
        t0 = float(ts.t0.value)
        if abs(t0 - start) > 0.5 / sample_rate or len(ts) != size:
            raise ValueError(
                f"{ifo}: gwpy returned {len(ts)} samples from GPS {t0}, expected {size} from "
                f"{start}; the data do not cover the segment {start}-{end}"
            )
        strain[ifo] = np.asarray(ts.value, dtype=np.float32)
        logger.info("fetched %s %s-%s (%d samples)", ifo, start, end, size)
    write_background(out, strain, t0=start, sample_rate=sample_rate)


def main(argv: list[str] | None = None) -> None:
    """The payloads' command line behind aframe-lib's error boundary (one message block, exit 2).

    The payloads run where aframe-lib is installed (the host with ``[local]``/``[data]``, or the
    data image), so it is imported here, not when ``aframe_flow`` is imported on a login node.
    """
    from aframe_lib.utils.errors import console_main

    console_main("aframe_flow.payloads")(_main)(argv)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aframe_flow.payloads")
    sub = parser.add_subparsers(dest="what", required=True)
    bg = sub.add_parser("background", help="synthetic background")
    bg.add_argument("--out", required=True)
    bg.add_argument("--ifos", nargs="+", required=True)
    bg.add_argument("--sample-rate", type=float, required=True)
    bg.add_argument("--duration", type=float, required=True)
    bg.add_argument("--segment-duration", type=float, required=True)
    bg.add_argument("--seed", type=int, default=0)
    wf = sub.add_parser("waveforms", help="IMRPhenomD waveforms")
    wf.add_argument("--out", required=True)
    wf.add_argument("--num", type=int, required=True)
    wf.add_argument("--sample-rate", type=float, required=True)
    wf.add_argument("--duration", type=float, required=True)
    wf.add_argument("--coalescence-time", type=float, required=True)
    wf.add_argument("--seed", type=int, default=0)
    fe = sub.add_parser("fetch", help="real strain via gwpy")
    fe.add_argument("--out", required=True)
    fe.add_argument("--ifos", nargs="+", required=True)
    fe.add_argument("--start", type=float, required=True)
    fe.add_argument("--end", type=float, required=True)
    fe.add_argument("--sample-rate", type=float, required=True)
    fe.add_argument("--channels", nargs="*", default=[])
    args = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    what = args.pop("what")
    if what == "background":
        synthetic_background(**args)
    elif what == "waveforms":
        waveforms(**args)
    else:
        fetch(**args)


if __name__ == "__main__":
    main()
