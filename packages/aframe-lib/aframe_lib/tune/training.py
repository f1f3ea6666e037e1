"""The training config of a search, on the driver: resolved by the LightningCLI, the space checked.

Any :class:`~lightning.pytorch.cli.LightningCLI` subclass works; it is named by import path
(``"aframe_train.cli.AframeCLI"``) so that this library never imports the project that uses it.
The training config (``--config`` files plus command-line overrides) is parsed once by the CLI's
own ``fit`` parser and dumped to one YAML text: trials start from that text (so a trial on a
remote node needs no copy of the config files), and every search-space key is checked against
the same parser before Ray starts anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aframe_lib.utils.errors import ConfigError

from .space import SearchSpaceError, format_value, parse_error, sample

if TYPE_CHECKING:
    from lightning.pytorch.cli import LightningCLI


class TrainingConfigError(ConfigError, ValueError):
    """The training config (files + overrides) does not parse with the CLI."""


def import_cli(path: str | type) -> type[LightningCLI]:
    """The LightningCLI class at ``"package.module.Class"`` (or ``package.module:Class``)."""
    from lightning.pytorch.cli import LightningCLI

    if isinstance(path, type):
        cls = path
    else:
        module, _, name = path.replace(":", ".").rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ImportError(
                f"cannot import the LightningCLI class {path!r} ({exc}); "
                "give its import path, e.g. aframe_train.cli.AframeCLI"
            ) from exc
    if not (isinstance(cls, type) and issubclass(cls, LightningCLI)):
        raise TypeError(f"{path!r} is not a LightningCLI subclass")
    return cls


def cli_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _parse_only(cls: type[LightningCLI]) -> type[LightningCLI]:
    """``cls`` that builds its parser and parses, but instantiates and runs nothing."""

    class ParseOnly(cls):  # type: ignore[misc, valid-type]
        def _set_seed(self) -> None:
            pass

        def _add_instantiators(self) -> None:
            pass

        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

        def after_instantiate_classes(self) -> None:
            pass

        def _run_subcommand(self, subcommand: str) -> None:
            pass

    return ParseOnly


class TrainingConfig:
    """The resolved ``fit`` config of a LightningCLI class, and its parser.

    Args:
        cli_cls: the LightningCLI class (or its import path).
        configs: ``--config`` files, in order (later ones override earlier ones).
        overrides: further ``--key=value`` arguments for ``fit``.

    Raises:
        TrainingConfigError: when the files and overrides do not parse (the CLI's message).
    """

    def __init__(
        self, cli_cls: str | type, configs: Sequence[str], overrides: Sequence[str] = ()
    ) -> None:
        self.cli_cls = import_cli(cli_cls)
        self.args = ["fit", *[a for c in configs for a in ("--config", str(c))], *overrides]
        holder: dict[str, Any] = {}

        def build(args: list[str]) -> None:
            holder["cli"] = _parse_only(self.cli_cls)(args=args)

        error = parse_error(build, self.args)
        if error:
            raise TrainingConfigError(
                f"the training config does not parse with {cli_path(self.cli_cls)} "
                f"(arguments: {' '.join(self.args)}):\n{error}"
            )
        cli = holder["cli"]
        self.parser = cli._parser("fit")
        self.config = cli.config["fit"]
        try:  # nulls are kept: a null may override a non-null default
            self.yaml = self.parser.dump(self.config, skip_unset=False)
        except TypeError:  # jsonargparse < 4.49
            self.yaml = self.parser.dump(self.config, skip_none=False)
        self.yaml = _without_placement(self.yaml)

    def check_overrides(self, overrides: Sequence[str]) -> str | None:
        """The parser's error for the resolved config plus ``overrides``, or None if they parse."""
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(self.yaml)
            f.flush()
            return parse_error(self.parser.parse_args, ["--config", f.name, *overrides])


def _without_placement(text: str) -> str:
    """The config YAML without a ``distributed`` section (:mod:`aframe_lib.distributed`'s
    ``--distributed.*``, which a CLI's ``fit`` may have): where a run is placed is not part of
    the training that a Tune trial or a Ray Train worker runs from this text."""
    import yaml

    config = yaml.safe_load(text)
    if not isinstance(config, dict) or "distributed" not in config:
        return text
    config.pop("distributed")
    return yaml.safe_dump(config, sort_keys=False)


def validate_space(training: TrainingConfig, space: Mapping[str, Any]) -> None:
    """Check every key of ``space`` (with a sampled value) against the CLI's ``fit`` parser.

    Raises:
        SearchSpaceError: naming the first key that the parser rejects, its message, and the fix.
    """
    for key, dist in space.items():
        value = format_value(sample(dist))
        error = training.check_overrides([f"--{key}={value}"])
        if error:
            raise SearchSpaceError(
                f"search space key {key!r} (sampled value {value}) is rejected by "
                f"{cli_path(training.cli_cls)} fit:\n{error}\n"
                "Fix: use a dotted key that `fit --print_config` shows for this config "
                "(e.g. model.init_args.learning_rate), with values of the right type."
            )
