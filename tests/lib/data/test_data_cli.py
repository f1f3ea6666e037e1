"""``aframe-data``: its subcommands are the data functions; the waveform population is
configuration (CLI arguments, a training config's data section); one seed-stream scheme. Fetching
real strain is tested against stand-in servers in test_real_data.py."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import yaml

from aframe_lib.data import cli, synthetic
from aframe_lib.data.background import list_segments, read_segment
from aframe_lib.data.synthetic import (
    WaveformPopulation,
    ensure_synthetic_dataset,
    generate_waveforms,
    stream_seed,
)
from aframe_lib.data.waveforms import read_waveforms

WAVEFORMS = ["--sample_rate", "256", "--waveform_duration", "4", "--coalescence_time", "3"]
NARROW = [
    "--population.masses", "torch.distributions.Uniform",
    "--population.masses.low", "10", "--population.masses.high", "50",
    "--population.spins", "ml4gw.distributions.DeltaFunction",
]  # fmt: skip


def test_every_argument_of_each_function_is_an_option_of_its_subcommand():
    for name, function in cli.functions().items():
        params = set(inspect.signature(function).parameters)
        assert cli.options(name) == params, name


def test_narrowed_population_from_the_command_line(tmp_path, capsys):
    path = str(tmp_path / "w.hdf5")
    cli.main(["waveforms", "--path", path, "--num_waveforms", "40", *WAVEFORMS, *NARROW])
    p = read_waveforms(path).parameters
    assert ((10 <= p["mass_2"]) & (p["mass_2"] <= p["mass_1"]) & (p["mass_1"] < 50)).all()
    assert (p["chi1"] == 0).all() and (p["chi2"] == 0).all()
    # what was not narrowed keeps its default: distance uniform in volume in 100-3000 Mpc
    assert ((100 <= p["distance"]) & (p["distance"] <= 3000)).all()
    assert p["mass_1"].max() > 40  # the range is used, not a point
    # the default population reaches above 50 Msun with spins
    default = generate_waveforms(str(tmp_path / "d.hdf5"), 40, 256, 4.0, 3.0, seed=0)
    assert default.parameters["mass_1"].max() > 50 and (default.parameters["chi1"] != 0).all()


def test_narrowed_population_from_a_training_config_data_section(tmp_path):
    """The ``synthetic`` dict of a training config's data section hands the population to
    ensure_synthetic_dataset; the manifest records it, and a mismatch is refused."""
    from jsonargparse import ArgumentParser

    from aframe_lib.data.base import AframeDataset

    config = yaml.safe_load(f"""
        data:
          data_dir: {tmp_path / "data"}
          sample_rate: 256
          synthetic:
            background_duration: 64
            segment_duration: 32
            num_waveforms: 24
            num_val_waveforms: 8
            waveform_duration: 4
            coalescence_time: 3
            population:
              masses: {{class_path: torch.distributions.Uniform,
                        init_args: {{low: 10.0, high: 50.0}}}}
              spins: {{class_path: ml4gw.distributions.DeltaFunction}}
    """)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(AframeDataset, "data")
    init = parser.instantiate_classes(parser.parse_object(config))
    init.data.prepare_data()
    for name in ("waveforms.hdf5", "val_waveforms.hdf5"):
        p = read_waveforms(str(tmp_path / "data" / name)).parameters
        assert ((10 <= p["mass_2"]) & (p["mass_1"] < 50)).all(), name
        assert (p["chi1"] == 0).all() and (p["chi2"] == 0).all(), name
    manifest = json.loads((tmp_path / "data" / "synthetic.json").read_text())
    assert set(manifest["population"]) == {"masses", "spins"}  # only what differs
    assert manifest["population"]["masses"]["high"] == 50.0
    with pytest.raises(synthetic.SyntheticDataError, match="population"):
        ensure_synthetic_dataset(
            str(tmp_path / "data"), sample_rate=256, **config["data"]["synthetic"] | {
                "population": None})  # fmt: skip


def test_the_default_population_is_the_documented_one():
    p = synthetic.draw_parameters(20000, seed=3)
    assert 10 <= p["mass_2"].min() and p["mass_1"].max() <= 80
    assert -0.9 <= p["chi1"].min() and p["chi2"].max() <= 0.9
    assert 100 <= p["distance"].min() and p["distance"].max() <= 3000
    # uniform in Euclidean volume: P(d < D) = (D^3 - 100^3) / (3000^3 - 100^3)
    assert np.mean(p["distance"] < 1500) == pytest.approx(
        (1500**3 - 100**3) / (3000**3 - 100**3), abs=0.01
    )
    # explicitly given defaults are the defaults (the same draws, nothing in the manifest)
    given = WaveformPopulation.coerce(synthetic.DEFAULT_POPULATION)
    assert given.describe() == {}
    again = synthetic.draw_parameters(50, seed=3, population=given)
    for key, value in synthetic.draw_parameters(50, seed=3).items():
        np.testing.assert_array_equal(again[key], value)


def test_mass_ratio_gives_the_second_mass():
    population = {"mass_ratio": {"class_path": "torch.distributions.Uniform",
                                 "init_args": {"low": 0.5, "high": 1.0}}}  # fmt: skip
    p = synthetic.draw_parameters(500, seed=1, population=population)
    np.testing.assert_allclose(p["mass_2"] / p["mass_1"], p["mass_ratio"])
    assert ((0.5 <= p["mass_ratio"]) & (p["mass_ratio"] <= 1.0)).all()


def test_bad_population_names_the_field_and_the_fix():
    with pytest.raises(synthetic.SyntheticDataError, match=r"population.masses=.*class_path"):
        WaveformPopulation.coerce({"masses": {"class_path": "no.such.Distribution"}})
    with pytest.raises(synthetic.SyntheticDataError, match=r"unknown field\(s\) \['mass'\]"):
        WaveformPopulation.coerce({"mass": None})


def test_seed_streams_one_scheme():
    assert [stream_seed(7, s) for s in (0, 1, 2, 3, 10)] == [7, 7001, 7002, 7003, 7010]


def test_bad_arguments_exit_2_with_one_message(tmp_path, capsys):
    for argv, expected in [
        (["synthetic", "--data_dir", str(tmp_path / "a"), "--sample_rate", "-5"],
         "--sample_rate=-5.0: must be a positive number"),
        (["synthetic", "--data_dir", str(tmp_path / "b"), "--ifos=[X1]"], "--ifos=['X1']"),
        (["waveforms", "--path", "w.hdf5", "--num_waveforms", "many"], "num_waveforms"),
        (["fetch", "--data_dir", str(tmp_path / "c"), "--ifos=[H1]", "--start", "10",
          "--end", "5", "--sample_rate", "256"], "end=5.0: must be after start=10.0"),
        (["segments", "--out_dir", str(tmp_path / "d"), "--ifos=[H1]", "--start", "10",
          "--end", "5"], "end=5.0: must be after start=10.0"),
    ]:  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2, argv
        assert err.startswith(f"aframe-data {argv[0]}: error:") and expected in err, err
        assert "Traceback" not in err
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_synthetic_subcommand_is_ensure_synthetic_dataset(tmp_path, capsys):
    tiny = dict(sample_rate=256.0, background_duration=64.0, segment_duration=32.0,
                num_waveforms=4, num_val_waveforms=3, waveform_duration=4.0,
                coalescence_time=3.0, seed=0)  # fmt: skip
    argv = [f"--{k}={v}" for k, v in tiny.items()]
    cli.main(["synthetic", "--data_dir", str(tmp_path / "cli"), *argv])
    assert f"synthetic dataset ready in {tmp_path / 'cli'}" in capsys.readouterr().out
    ensure_synthetic_dataset(str(tmp_path / "lib"), **tiny)
    names = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "lib").iterdir())
    assert (tmp_path / "cli" / "synthetic.json").read_text() == (
        tmp_path / "lib" / "synthetic.json"
    ).read_text()
    for name in ("waveforms.hdf5", "val_waveforms.hdf5"):
        a, b = (read_waveforms(str(tmp_path / d / name)) for d in ("cli", "lib"))
        np.testing.assert_array_equal(a.plus, b.plus)
    a, b = (list_segments(str(tmp_path / d), ["H1", "L1"]) for d in ("cli", "lib"))
    np.testing.assert_array_equal(read_segment(a[0]), read_segment(b[0]))
    # background only: 0 waveforms writes neither waveform file
    cli.main(["synthetic", "--data_dir", str(tmp_path / "bg"), *argv, "--num_waveforms=0",
              "--num_val_waveforms=0"])  # fmt: skip
    assert not list((tmp_path / "bg").glob("*waveforms*"))
    assert (tmp_path / "bg" / "synthetic.json").exists()


def test_sky_distributions_from_a_training_config_data_section(tmp_path):
    """The injections' sky (``dec``, ``psi``, ``phi``) is configuration too: distributions
    given as ``class_path`` + ``init_args`` in the data section are what the Dataset's injector
    draws from; unset, the defaults (isotropic sky, uniform polarisation) stay."""
    import math

    from jsonargparse import ArgumentParser
    from ml4gw.distributions import Cosine

    from aframe_lib.data.base import AframeDataset

    config = yaml.safe_load(f"""
        data:
          data_dir: {tmp_path / "data"}
          sample_rate: 256
          dec: {{class_path: torch.distributions.Uniform, init_args: {{low: 0.1, high: 0.2}}}}
          psi: {{class_path: ml4gw.distributions.DeltaFunction, init_args: {{peak: 0.5}}}}
    """)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(AframeDataset, "data")
    dataset = parser.instantiate_classes(parser.parse_object(config)).data
    dec, psi, phi = (x.numpy() for x in dataset.injector.sample_sky(2000))
    assert dec.min() >= 0.1 and dec.max() <= 0.2
    assert np.all(psi == 0.5)
    assert phi.min() >= -math.pi and phi.max() <= math.pi and phi.std() > 1.5  # the default
    default = AframeDataset(str(tmp_path / "data"), sample_rate=256)
    assert isinstance(default.injector.dec, Cosine)


def test_console_script_exits_0_on_success(tmp_path):
    """The installed ``aframe-data`` is ``sys.exit(main())``: main must return None (a returned
    path would make every successful run exit 1)."""
    import subprocess
    import sys

    wrapper = "import sys; from aframe_lib.data.cli import main; sys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, "waveforms", "--path", str(tmp_path / "w.hdf5"),
         "--num_waveforms", "4", *WAVEFORMS],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(read_waveforms(str(tmp_path / "w.hdf5"))) == 4
