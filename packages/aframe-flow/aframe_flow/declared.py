"""aframe-lib's declaration of the data settings, as luigi parameters.

The synthetic data's settings (name, type, default, help) are declared once, in aframe-lib's
``ensure_synthetic_dataset``. A login node has no aframe-lib, so flow reads the copy of that
declaration shipped beside this module (``synthetic.json``, written by ``python -m
aframe_lib.data.declaration packages/aframe-flow/aframe_flow/synthetic.json``; a test checks it
equals aframe-lib's) and builds its parameters from it (:func:`declared_parameters`), with the
seed streams, the manifest's name and the waveform files of a synthetic dataset.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import luigi

DECLARATION: dict[str, Any] = json.loads(
    resources.files("aframe_flow").joinpath("synthetic.json").read_text()
)
SYNTHETIC: dict[str, dict[str, Any]] = DECLARATION["synthetic"]["parameters"]
STREAMS: dict[str, int] = DECLARATION["streams"]
MANIFEST: str = DECLARATION["manifest"]
#: stream number -> the waveform file of a synthetic dataset written from it
WAVEFORM_FILES: dict[int, str] = {int(k): v for k, v in DECLARATION["waveform_files"].items()}

_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def _help(text: str) -> str:
    """A docstring entry as plain text (no reST roles or literals)."""
    return _ROLE.sub(r"\1", text).replace("``", "")


def declared_parameters(skip: tuple[str, ...] = ()) -> dict[str, luigi.Parameter]:
    """One luigi parameter per declared synthetic setting (those in ``skip`` left out), with
    aframe-lib's default and help. ``population`` is a JSON dict (empty: the defaults)."""
    out: dict[str, luigi.Parameter] = {}
    for name, spec in SYNTHETIC.items():
        if name in skip:
            continue
        kind, default, text = spec["kind"], spec["default"], _help(spec["help"])
        if kind == "float":
            out[name] = luigi.FloatParameter(default=default, description=text)
        elif kind == "int":
            out[name] = luigi.IntParameter(default=default, description=text)
        elif kind == "int?":
            out[name] = luigi.OptionalIntParameter(default=default, description=text)
        elif kind == "population":
            out[name] = luigi.DictParameter(
                default={},
                description=text + ' As JSON, e.g. {"masses": {"class_path": '
                '"torch.distributions.Uniform", "init_args": {"low": 10, "high": 50}}}; '
                "empty: the default population",
            )
        else:
            raise TypeError(f"synthetic.json: {name} has kind {kind!r}, which flow cannot take")
    return out


def stream_seed(seed: int, stream: int) -> int:
    """aframe-lib's ``stream_seed``: ``seed`` for the training background, else ``seed * 1000 +
    stream`` (a test checks they agree)."""
    return int(seed) if stream == STREAMS["background"] else int(seed) * 1000 + int(stream)
