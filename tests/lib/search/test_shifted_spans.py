"""Timeslides of search spans: shifted reads and livetime."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.search import IFOS, SAMPLE_RATE, arange_background

from aframe_lib.search import find_spans, timeslide_spans
from aframe_lib.search.timeslides import check_step, shift_span


def test_shifted_span_reads_each_ifo_later_by_its_shift(tmp_path):
    arange_background(tmp_path, 1000.0, 2560)
    (span,) = find_spans(str(tmp_path), IFOS, SAMPLE_RATE)
    right = shift_span(span, [0, 512])
    assert right.t0 == 1000.0 and right.size == 2048 and right.shifts == (0.0, 2.0)
    np.testing.assert_array_equal(right.read(0, 2), [[0, 1], [1512, 1513]])
    left = shift_span(span, [0, -512])
    assert left.t0 == 1002.0 and left.size == 2048
    np.testing.assert_array_equal(left.read(0, 2), [[512, 513], [1000, 1001]])
    assert shift_span(span, [0, 2560]) is None


def test_timeslide_livetime_is_counted_per_shifted_span(tmp_path, engine):
    arange_background(tmp_path, 1000.0, int(60 * SAMPLE_RATE))
    arange_background(tmp_path, 2000.0, int(40 * SAMPLE_RATE))
    spans = find_spans(str(tmp_path), IFOS, SAMPLE_RATE)
    search = engine()  # psd 16 s, kernel 1 s, fduration 1 s, 4 Hz, 1 s integration
    # a span of D s (>= psd.length) gives windows every 0.25 s from its first sample, kernels
    # ending 1.5 s to D - 0.5 s in, minus 3 outputs for the integration: (D - 2) * 4 + 1 - 3
    live = lambda d: ((d - 2) * 4 - 2) / 4  # noqa: E731
    assert search.livetime_of(spans[0]) == live(60)
    shifted = timeslide_spans(spans, 2.0, livetime=150.0, livetime_of=search.livetime_of)
    # k = 1: 58 s and 38 s; k = -1: 58 s and 38 s (55.5 + 35.5 + 55.5 + 35.5 >= 150)
    durations = [s.duration for s in shifted]
    assert durations == [58.0, 38.0, 58.0, 38.0]
    expected = sum(live(d) for d in durations)
    assert expected >= 150.0 > expected - live(38.0)
    assert [s.shifts for s in shifted][:3] == [(0.0, 2.0), (0.0, 2.0), (0.0, -2.0)]
    result = search.run(shifted, progress=False)
    assert result.livetime == pytest.approx(expected)
    assert result.events.shift is not None and result.events.shift.shape[1] == 2


def test_unreachable_livetime_returns_every_usable_shift(tmp_path):
    arange_background(tmp_path, 1000.0, int(10 * SAMPLE_RATE))
    spans = find_spans(str(tmp_path), IFOS, SAMPLE_RATE)
    shifted = timeslide_spans(spans, 2.0, livetime=1e9)
    assert [s.duration for s in shifted] == [8.0, 8.0, 6.0, 6.0, 4.0, 4.0, 2.0, 2.0]


def test_step_must_exceed_kernel_plus_light_travel_time():
    check_step(2.0, 1.5)
    with pytest.raises(ValueError, match="light travel time"):
        check_step(1.52, 1.5)


@pytest.mark.parametrize("ifos, livetime", [(("H1", "L1"), 150.0), (("H1", "L1", "V1"), 400.0)])
def test_validation_and_evaluation_make_the_same_timeslides(ifos, livetime):
    """For the same segments, step and livetime, validation's timeslides (make_timeslides) and
    evaluation's shifted spans (timeslide_spans) have the same segments, shifts and overlaps in
    the same order, and the same livetime (each counted as its overlap's duration)."""
    from aframe_lib.data.timeslides import make_timeslides
    from aframe_lib.search.strain import Channel, Span

    rate, step = 256.0, 2.0
    sizes = [int(60 * rate), int(40 * rate), int(25 * rate)]
    spans, t0 = [], 1000.0
    for size in sizes:
        channels = tuple(Channel(f"seg{t0}.hdf5", ifo, 0) for ifo in ifos)
        spans.append(Span(t0, size, rate, ifos, channels))
        t0 += size / rate + 10.0
    validation = make_timeslides(sizes, len(ifos), rate, livetime, step, min_size=1)
    evaluation = timeslide_spans(spans, step, livetime)
    assert len(validation) == len(evaluation) > len(sizes)
    for ts, span in zip(validation, evaluation, strict=True):
        original = spans[ts.segment]
        assert span.shifts == tuple(s / rate for s in ts.shifts)
        assert span.size == ts.size
        # both read IFO j from sample offset + shifts[j] of the segment
        assert span.t0 == original.t0 + ts.offset / rate
        assert [c.start for c in span.channels] == [ts.offset + s for s in ts.shifts]
    total = sum(ts.livetime(rate) for ts in validation)
    assert total == sum(s.duration for s in evaluation) >= livetime
    assert total - validation[-1].livetime(rate) < livetime  # both stop at the same one
    # the schedule: IFO i by i * k * step, k = 1, -1, 2, -2 ...
    ks = [ts.shifts[1] // round(step * rate) for ts in validation]
    assert ks == sorted(ks, key=lambda k: (abs(k), -k))
