"""Tests of aframe_lib.data.timeslides: shift choice, window indexing and the per-rank split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aframe_lib.data.timeslides import Timeslide, TimeslideWindows, make_timeslides

SAMPLE_RATE = 16.0


def arange_background(sizes, num_ifos):
    """IFO ``j`` of each segment holds ``j * 1e6 + arange(N)``: every value names its sample."""
    return [
        np.stack([j * 1e6 + np.arange(n) for j in range(num_ifos)]).astype(np.float32)
        for n in sizes
    ]


@pytest.mark.parametrize("num_ifos", [2, 3])
def test_timeslides_cover_livetime_with_alternating_nonzero_shifts(num_ifos):
    sizes, step, min_size = [2000, 1500, 600], 2.0, 64
    step_size = int(step * SAMPLE_RATE)
    livetime = 1000.0
    timeslides = make_timeslides(sizes, num_ifos, SAMPLE_RATE, livetime, step, min_size)

    covered = [ts.livetime(SAMPLE_RATE) for ts in timeslides]
    assert sum(covered) >= livetime
    assert sum(covered[:-1]) < livetime  # the last one was needed

    multipliers = []
    for ts in timeslides:
        assert ts.shifts[0] == 0 and any(ts.shifts)
        assert len(ts.shifts) == num_ifos
        k = ts.shifts[1] // step_size
        assert ts.shifts == tuple(i * k * step_size for i in range(num_ifos))
        # non-circular: the overlap loses the largest shift
        assert ts.size == sizes[ts.segment] - max(abs(s) for s in ts.shifts)
        assert ts.size >= min_size
        if not multipliers or multipliers[-1] != k:
            multipliers.append(k)
    expected = [1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8]
    assert multipliers == expected[: len(multipliers)]
    assert len(multipliers) > 2
    # segments cycle within one k, short ones are skipped once their overlap is too small
    first_k = [ts.segment for ts in timeslides if ts.shifts[1] == step_size]
    assert first_k == [0, 1, 2]
    assert len({(ts.segment, ts.shifts) for ts in timeslides}) == len(timeslides)


def test_timeslides_skip_short_overlaps():
    # segment 1 only fits |k| = 1 (600 - 2 * 32 = 536 >= 500 but 600 - 64 * 2 < 500)
    timeslides = make_timeslides([4000, 600], 3, SAMPLE_RATE, 1000.0, 2.0, 500)
    assert {ts.shifts[1] for ts in timeslides if ts.segment == 1} == {32, -32}
    assert all(ts.size >= 500 for ts in timeslides)


def test_timeslides_impossible_livetime_raises():
    sizes, step_size, min_size = [2000, 1500], 32, 64
    with pytest.raises(ValueError, match="valid_livetime=1000000.0") as info:
        make_timeslides(sizes, 2, SAMPLE_RATE, 1e6, step_size / SAMPLE_RATE, min_size)
    # the message says what is achievable: both signs of every shift that leaves min_size
    achievable = sum(
        2 * (n - k * step_size) / SAMPLE_RATE
        for n in sizes
        for k in range(1, n // step_size + 1)
        if n - k * step_size >= min_size
    )
    assert f"gives only {achievable:.1f} s" in str(info.value)
    assert "smaller step" in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"step": 0.0}, {"step": -1.0}, {"num_ifos": 1}, {"livetime": 0.0}, {"segment_sizes": []}],
)
def test_timeslides_bad_arguments_raise(kwargs):
    args = dict(segment_sizes=[1000], num_ifos=2, sample_rate=SAMPLE_RATE, livetime=10.0, step=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError):
        make_timeslides(min_size=10, **args)


def test_timeslide_rejects_zero_shift():
    with pytest.raises(ValueError, match="not all be zero"):
        Timeslide(0, (0, 0), 10)
    with pytest.raises(ValueError):
        Timeslide(0, (5, 0), 10)


def expected_window(background, ts, w, window_size, stride):
    """Independent reference: the slice each IFO of window ``w`` must read."""
    offset = -min(ts.shifts)
    start = w * stride
    return np.stack(
        [
            background[ts.segment][j, offset + s + start : offset + s + start + window_size]
            for j, s in enumerate(ts.shifts)
        ]
    )


@pytest.fixture
def windows_setup():
    num_ifos, window_size, stride = 3, 24, 10
    sizes = [400, 310, 150]
    background = arange_background(sizes, num_ifos)
    timeslides = make_timeslides(sizes, num_ifos, SAMPLE_RATE, 120.0, 1.0, window_size)
    assert any(ts.shifts[1] < 0 for ts in timeslides)  # negative shifts are exercised
    return background, timeslides, window_size, stride


def all_windows(timeslides, window_size, stride):
    return {
        (t, w)
        for t, ts in enumerate(timeslides)
        for w in range((ts.size - window_size) // stride + 1)
        if ts.size >= window_size
    }


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_windows_enumerated_once_across_ranks(windows_setup, world_size):
    background, timeslides, window_size, stride = windows_setup
    batch_size = 7
    seen, lengths, shapes = [], set(), set()
    for rank in range(world_size):
        dataset = TimeslideWindows(
            background, timeslides, window_size, stride, batch_size, rank, world_size
        )
        lengths.add(len(dataset))
        for i in range(len(dataset)):
            X, shift_id, index = dataset[i]
            assert X.dtype == torch.float32 and shift_id.dtype == index.dtype == torch.int64
            assert X.shape[1:] == (3, window_size) and shift_id.shape == index.shape == X.shape[:1]
            shapes.add((i, X.shape[0]))
            real = shift_id >= 0
            assert (index[~real] == -1).all()
            for x, t, w in zip(X[real], shift_id[real].tolist(), index[real].tolist(), strict=True):
                expected = expected_window(background, timeslides[t], w, window_size, stride)
                np.testing.assert_array_equal(x.numpy(), expected)
                seen.append((t, w))
        with pytest.raises(IndexError):
            dataset[len(dataset)]

    assert len(lengths) == 1  # every rank runs the same number of batches: no DDP hang
    assert len(shapes) == len(dataset)  # and batch i has the same size on every rank
    assert len(seen) == len(set(seen))  # no window scored twice
    assert set(seen) == all_windows(timeslides, window_size, stride)  # none lost
    assert dataset.num_windows == len(seen)
    assert dataset.windows_per_rank * world_size - len(seen) < world_size  # minimal padding


def test_windows_read_expected_samples(windows_setup):
    background, timeslides, window_size, stride = windows_setup
    dataset = TimeslideWindows(background, timeslides, window_size, stride, batch_size=1000)
    X, shift_id, index = dataset[0]
    assert len(dataset) == 1 and (shift_id >= 0).all()
    # with arange data, each IFO's first sample names where it was read from
    for x, t, w in zip(X, shift_id.tolist(), index.tolist(), strict=True):
        ts = timeslides[t]
        starts = x[:, 0].numpy() - 1e6 * np.arange(3)
        np.testing.assert_array_equal(starts, [-min(ts.shifts) + s + w * stride for s in ts.shifts])
        np.testing.assert_array_equal(np.diff(x.numpy(), axis=1), 1.0)  # contiguous


def test_windows_work_with_dataloader(windows_setup):
    background, timeslides, window_size, stride = windows_setup
    dataset = TimeslideWindows(
        [torch.as_tensor(b) for b in background], timeslides, window_size, stride, 16
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    total = sum(int((shift_id >= 0).sum()) for _, shift_id, _ in loader)
    assert total == dataset.num_windows


def test_windows_bad_inputs_raise(windows_setup):
    background, timeslides, window_size, stride = windows_setup
    with pytest.raises(ValueError, match="does not fit"):
        TimeslideWindows([b[:, :100] for b in background], timeslides, window_size, stride, 4)
    with pytest.raises(ValueError, match="rank"):
        TimeslideWindows(background, timeslides, window_size, stride, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="min_size"):
        TimeslideWindows(background, [Timeslide(0, (0, 1, 2), 10)], window_size, stride, 4)
