"""The matched-filter ideal's rho(F) on evaluate's own noise, within a CPU budget.

    python bench/lib/matched_filter_ideal.py [--budget 240] [--duration 4096] [--sample_rate 2048]

Evaluate's own noise (aLIGO design PSD, stream ``EVALUATE`` of ``--seed``: no training set's),
H1 and L1, the default population (the bbh-cpu recipe's: 10-80 Msun), the search's default
clustering (4 Hz inference steps, 8 s cluster window), FARs of 1, 10 and 100 per month:
``aframe_lib.search.matched_filter.matched_filter_ideal``, as ``aframe-train evaluate
--mf_budget_s`` runs it. Prints rho(F) per FAR, how it was obtained (measured / fit), the bank, the
livetime reached and the tail fit's residual on the measured events.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="CPU seconds")
    parser.add_argument("--duration", type=float, default=4096.0, help="seconds of noise")
    parser.add_argument("--sample_rate", type=float, default=2048.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from aframe_lib.data.noise import generate_background
    from aframe_lib.data.synthetic import EVALUATE, stream_seed
    from aframe_lib.search import find_spans
    from aframe_lib.search.matched_filter import matched_filter_ideal
    from aframe_lib.search.metrics import SECONDS_PER_YEAR

    month = SECONDS_PER_YEAR / 12
    per_month = (1.0, 10.0, 100.0)
    with tempfile.TemporaryDirectory() as where:
        generate_background(where, ["H1", "L1"], args.duration, args.sample_rate, 1024.0,
                            seed=args.seed, stream=EVALUATE)  # fmt: skip
        spans = find_spans(where, ["H1", "L1"], args.sample_rate)
        wall = time.monotonic()
        result = matched_filter_ideal(
            spans, None, [f / month for f in per_month], args.budget, inference_rate=4.0,
            cluster_window=8.0, seed=stream_seed(args.seed, EVALUATE + 3),
        )  # fmt: skip
        wall = time.monotonic() - wall
    _common.note(result.bank["description"])
    _common.note(result.statistic)
    for f, rho, how in zip(per_month, result.rho, result.how, strict=True):
        _common.headline(f"rho_at_{f:g}_per_month", rho)
        _common.note(f"rho at {f:g}/month: {how}")
    for f, check in zip(per_month, result.fit_check, strict=True):
        if check is not None:  # the fit where rho(F) is measured: how well it extrapolates
            _common.headline(f"fit_minus_measured_rho_at_{f:g}_per_month", check)
    _common.headline("template_bank_size", len(result.bank["mass_1"]))
    _common.headline("filtered_s", result.filtered_s)
    _common.headline("timeslides", result.num_slides)
    _common.headline("livetime_months", result.livetime / month)
    _common.headline("fit_slope_per_rho2", result.fit["slope"])
    _common.headline("fit_rms_dex", result.fit["rms_dex"])
    _common.headline("fit_max_dex", result.fit["max_dex"])
    _common.headline("cpu_s", result.cpu_s)
    _common.headline("wall_s", wall)


if __name__ == "__main__":
    main()
