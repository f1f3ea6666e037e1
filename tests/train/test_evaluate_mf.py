"""``aframe-train evaluate --mf_budget_s``: the matched-filter ideal in the report (issue 21,
item 5), beside the fixed-threshold reference."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
from helpers.search import export_oracle

pytest.importorskip("pycbc")


@pytest.mark.slow
def test_evaluate_reports_the_matched_filter_ideal_with_its_rho(tmp_path, capsys):
    from aframe_train.cli import main

    population = {"masses": {"class_path": "torch.distributions.Uniform",
                             "init_args": {"low": 20.0, "high": 22.0}}}  # fmt: skip
    export_oracle(tmp_path / "model.pt", population=population)
    out = tmp_path / "eval"
    main([
        "evaluate", "--model", str(tmp_path / "model.pt"), "--out", str(out),
        "--background_duration", "240", "--segment_duration", "120", "--livetime", "300",
        "--cluster_window", "4", "--injection_spacing", "10", "--waveform_duration", "4",
        "--coalescence_time", "3", "--fars_per_year", "[1e5, 1e7]", "--progress", "false",
        "--population.distance", "ml4gw.distributions.PowerLaw",
        "--population.distance.minimum", "50", "--population.distance.maximum", "300",
        "--population.distance.index", "2", "--mf_budget_s", "15",
    ])  # fmt: skip
    lines = dict(re.findall(r"^(\S+): (\S+)$", capsys.readouterr().out, re.M))
    saved = json.loads((out / "numbers.json").read_text())
    numbers = saved["numbers"]  # the numbers printed, also in numbers.json
    assert {k: float(v) for k, v in lines.items() if k in numbers} == pytest.approx(
        {k: v for k, v in numbers.items() if v is not None}, rel=1e-5
    )
    mf = saved["references"]["matched_filter"]
    assert saved["references"]["fixed_threshold"]["ideal_snr"] == 8.0
    assert mf["fars_per_s"] == pytest.approx([1e5 / 31557600, 1e7 / 31557600])
    # the livetime reaches 1e5/yr with >= 10 events (measured), 1e7/yr ... every rho is finite
    assert all(np.isfinite(mf["rho"])) and mf["how"][1] == "measured"
    assert mf["rho"][0] > mf["rho"][1] > 0  # a lower FAR needs a louder threshold
    assert mf["bank"]["minimal_match"] == 0.97 and len(mf["bank"]["mass_1"]) >= 1
    assert all(20.0 <= m <= 22.0 for m in mf["bank"]["mass_1"] + mf["bank"]["mass_2"])
    assert mf["livetime"] > 10 * mf["filtered_s"] > 0  # timeslides
    # the ideal at rho(F): the injections whose optimal network SNR is at least rho(F)
    with h5py.File(out / "injection_results.hdf5") as f:
        snr = f["snr"][:]
    for far, rho in zip(("100000", "1e+07"), mf["rho"], strict=True):
        assert numbers[f"mf_ideal_snr_at_far_{far}_per_yr"] == pytest.approx(rho, rel=1e-5)
        assert numbers[f"mf_ideal_efficiency_at_far_{far}_per_yr"] == pytest.approx(
            np.mean(snr >= rho), abs=1e-6
        )
        ideal = (300.0**3 - 50.0**3) ** (1 / 3) * np.mean(snr >= rho) ** (1 / 3)
        assert numbers[f"mf_ideal_sensitive_distance_mpc_at_far_{far}_per_yr"] == pytest.approx(
            ideal, rel=1e-5
        )
    report = (out / "report.md").read_text()
    assert "**Fixed-threshold reference**" in report and "**Matched-filter ideal**" in report
    assert "Template bank:" in report and "Tail fit: ln FAR/s" in report
    for rho, how in zip(mf["rho"], mf["how"], strict=True):
        assert f"| {rho:.3f} | {how} |" in report


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mf_budget_s": -1.0}, r"mf_budget_s: -1.0 is not CPU seconds >= 0"),
     ({"mf_minimal_match": 1.0}, r"mf_minimal_match: 1.0 is not in \(0, 1\)")],
)  # fmt: skip
def test_bad_matched_filter_settings_are_one_clear_error(tmp_path, kwargs, match):
    from aframe_lib.utils.errors import ConfigError
    from aframe_train.evaluate import evaluate

    with pytest.raises(ConfigError, match=match):
        evaluate(str(tmp_path / "model.pt"), str(tmp_path / "eval"), **kwargs)
    assert not (tmp_path / "eval").exists()  # refused before anything runs
