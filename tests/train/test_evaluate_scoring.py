"""evaluate's scoring numbers (issue #21): what the events' own ``var`` finds against the
0.5 s window (item 4's check), and the efficiency per SNR bin with its binomial error, each
against a hand count."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aframe_lib.search.events import Events
from aframe_lib.search.pipeline import SearchResult
from aframe_train.evaluate import SNR_BINS, _efficiency_per_snr_bin, _metrics, _report

MONTH = 365.25 * 86400 / 12


def _scored():
    # background: 1000 events with stats 0..1 over a month: the threshold at 100/month is the
    # 101st loudest, 0.8999
    bg = SearchResult(Events(np.arange(1000.0), np.linspace(0, 1, 1000), np.zeros(1000)),
                      MONTH, 0.0, 1.0)  # fmt: skip
    # 8 injections every 100 s; each has one event, loud (stat 5), at an offset from it; the
    # event's own var is 0.1 s: offsets 0.05 (found by var and window), 0.3 (only by the 0.5 s
    # window), 0.7 (by neither)
    inj = np.arange(8) * 100.0 + 50.0
    offsets = np.array([0.05, 0.05, 0.05, 0.3, 0.3, 0.7, 0.05, 0.3])
    stat = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.5, 0.5])  # the last two below threshold
    fg = SearchResult(Events(inj + offsets, stat, np.full(8, 0.1)), 1000.0, 0.0, 1.0)
    snr = np.array([5.0, 9.0, 9.0, 9.0, 13.0, 13.0, 13.0, 25.0])
    injections = {"time": inj, "snr": snr}
    return bg, fg, injections


def test_own_var_ratio_counts_what_var_alone_finds_over_what_the_window_finds():
    bg, fg, injections = _scored()
    numbers, _ = _metrics(bg, fg, injections, None, [1200.0], 8.0, 0.5)
    # above threshold: by the window injections 0-4 (5), by var alone 0-2 (3)
    assert numbers["injections_found_at_far_1200_per_yr"] == 5
    assert numbers["own_var_found_ratio_at_far_1200_per_yr"] == pytest.approx(3 / 5)
    # with no window, scoring is var alone: the ratio is 1 by construction
    numbers, _ = _metrics(bg, fg, injections, None, [1200.0], 8.0, 0.0)
    assert numbers["injections_found_at_far_1200_per_yr"] == 3
    assert numbers["own_var_found_ratio_at_far_1200_per_yr"] == 1.0


def test_efficiency_per_snr_bin_has_counts_and_binomial_errors(tmp_path):
    bg, fg, injections = _scored()
    numbers, curves = _metrics(bg, fg, injections, None, [1200.0], 8.0, 0.5)
    rows = _efficiency_per_snr_bin(curves)
    assert [r["snr"] for r in rows] == [[float(a), float(b)] for a, b in
                                        zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True)]  # fmt: skip
    by_bin = {tuple(r["snr"]): r for r in rows}
    # SNR 4-8: injection 0 (found); 8-12: 1, 2, 3 (all found); 12-16: 4 (found), 5 (missed:
    # 0.7 s off), 6 (below threshold); 20-30: 7 (below threshold)
    expected = {(4.0, 8.0): (1, 1.0), (8.0, 12.0): (3, 1.0), (12.0, 16.0): (3, 1 / 3),
                (20.0, 30.0): (1, 0.0)}  # fmt: skip
    for key, row in by_bin.items():
        n, eff = expected.get(key, (0, None))
        assert row["injections"] == n
        if eff is None:
            assert row["efficiency"]["1200"] is None and row["error"]["1200"] is None
        else:
            assert row["efficiency"]["1200"] == pytest.approx(eff)
            assert row["error"]["1200"] == pytest.approx(math.sqrt(eff * (1 - eff) / n))
    # the report carries the table and numbers.json the rows
    _report(tmp_path, "model.pt", "data", numbers, curves=curves)
    text = (tmp_path / "report.md").read_text()
    assert "| 12-16 | 3 | 0.333 +- 0.272 |" in text
    saved = json.loads((tmp_path / "numbers.json").read_text())
    assert saved["efficiency_per_snr_bin"] == json.loads(json.dumps(rows))
