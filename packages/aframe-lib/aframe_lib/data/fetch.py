"""Real background strain, fetched with gwpy (the ``[fetch]`` extra: ``pip install
'aframe-lib[fetch]'``) and written as one background file of the data contract.

``aframe-data fetch`` (:mod:`aframe_lib.data.cli`) is :func:`fetch_background`. gwpy is imported
when a fetch runs, not with this module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aframe_lib.utils.errors import DataError

logger = logging.getLogger(__name__)


def _fetch_one(ifo: str, channel: str | None, start: float, end: float):
    """One IFO's strain: open data (``fetch_open_data``) or a frame channel (``get``)."""
    try:
        from gwpy.timeseries import TimeSeries
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DataError(
            "fetching strain needs gwpy, which this install lacks: pip install "
            "'aframe-lib[fetch]' (or use synthetic background)"
        ) from exc
    if channel:
        return TimeSeries.get(channel, start, end)
    return TimeSeries.fetch_open_data(ifo, start, end, cache=True)


def fetch_background(
    path: str,
    ifos: Sequence[str],
    start: float,
    end: float,
    sample_rate: float,
    channels: Sequence[str] = (),
) -> str:
    """Fetch ``[start, end)`` of every IFO with gwpy, resample, and write one background file.

    Args:
        path: The file (local or ``s3://``), named ``background-{start}-{end - start}.hdf5``
            (:func:`~aframe_lib.data.background.background_fname`).
        ifos: IFO codes, one dataset each.
        start: GPS start (s).
        end: GPS end (s).
        sample_rate: Rate (Hz) the strain is resampled to.
        channels: One frame channel per IFO, read with ``TimeSeries.get``; empty: open data
            via ``TimeSeries.fetch_open_data``.

    Returns:
        ``path``.

    Raises:
        DataError: when the arguments do not fit together, or gwpy returns strain that does
            not cover ``[start, end)``.
    """
    import numpy as np

    from .background import write_background

    if not end > start:
        raise DataError(f"end={end!r}: must be after start={start!r} (GPS seconds)")
    if channels and len(channels) != len(ifos):
        raise DataError(
            f"channels={list(channels)}: give one channel per IFO ({list(ifos)}), or none for "
            "open data"
        )
    strain = {}
    for i, ifo in enumerate(ifos):
        ts = _fetch_one(ifo, channels[i] if channels else None, start, end)
        if float(ts.sample_rate.value) != sample_rate:
            ts = ts.resample(sample_rate)
        ts = ts.crop(start, end)
        size = round((end - start) * sample_rate)
        t0 = float(ts.t0.value)
        if abs(t0 - start) > 0.5 / sample_rate or len(ts) != size:
            raise DataError(
                f"{ifo}: gwpy returned {len(ts)} samples from GPS {t0}, expected {size} from "
                f"{start}; the data do not cover the segment {start}-{end}"
            )
        strain[ifo] = np.asarray(ts.value, dtype=np.float32)
        logger.info("fetched %s %s-%s (%d samples)", ifo, start, end, size)
    from .provenance import fetched

    record = fetched(
        {ifo: [[start, end]] for ifo in ifos},
        source="TimeSeries.get" if channels else "gwosc",
        channels=dict(zip(ifos, channels, strict=True)) if channels else {},
    )
    write_background(path, strain, t0=start, sample_rate=sample_rate, provenance=record)
    return path
