"""The command lines tell what they can do: every subcommand listed with a line, every option of a
subcommand in its ``--help``, and ``--print_config`` output that parses back.

The expected options are derived from what declares them (the Trainer's and its methods'
signatures, the settings dataclasses' fields, the functions behind ``search``/``evaluate`` and
``aframe-data``), never written out here, so a new parameter that the CLI fails to offer fails.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml
from helpers.console import console_scripts
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI

from aframe_lib.data import cli as data_cli
from aframe_lib.distributed.trainer import DistributedConfig
from aframe_lib.search.settings import SearchSettings
from aframe_lib.tune.config import TuneSettings
from aframe_train import cli

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart"
TRAINER_SUBCOMMANDS = list(LightningCLI.subcommands())
ALL_SUBCOMMANDS = [*TRAINER_SUBCOMMANDS, *cli.EXTRA_SUBCOMMANDS]


def run(capsys, main, args: list[str]) -> str:
    """stdout of ``main(args)``, which must exit with status 0 (``--help``, ``--print_config``)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    assert info.value.code in (0, None), out.err[-3000:]
    return out.out


def listed(help_text: str) -> dict[str, str]:
    """``{subcommand: its help line}`` of the "Available subcommands" block of a help text."""
    block = help_text.split("Available subcommands:", 1)[1]
    return dict(re.findall(r"^    (\w[\w-]*) +(\S.*)$", block, flags=re.M))


def fields(cls: type, prefix: str) -> set[str]:
    return {f"--{prefix}{f.name}" for f in dataclasses.fields(cls)}


def parameters(function, prefix: str = "", skip: set[str] = frozenset()) -> set[str]:
    names = inspect.signature(function).parameters
    return {f"--{prefix}{n}" for n in names if n not in {"self", *skip}}


def expected_options(subcommand: str) -> set[str]:
    """What ``aframe-train SUBCOMMAND --help`` must list, from the declarations themselves."""
    training = parameters(Trainer.__init__, "trainer.") | {"--model", "--data", "--config"}
    if subcommand in TRAINER_SUBCOMMANDS:
        method = getattr(Trainer, subcommand)
        options = training | parameters(method, skip=LightningCLI.subcommands()[subcommand])
        return options | (
            fields(DistributedConfig, "distributed.") if subcommand == "fit" else set()
        )
    if subcommand == "tune":
        return training | fields(TuneSettings, "tune.") | {"--tune_config"}
    module, function = cli.EXTRA_SUBCOMMANDS[subcommand]
    function = getattr(importlib.import_module(module), function)
    return parameters(function, skip={"settings"}) | fields(SearchSettings, "") | {"--config"}


def options_in(help_text: str) -> set[str]:
    return set(re.findall(r"(--[\w.]+)", help_text))


def test_aframe_train_help_lists_every_subcommand_with_a_line(capsys):
    lines = listed(run(capsys, cli.main, ["--help"]))
    assert list(lines) == ALL_SUBCOMMANDS
    assert all(len(line.split()) >= 4 for line in lines.values()), lines


@pytest.mark.parametrize("subcommand", ALL_SUBCOMMANDS)
def test_each_subcommand_help_lists_all_its_options(capsys, subcommand):
    shown = options_in(run(capsys, cli.main, [subcommand, "--help"]))
    missing = expected_options(subcommand) - shown
    assert not missing, f"aframe-train {subcommand} --help lacks {sorted(missing)}"
    assert "--print_config" in shown


def test_expected_options_are_not_trivially_satisfied():
    """The derivation finds the options that issue 22 named as missing from the help."""
    assert "--distributed.num_workers" in expected_options("fit")
    assert "--tune.space" in expected_options("tune")
    assert {"--model", "--batch_size", "--cluster_window"} <= expected_options("search")
    assert "--distributed.num_workers" not in options_in("aframe-train fit [--trainer.x X]")


