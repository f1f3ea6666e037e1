"""Search space files: distributions parsed to Ray Tune objects, clear errors for bad ones."""

from __future__ import annotations

import pytest

from aframe_lib.tune.space import SearchSpaceError, format_value, load_space

pytest.importorskip("ray.tune")


def test_yaml_space_becomes_ray_tune_distributions(tmp_path):
    from ray.tune.search.sample import Categorical, Float, Integer

    path = tmp_path / "space.yaml"
    path.write_text(
        "model.init_args.learning_rate: loguniform(1e-4, 1e-1)\n"
        "data.init_args.waveform_prob: uniform(0.2, 0.6)\n"
        "model.init_args.arch.init_args.layers: choice([[1, 1], [2, 2]])\n"
        "data.init_args.batch_size: randint(8, 32)\n"
        "data.init_args.ifos: [H1, L1]\n"
    )
    space = load_space(path)
    lr = space["model.init_args.learning_rate"]
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-4, 1e-1)
    assert isinstance(space["model.init_args.arch.init_args.layers"], Categorical)
    assert isinstance(space["data.init_args.batch_size"], Integer)
    assert space["data.init_args.ifos"] == ["H1", "L1"]  # fixed values pass through
    assert 1e-4 <= lr.sample() <= 1e-1


def test_python_space_module(tmp_path):
    path = tmp_path / "space.py"
    path.write_text("from ray import tune\nspace = {'model.lr': tune.uniform(0, 1)}\n")
    assert set(load_space(path)) == {"model.lr"}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("unifrom(0, 1)", ["model.lr", "unknown distribution 'unifrom'", "loguniform"]),
        ("uniform(1)", ["model.lr", "missing a required argument", "upper"]),
        ("uniform(1, 0)", ["model.lr", "lower (1) must be below upper (0)"]),
        ("loguniform(0, 1)", ["model.lr", "lower bound greater than 0"]),
        ("choice([])", ["model.lr", "non-empty list"]),
        ("uniform(0, 1", ["model.lr", "not a distribution call"]),
        ("uniform(a, 1)", ["model.lr", "literal"]),
        ("__import__('os').system('true')", ["model.lr", "not a distribution call"]),
        ("tune.uniform(0, 1, 2, 3)", ["model.lr", "not a valid uniform"]),
    ],
)
def test_bad_distribution_names_the_key_and_the_fix(value, words):
    with pytest.raises(SearchSpaceError) as info:
        load_space({"model.lr": value})
    for word in words:
        assert word in str(info.value)


def test_bad_files_and_keys(tmp_path):
    with pytest.raises(SearchSpaceError, match="does not exist"):
        load_space(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(SearchSpaceError, match="empty"):
        load_space(tmp_path / "empty.yaml")
    with pytest.raises(SearchSpaceError, match="not a config key"):
        load_space({"--model.lr": "uniform(0, 1)"})


def test_values_are_formatted_as_cli_text():
    import numpy as np

    assert format_value(0.5) == "0.5"
    assert format_value([1, 1]) == "[1, 1]"
    assert format_value("H1") == "H1"
    assert format_value(True) == "true"
    assert format_value(np.float32(0.25)) == "0.25"
