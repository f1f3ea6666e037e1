"""The command line of a search, for any LightningCLI::

    python -m aframe_lib.tune --lightning_cli_cls my_project.cli.MyCLI \\
        --config train.yaml --tune_config tune.yaml --tune.num_samples=8 [training overrides]
    aframe-train tune --config train.yaml --tune_config tune.yaml ...   # aframe's CLI preset

``--config`` files and any argument that is not ``--tune.*``/``--tune_config`` are the training
config (exactly what ``fit`` takes); ``--tune.*`` are :class:`~.config.TuneSettings`,
also readable from a ``--tune_config`` YAML (``tune: {name: ..., space: ...}``) whose relative
``space`` path is taken relative to that file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..utils.errors import AframeError, ConfigError, StorageError
from .config import TuneSettings
from .tuner import run_tune


def split_args(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``(tune arguments, --config files, training overrides)`` of a command line."""
    tune, configs, overrides = [], [], []
    i = 0
    while i < len(argv):
        token = argv[i]
        takes_next = (
            token.startswith("--") and "=" not in token and i + 1 < len(argv)
            and not argv[i + 1].startswith("--")
        )  # fmt: skip
        group = [token, argv[i + 1]] if takes_next else [token]
        i += len(group)
        name = token.split("=", 1)[0]
        if name == "--config":
            configs.append(group[-1] if takes_next else token.split("=", 1)[1])
        elif name.startswith(("--tune.", "--tune_config", "--lightning_cli_cls")) or name in (
            "-h",
            "--help",
        ):
            tune += group
        else:
            overrides += group
    return tune, configs, overrides


def parser(cli_cls: str | None = None):
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(
        prog="aframe-train tune" if cli_cls else "python -m aframe_lib.tune",
        description=(
            "Ray Tune + ASHA search over a LightningCLI config. --config FILE and every "
            "argument other than --tune.* are the training config, as for `fit`."
        ),
    )
    p.add_argument("--tune_config", action=ActionConfigFile, help="YAML with a `tune:` section")
    p.add_argument(
        "--lightning_cli_cls",
        type=str,
        default=cli_cls,
        required=cli_cls is None,
        help="import path of the LightningCLI class that trains one trial",
    )
    p.add_class_arguments(TuneSettings, "tune")
    return p


def main(args: list[str] | None = None, cli_cls: str | None = None) -> dict:
    """Parse a search command line and run it; returns the summary."""
    argv = list(sys.argv[1:] if args is None else args)
    tune_args, configs, overrides = split_args(argv)
    if not configs and not any(a in ("-h", "--help") for a in tune_args):
        raise ConfigError("give the training config with --config FILE (as for `fit`)")
    p = parser(cli_cls)
    cfg = p.parse_args(tune_args)
    settings = dict(cfg.tune)
    space = Path(settings["space"]).expanduser()
    tune_files = [f for f in (cfg.get("tune_config") or []) if f is not None]
    if not space.is_absolute() and not space.exists() and tune_files:
        beside = Path(str(tune_files[-1])).parent / space
        settings["space"] = str(beside) if beside.exists() else str(space)
    try:
        summary = run_tune(cfg.lightning_cli_cls, configs, overrides, TuneSettings(**settings))
    except AframeError:
        raise  # one message block, exit status 2 (aframe_lib.utils.errors.console_main)
    except ConnectionError as exc:  # an unreachable Ray address or storage
        raise StorageError(str(exc)) from exc
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise ConfigError(str(exc)) from exc
    trials = summary["trials"]
    if trials and all(t["status"] == "error" for t in trials):  # not a result: a failure
        raise AframeError(  # not bad input: exit status 1
            f"every trial of the search failed (first: {trials[0]['error']}); "
            "run the same command again to retry them from their last checkpoints"
        )
    return summary
