"""Timeslides of search spans: background livetime far beyond the data's duration.

IFO ``i`` of a span is read ``i * k * step`` seconds later than IFO 0, for ``k = 1, -1, 2, -2,
...``, never circularly: a shift shortens the span to the stretch every shifted IFO covers, so
no sample is invented or reused across a gap. The timeslides are validation's
(:mod:`aframe_lib.data.timeslides`: the same schedule, overlap and choice), applied to spans
of strain and counted with the search's livetime. With ``step`` longer than the light travel
time between the IFOs plus the kernel, no real signal can appear coincident in two shifted IFOs,
so every event of a timeslide is background.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from aframe_lib.data.timeslides import Timeslide, choose_timeslides, overlap

from .strain import Span

EARTH_LIGHT_TIME = 0.0426  # s: the Earth's diameter over c, the longest inter-IFO delay


def check_step(step: float, kernel_length: float) -> None:
    """Raise unless ``step`` exceeds the longest light travel time plus the kernel."""
    if not step > kernel_length + EARTH_LIGHT_TIME:
        raise ValueError(
            f"timeslide step={step} s must exceed kernel_length ({kernel_length} s) plus the "
            f"light travel time between IFOs ({EARTH_LIGHT_TIME} s), or a real signal could "
            "line up with itself in the shifted data; raise the step"
        )


def shift_span(span: Span, shifts: Sequence[int]) -> Span | None:
    """``span`` with IFO ``j`` read ``shifts[j]`` samples later than IFO 0 (``None``: no overlap).

    The result starts where every shifted IFO has data
    (:func:`~aframe_lib.data.timeslides.overlap`): IFO 0 at sample ``-min(shifts)``.
    """
    offset, size = overlap(span.size, shifts)
    if size <= 0:
        return None
    channels = tuple(
        dataclasses.replace(c, start=c.start + offset + s)
        for c, s in zip(span.channels, shifts, strict=True)
    )
    return dataclasses.replace(
        span,
        t0=span.t0 + offset / span.sample_rate,
        size=size,
        channels=channels,
        shifts=tuple(s / span.sample_rate for s in shifts),
    )


def apply_timeslide(spans: Sequence[Span], timeslide: Timeslide) -> Span:
    """The span ``spans[timeslide.segment]`` shifted by ``timeslide.shifts``."""
    shifted = shift_span(spans[timeslide.segment], timeslide.shifts)
    assert shifted is not None and shifted.size == timeslide.size
    return shifted


def timeslide_spans(
    spans: Sequence[Span],
    step: float,
    livetime: float,
    livetime_of: Callable[[Span], float] | None = None,
    max_shifts: int | None = None,
) -> list[Span]:
    """Shifted copies of ``spans`` until their livetime reaches ``livetime``.

    For each ``k`` in ``1, -1, 2, -2, ...`` every span is shifted in turn; shifted spans with no
    livetime are dropped; the last one added is the one that reaches ``livetime``
    (:func:`~aframe_lib.data.timeslides.choose_timeslides`, as validation chooses its own).

    Args:
        spans: unshifted spans (their ``shifts`` are ignored), all at one sample rate.
        step: seconds; IFO ``i`` is shifted by ``i * k * step``.
        livetime: seconds of background wanted.
        livetime_of: livetime of a span (e.g. :meth:`Search.livetime_of`); default its duration.
        max_shifts: stop after this many values of ``k`` even if ``livetime`` is not reached.

    Returns:
        The shifted spans. Raises when no shift leaves any livetime.
    """
    livetime_of = livetime_of or (lambda s: s.duration)
    if not spans:
        raise ValueError("timeslides need at least one span of strain")
    num_ifos = len(spans[0].ifos)
    if num_ifos < 2:
        raise ValueError("timeslides need at least 2 IFOs: one IFO cannot be shifted")
    rates = sorted({s.sample_rate for s in spans})
    if len(rates) > 1:
        raise ValueError(f"timeslides need spans at one sample rate, got {rates} Hz")
    timeslides, _ = choose_timeslides(
        [s.size for s in spans],
        num_ifos,
        round(step * rates[0]),
        livetime,
        lambda ts: livetime_of(apply_timeslide(spans, ts)),
        max_shifts,
    )
    if not timeslides:
        raise ValueError(
            f"no timeslide with step={step} s leaves any livetime in spans of "
            f"{max(s.duration for s in spans):g} s at most; use a smaller step or longer data"
        )
    return [apply_timeslide(spans, ts) for ts in timeslides]
