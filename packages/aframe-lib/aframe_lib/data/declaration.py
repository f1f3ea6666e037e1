"""The synthetic data's settings as JSON: what other layers derive their data parameters from.

aframe-flow cannot import aframe-lib on a login node, so it reads a copy of :func:`declaration`
shipped in its package (``aframe_flow/synthetic.json``); a test checks the copy equals this
declaration, and ``python -m aframe_lib.data.declaration PATH`` writes it again after a change to
:func:`~aframe_lib.data.synthetic.ensure_synthetic_dataset`. Every setting is declared once, in
that function's signature and docstring: its name, type, default and help all come from there.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from typing import Any

#: the functions whose parameters are declared, and the data-directory argument each leaves out
#: (``background_stream``: which stream a task's background is, set by the task, not a setting)
FUNCTIONS = {
    "synthetic": (
        "aframe_lib.data.synthetic.ensure_synthetic_dataset",
        ("data_dir", "background_stream"),
    )
}


def _kind(annotation: Any) -> str:
    """``float``, ``int``, ``int?`` (optional int), ``list[str]``, ``population`` or ``noise``."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(sys.modules["aframe_lib.data.synthetic"]))  # noqa: S307
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1
    base = args[0] if optional else annotation
    if getattr(base, "__name__", "") == "WaveformPopulation":
        return "population"
    if getattr(base, "__name__", "") == "NoiseModel":
        return "noise"
    if base in (int, float):
        return base.__name__ + ("?" if optional else "")
    return "list[str]"  # ifos: Sequence[str]


def declaration() -> dict[str, Any]:
    """The declared settings: per function, each parameter's ``kind`` (``float``, ``int``,
    ``int?``, ``list[str]``, ``population``, ``noise``), ``default`` and ``help`` (its docstring
    entry);
    with the seed streams, the manifest's name and the waveform files of a synthetic dataset."""
    import importlib

    import docstring_parser

    from . import synthetic

    out: dict[str, Any] = {}
    for name, (target, skip) in FUNCTIONS.items():
        module, func = target.rsplit(".", 1)
        function = getattr(importlib.import_module(module), func)
        docs = {p.arg_name: p.description for p in docstring_parser.parse(function.__doc__).params}
        params = {}
        for pname, param in inspect.signature(function).parameters.items():
            if pname in skip:
                continue
            default = param.default
            params[pname] = {
                "kind": _kind(param.annotation),
                "default": list(default) if isinstance(default, tuple) else default,
                "help": " ".join((docs.get(pname) or "").split()),
            }
        out[name] = {"function": target, "parameters": params}
    out["streams"] = {
        "background": synthetic.BACKGROUND, "train_waveforms": synthetic.TRAIN_WAVEFORMS,
        "val_waveforms": synthetic.VAL_WAVEFORMS, "test_waveforms": synthetic.TEST_WAVEFORMS,
        "heldout_background": synthetic.HELDOUT_BACKGROUND, "evaluate": synthetic.EVALUATE,
    }  # fmt: skip
    out["manifest"] = synthetic.MANIFEST
    out["waveform_files"] = {str(k): v for k, v in synthetic.WAVEFORM_FILES.items()}
    return out


def dumps() -> str:
    """:func:`declaration` as the text of the shipped copy."""
    return json.dumps(declaration(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m aframe_lib.data.declaration PATH``: write :func:`dumps` to ``PATH``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m aframe_lib.data.declaration PATH (e.g. "
                 "packages/aframe-flow/aframe_flow/synthetic.json)")  # fmt: skip
    with open(argv[0], "w") as f:
        f.write(dumps())


if __name__ == "__main__":
    main()