def print_config(capsys, args: list[str]) -> str:
    return run(capsys, cli.main, [*args, "--print_config"])


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--config", str(QUICKSTART / "train.yaml"), "--distributed.num_workers=3"],
        ["tune", "--config", str(QUICKSTART / "train.yaml"),
         "--tune_config", str(QUICKSTART / "tune.yaml"), "--tune.num_samples=7"],
        ["search", "--model", "m.pt", "--data", "d", "--out", "e.hdf5", "--batch_size", "64"],
        ["evaluate", "--model", "m.pt", "--out", "ev", "--livetime", "1000", "--backend", "onnx"],
    ],
    ids=lambda args: args[0],
)  # fmt: skip
def test_print_config_parses_back(capsys, tmp_path, args):
    """``SUB ... --print_config`` gives a config that ``SUB --config FILE`` reads back to itself."""
    first = print_config(capsys, args)
    config = yaml.safe_load(first)
    assert isinstance(config, dict) and config
    path = tmp_path / "printed.yaml"
    path.write_text(first)
    again = print_config(capsys, [args[0], "--config", str(path)])
    assert yaml.safe_load(again) == config
    # the values given on the command line are in it
    if args[0] == "fit":
        assert config["distributed"]["num_workers"] == 3
    if args[0] == "tune":
        assert config["tune"]["num_samples"] == 7 and config["tune"]["name"] == "quickstart-search"
    if args[0] in ("search", "evaluate"):
        assert config["model"] == "m.pt"
        assert {f.name for f in dataclasses.fields(SearchSettings)} <= set(config)


def test_a_distributed_section_in_a_config_file_asks_for_ray_train(tmp_path):
    """``fit --config`` with a ``distributed:`` section runs the Ray Train driver, as
    ``--distributed.*`` does; the defaults (a plain fit's --print_config) do not."""
    defaults = {f.name: f.default for f in dataclasses.fields(DistributedConfig)}
    assert not cli._distributed_given(["fit"], {"distributed": defaults})
    assert not cli._distributed_given(["fit"], {})
    assert cli._distributed_given(["fit"], {"distributed": {**defaults, "num_workers": 2}})
    assert cli._distributed_given(["fit", "--distributed.num_workers=1"], {})


def test_aframe_data_help_lists_every_subcommand_with_a_line(capsys):
    lines = listed(run(capsys, data_cli.main, ["--help"]))
    assert list(lines) == list(data_cli.COMMANDS)
    assert all(len(line.split()) >= 4 for line in lines.values()), lines
    for name, function in data_cli.functions().items():
        shown = options_in(run(capsys, data_cli.main, [name, "--help"]))
        missing = parameters(function) - shown
        assert not missing, f"aframe-data {name} --help lacks {sorted(missing)}"


def test_a_printed_tune_config_runs_as_the_config_of_a_search(capsys, tmp_path):
    """``tune --print_config`` output given back as ``--config`` reaches the search as the
    training config plus the tune settings (the relative space beside the printed file)."""
    from aframe_lib.tune.cli import parser, split_args
    from aframe_lib.tune.training import TrainingConfig

    printed = print_config(capsys, ["tune", "--config", str(QUICKSTART / "train.yaml"),
                                    "--tune_config", str(QUICKSTART / "tune.yaml"),
                                    "--tune.num_samples=7"])  # fmt: skip
    here = tmp_path / "project"
    here.mkdir()
    (here / "search_space.yaml").write_text((QUICKSTART / "search_space.yaml").read_text())
    (here / "printed.yaml").write_text(printed)
    argv = cli.split_tune_sections(["--config", str(here / "printed.yaml")], tmp_path)
    tune_args, configs, overrides = split_args(argv)
    settings = parser(cli.AframeCLI.__module__ + ".AframeCLI").parse_args(tune_args).tune
    assert settings.num_samples == 7 and settings.space == str(here / "search_space.yaml")
    training = TrainingConfig(cli.AframeCLI, configs, overrides)
    expected = TrainingConfig(cli.AframeCLI, [str(QUICKSTART / "train.yaml")])
    assert yaml.safe_load(training.yaml) == yaml.safe_load(expected.yaml)
    # a plain training config is passed on untouched
    plain = ["--config", str(QUICKSTART / "train.yaml"), "--tune.name=x"]
    assert cli.split_tune_sections(plain, tmp_path) == plain


def test_a_missing_option_is_named_as_typed_under_its_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["search", "--model", "m.pt"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "required: data, out" in err and "search.data" not in err, err


@pytest.mark.parametrize("name", sorted(set(console_scripts()) - {"aframe-synthetic"}))
def test_every_console_script_help_lists_its_subcommands_with_a_line(capsys, name):
    """Also the scripts other packages add (``aframe-online``): ``--help`` works, and each
    subcommand its usage line offers is listed with a line of help."""
    module, function = console_scripts()[name].split(":")
    main = getattr(importlib.import_module(module), function)
    text = run(capsys, main, ["--help"])
    offered = re.search(r"\{([\w,-]+)\}", text.split("\n\n", 1)[0])
    if offered:
        lines = listed(text)
        assert list(lines) == offered.group(1).split(","), text
        assert all(len(line.split()) >= 4 for line in lines.values()), lines
