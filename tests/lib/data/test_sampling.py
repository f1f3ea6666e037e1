"""Background windows come from the right place: checked on arange-valued segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aframe_lib.data.sampling import BackgroundSampler


def arange_segments(sizes, num_ifos=2):
    """Segment k, IFO j holds 1e6*j + 1e5*k + arange: every value says where it came from."""
    return [
        np.stack([1e6 * j + 1e5 * k + np.arange(n) for j in range(num_ifos)]).astype(np.float32)
        for k, n in enumerate(sizes)
    ]


@pytest.mark.parametrize("coincident", [False, True])
def test_windows_are_contiguous_slices_of_one_segment(coincident):
    sizes = [5000, 1200, 3000]
    sampler = BackgroundSampler(arange_segments(sizes), sample_size=1000, coincident=coincident)
    X = sampler(512).numpy()
    assert X.shape == (512, 2, 1000)
    for j in range(2):
        first = X[:, j, 0]
        # contiguous run of samples, no jump: the window never straddles two segments
        np.testing.assert_array_equal(
            X[:, j] - first[:, None], np.arange(1000)[None].repeat(512, 0)
        )
        channel, rest = np.divmod(first, 1e6)
        assert (channel == j).all()  # IFO j's window comes from IFO j's data
        segment, start = np.divmod(rest, 1e5)
        assert set(np.unique(segment)) <= {0, 1, 2}
        # the window fits inside its own segment
        assert (start + 1000 <= np.array(sizes)[segment.astype(int)]).all()
    h1, l1 = np.divmod(X[:, 0, 0], 1e6)[1], np.divmod(X[:, 1, 0], 1e6)[1]
    if coincident:
        np.testing.assert_array_equal(h1, l1)
    else:
        assert (h1 != l1).mean() > 0.9  # independent draws per IFO


def test_segments_drawn_in_proportion_to_their_valid_starts():
    sizes = [2000, 11000]  # 1001 and 10001 valid starts
    sampler = BackgroundSampler(arange_segments(sizes, 1), sample_size=1000)
    torch.manual_seed(1)
    first = sampler(20000)[:, 0, 0].numpy()
    frac = (first >= 1e5).mean()
    assert frac == pytest.approx(10001 / 11002, abs=0.01)


def test_short_segment_is_rejected():
    with pytest.raises(ValueError, match="shorter than the 1000-sample window"):
        BackgroundSampler(arange_segments([5000, 999]), sample_size=1000)
