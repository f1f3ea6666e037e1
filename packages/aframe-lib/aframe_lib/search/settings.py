"""How a search runs an exported model over strain: :class:`SearchSettings`, declared once.

The preprocessing is the model's, never a setting: IFOs, sample rate, kernel, whitening filter,
highpass/lowpass, coalescence pads or calibrated ``timing``, and the PSD policy training used
(``psd.length``, Welch segments, cadence) all come from ``model.json``
(:meth:`~aframe_lib.search.pipeline.Search.from_exported`). Everything else a search is told is
a field here, shared by :class:`~aframe_lib.search.pipeline.Search`, ``aframe-train search``,
``aframe-train evaluate`` (one flag per field, :func:`add_settings_arguments`) and aframe-flow's
``Evaluate`` task (``--search-settings``, mapped to those flags).

This module imports neither torch nor h5py, so a command's ``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aframe_lib.utils.errors import ConfigError

BACKENDS = ("auto", "torchscript", "onnx")


class SearchSettingsError(ConfigError, ValueError):
    """A search setting out of range (the message names the field, the value and the fix)."""


@dataclass(frozen=True)
class SearchSettings:
    """Search settings (the preprocessing comes from the model's ``model.json``).

    Args:
        inference_sampling_rate: windows per second (Hz); must divide the model's sample rate.
        batch_size: windows per forward pass.
        integration_length: seconds of outputs averaged by the causal boxcar before peak
            finding.
        cluster_window: seconds; each event is the loudest within this window around it.
        threshold: minimum integrated output of an event; null keeps every cluster maximum.
        var: timing uncertainty written with each event (s); null takes the calibrated one from
            ``model.json`` (``timing``), else derives it from the kernel.
        chunk_length: seconds of outputs computed per read of strain (bounds memory).
        device: torch device; null picks a GPU when one is visible, else the CPU.
        backend: what runs the network (:mod:`~aframe_lib.search.backends`): ``torchscript``
            (``model.pt``, any device), ``onnx`` (``model.onnx`` in onnxruntime, CPU only) or
            ``auto`` (``onnx`` on a CPU when ``model.onnx`` exists, onnxruntime is installed and
            it agrees with ``model.pt`` on a check batch; else ``torchscript``).
    """

    inference_sampling_rate: float = 4.0
    batch_size: int = 128
    integration_length: float = 1.0
    cluster_window: float = 8.0
    threshold: float | None = None
    var: float | None = None
    chunk_length: float = 256.0
    device: str | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        for name in ("inference_sampling_rate", "integration_length", "cluster_window",
                     "chunk_length"):  # fmt: skip
            value = getattr(self, name)
            if not value > 0:
                raise SearchSettingsError(f"search setting {name}={value}: must be positive")
        if self.batch_size < 1:
            raise SearchSettingsError(
                f"search setting batch_size={self.batch_size}: must be a positive integer"
            )
        if self.backend not in BACKENDS:
            raise SearchSettingsError(
                f"search setting backend={self.backend!r}: must be one of {', '.join(BACKENDS)}"
            )
        if self.var is not None and not self.var > 0:
            raise SearchSettingsError(
                f"search setting var={self.var}: must be positive seconds, or null (the "
                "calibrated or kernel-derived one)"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The fields, in declaration order (one command-line flag each)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def pop_from(cls, values: dict[str, Any]) -> SearchSettings:
        """Settings from (and removed from) ``values``, e.g. a parsed command line."""
        return cls(**{name: values.pop(name) for name in cls.names() if name in values})

    @classmethod
    def split(cls, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(setting fields, the rest)`` of ``values``."""
        names = set(cls.names())
        fields = {k: v for k, v in values.items() if k in names}
        return fields, {k: v for k, v in values.items() if k not in names}


def add_settings_arguments(parser: Any) -> None:
    """Add one flat flag per :class:`SearchSettings` field (``--batch_size 64`` ...) to a
    jsonargparse ``parser``, grouped under the class's help."""
    parser.add_class_arguments(SearchSettings, nested_key=None)


def settings_parser(function: Any, prog: str) -> Any:
    """A jsonargparse parser of ``function``'s parameters (except ``settings``) and of every
    :class:`SearchSettings` field, all as flags with their docstrings as help, plus ``--config``
    (the flags from YAML, as jsonargparse's ``CLI`` has)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=(function.__doc__ or "").split("\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of these flags")
    parser.add_function_arguments(function, skip={"settings"}, as_positional=False)
    add_settings_arguments(parser)
    return parser


def parse_settings_args(
    function: Any, args: list[str], prog: str
) -> tuple[dict[str, Any], SearchSettings]:
    """``(function's other arguments, settings)`` of ``args`` (see :func:`settings_parser`)."""
    values = settings_parser(function, prog).parse_args(args).as_dict()
    values.pop("config", None)
    return values, SearchSettings.pop_from(values)


def settings_cli(function: Any, args: list[str] | None, prog: str) -> Any:
    """Call ``function(**arguments, settings=SearchSettings(...))`` from a command line
    (``args``; ``None``: ``sys.argv[1:]``) parsed by :func:`settings_parser`."""
    import sys

    values, settings = parse_settings_args(function, sys.argv[1:] if args is None else args, prog)
    return function(**values, settings=settings)
