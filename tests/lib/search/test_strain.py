"""Reading long strain: both layouts, gaps, and bad input (errors vs skipped with a warning).

Documented behaviour: a missing IFO, a sample rate the model's cannot be reached from (slower,
or a non-integer multiple) and misaligned IFO samples raise StrainError; gaps split spans;
NaN/inf stretches and too-short spans are skipped
with a RuntimeWarning.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.search import IFOS, SAMPLE_RATE, arange_background

from aframe_lib.search import StrainError, find_spans
from aframe_lib.search.strain import write_mdc

RATE = SAMPLE_RATE


def test_background_directory_gives_one_span_per_file(tmp_path):
    arange_background(tmp_path, 1000.0, 2560)
    arange_background(tmp_path, 1020.0, 1280)  # a gap of 10 s
    spans = find_spans(str(tmp_path), IFOS, RATE)
    assert [(s.t0, s.duration) for s in spans] == [(1000.0, 10.0), (1020.0, 5.0)]
    x = spans[0].read(5, 8)
    np.testing.assert_array_equal(x, [[5, 6, 7], [1005, 1006, 1007]])


def test_mdc_layout_intersects_ifos_and_splits_at_gaps(tmp_path):
    path = tmp_path / "mdc.hdf5"
    write_mdc(
        str(path),
        {
            "H1": [(100.0, np.arange(2560.0)), (120.0, np.arange(2560.0))],
            "L1": [(102.0, 1000 + np.arange(2560.0)), (120.0, 1000 + np.arange(1280.0))],
        },
        RATE,
    )
    spans = find_spans(str(path), IFOS, RATE)
    assert [(s.t0, s.size) for s in spans] == [(102.0, 2048), (120.0, 1280)]
    # same GPS time in both IFOs: H1 sample 512 (t = 102 s) with L1 sample 0
    np.testing.assert_array_equal(spans[0].read(0, 2), [[512, 513], [1000, 1001]])


def test_unreachable_sample_rates_are_an_error(tmp_path):
    # slower than the model (upsampling) or a non-integer multiple: refused, naming the fix
    arange_background(tmp_path, 1000.0, 1280, rate=128.0)
    with pytest.raises(StrainError, match=r"128 Hz, below the 256 Hz.*upsampling"):
        find_spans(str(tmp_path), IFOS, RATE)
    path = tmp_path / "mdc.hdf5"
    write_mdc(str(path), {ifo: [(0.0, np.zeros(3840))] for ifo in IFOS}, 384.0)
    with pytest.raises(StrainError, match=r"H1/0: sample rate is 384 Hz, not an integer multiple"):
        find_spans(str(path), IFOS, RATE)


def test_faster_data_come_back_as_resampled_spans(tmp_path):
    path = tmp_path / "mdc.hdf5"
    write_mdc(str(path), {ifo: [(10.0, np.zeros(4 * 2560 + 3))] for ifo in IFOS}, 4 * RATE)
    (span,) = find_spans(str(path), IFOS, RATE)
    assert (span.t0, span.size, span.sample_rate, span.factor) == (10.0, 2560, RATE, 4)


def test_missing_ifo_is_an_error(tmp_path):
    arange_background(tmp_path, 1000.0, 2560)
    with pytest.raises(StrainError, match="V1"):
        find_spans(str(tmp_path), ["H1", "V1"], RATE)
    path = tmp_path / "mdc.hdf5"
    write_mdc(str(path), {"H1": [(0.0, np.zeros(2560))]}, RATE)
    with pytest.raises(StrainError, match=r"no group for IFO\(s\) \['L1'\]"):
        find_spans(str(path), IFOS, RATE)


def test_misaligned_ifo_samples_are_an_error(tmp_path):
    path = tmp_path / "mdc.hdf5"
    write_mdc(
        str(path), {"H1": [(0.0, np.zeros(2560))], "L1": [(0.5 / RATE, np.zeros(2560))]}, RATE
    )
    with pytest.raises(StrainError, match="do not line up"):
        find_spans(str(path), IFOS, RATE)


def test_nans_are_skipped_with_a_warning(tmp_path):
    import h5py

    from aframe_lib.data.background import background_fname

    target = arange_background(tmp_path, 1000.0, 25600)
    assert target.name == background_fname(1000.0, 100.0)
    with h5py.File(target, "r+") as f:
        f["L1"][10240:10250] = np.nan  # 40 s in
    with pytest.warns(RuntimeWarning, match=r"non-finite strain .* from GPS 1040.000: skipped"):
        spans = find_spans(str(tmp_path), IFOS, RATE)
    assert [(s.t0, s.size) for s in spans] == [(1000.0, 10240), (1000.0 + 10250 / RATE, 15350)]
    assert all(np.isfinite(s.read()).all() for s in spans)


def test_short_spans_are_skipped_with_a_warning_and_none_left_is_an_error(tmp_path):
    arange_background(tmp_path, 1000.0, 2560)  # 10 s
    arange_background(tmp_path, 1100.0, 12800)  # 50 s
    with pytest.warns(RuntimeWarning, match="shorter than the 20 s"):
        spans = find_spans(str(tmp_path), IFOS, RATE, min_duration=20.0)
    assert [s.t0 for s in spans] == [1100.0]
    with pytest.raises(StrainError, match="no stretch"), pytest.warns(RuntimeWarning):
        find_spans(str(tmp_path), IFOS, RATE, min_duration=60.0)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(StrainError, match="no such file"):
        find_spans(str(tmp_path / "nope"), IFOS, RATE)
