"""``aframe-data``: the data generators and fetcher on the command line.

Its subcommands are the library functions themselves (jsonargparse reads their signatures and
docstrings), so each parameter is written once, in the function::

    aframe-data synthetic --data_dir DIR [--ifos=[H1,L1] --sample_rate 2048 --seed 0 ...]
    aframe-data waveforms --path FILE --num_waveforms N --sample_rate 2048 [--seed 0 ...]
    aframe-data segments --out_dir SEGS --ifos=[H1,L1] --start T0 --end T1 --train_stop T
    aframe-data fetch --data_dir DIR --segments SEGS/train.txt --ifos=[H1,L1] --sample_rate 2048
    aframe-data synthetic --config data.yaml     # any of them from a YAML file

=============  =====================================================  ========================
subcommand     function                                               writes
=============  =====================================================  ========================
``synthetic``  :func:`~aframe_lib.data.synthetic.ensure_synthetic_dataset`  a whole dataset
``waveforms``  :func:`~aframe_lib.data.synthetic.generate_waveforms`  one waveform file
``segments``   :func:`~aframe_lib.data.segments.query_segments`       segment lists by period
``fetch``      :func:`~aframe_lib.data.fetch.fetch_strain`            background files
``glitches``   :func:`~aframe_lib.data.glitches.generate_glitch_bank` a glitch bank
``replay``     :func:`~aframe_lib.data.replay.replay`                 1-second GWF frames
=============  =====================================================  ========================

The waveform population is ``--population.masses``, ``--population.spins`` ... each a torch or
ml4gw distribution (``--population.masses torch.distributions.Uniform
--population.masses.low 10 --population.masses.high 50``, or ``class_path`` + ``init_args`` in
JSON/YAML). Bad input (an unknown option, a value of the wrong type, arguments that do not fit
together) is one message and exit status 2 (:mod:`aframe_lib.utils.errors`).

``aframe-synthetic`` (:func:`synthetic_main`) is the old name of ``aframe-data synthetic``, kept for
one release with its old options.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aframe_lib.utils.errors import console_main

PROG = "aframe-data"
# subcommand -> (module, function): the functions ARE the subcommands
COMMANDS = {
    "synthetic": ("aframe_lib.data.synthetic", "ensure_synthetic_dataset"),
    "waveforms": ("aframe_lib.data.synthetic", "generate_waveforms"),
    "fetch": ("aframe_lib.data.fetch", "fetch_strain"),
    "segments": ("aframe_lib.data.segments", "query_segments"),
    "glitches": ("aframe_lib.data.glitches", "generate_glitch_bank"),
    "replay": ("aframe_lib.data.replay", "replay"),
}
# the argument of each subcommand that names where it writes (for storage error messages)
OUTPUT = {
    "synthetic": "data_dir",
    "waveforms": "path",
    "fetch": "data_dir",
    "segments": "out_dir",
    "glitches": "path",
    "replay": "out",
}


def functions(names: Sequence[str] = tuple(COMMANDS)) -> dict[str, Callable[..., Any]]:
    """Subcommand name -> the library function it runs (only those of ``names`` imported)."""
    import importlib

    return {
        name: getattr(importlib.import_module(COMMANDS[name][0]), COMMANDS[name][1])
        for name in names
    }


def parser(names: Sequence[str] = tuple(COMMANDS)):
    """The jsonargparse parser of ``aframe-data`` (built from the functions' signatures), with
    the subcommands ``names`` (all by default; one when running one: ``fetch`` needs no torch).
    """
    from jsonargparse import auto_parser

    return auto_parser(
        functions(names),
        as_positional=False,
        prog=PROG,
        description="Make or fetch aframe data: synthetic datasets, waveform sets, real strain.",
        exit_on_error=False,
    )


def options(subcommand: str) -> set[str]:
    """The option names (``dest``) of one subcommand, e.g. ``{"data_dir", "ifos", ...}``."""
    sub = parser()._subcommands_action._name_parser_map[subcommand]
    skip = ("help", "config", "print_config")
    return {a.dest for a in sub._actions if a.dest not in skip and not a.dest.endswith(".help")}


def _summary(name: str, kwargs: dict[str, Any], result: Any) -> None:
    from aframe_lib.utils import fs

    if name == "synthetic":
        filesystem, inner = fs.filesystem(result)
        for path in sorted(filesystem.ls(inner, detail=False)):
            print(f"{path.rsplit('/', 1)[-1]:48s} {filesystem.size(path) / 2**20:9.1f} MiB")
        print(f"synthetic dataset ready in {result}")
    elif name in ("fetch", "segments", "glitches"):
        print(f"wrote {result}")


@console_main(PROG)
def main(argv: list[str] | None = None) -> None:
    """``aframe-data ...``: :func:`run` behind the error boundary. Returns nothing, since the
    console script exits with what it returns (a path would be exit status 1)."""
    run(argv)


def run(argv: list[str] | None = None) -> Any:
    """Parse ``argv`` (default ``sys.argv[1:]``), check it, and run the subcommand's function.

    Returns:
        What the function returns (the data directory, the waveform set, the file written).
    """
    from aframe_lib.utils import fs

    argv = sys.argv[1:] if argv is None else list(argv)
    names = argv[:1] if argv and argv[0] in COMMANDS else tuple(COMMANDS)
    p = parser(names)
    cfg = p.parse_args(argv)
    name = cfg.subcommand
    init = (getattr(p, "instantiate", None) or p.instantiate_classes)(cfg)  # jsonargparse 4.49+
    kwargs = {k: v for k, v in dict(init[name]).items() if k not in ("config", "__path__")}
    if kwargs.get("population") is not None:  # as written (class_path + init_args): provenance
        given = cfg[name].population.as_dict()
        kwargs["population"] = {k: v for k, v in given.items() if v is not None}
    if name == "synthetic":  # every argument checked before anything is written
        from .synthetic import check_synthetic_args  # (torch: not for segments and fetch)

        check_synthetic_args(kwargs, lambda key: f"--{key}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in ..."
    out = kwargs[OUTPUT[name]] or kwargs.get("path")  # fetch: --data_dir or one --path
    with fs.explain_storage_errors(out, f"--{OUTPUT[name]}"):
        result = functions([name])[name](**kwargs)
        _summary(name, kwargs, result)
    return result


_FLAGS = {"background_duration": "--duration"}


@console_main("aframe-synthetic")
def synthetic_main(argv: list[str] | None = None) -> None:
    """``aframe-synthetic``: deprecated, use ``aframe-data synthetic`` (same dataset, options
    named as the function's arguments: ``--data_dir`` for ``--out``, ``--background_duration``
    for ``--duration``, ``--sample_rate`` for ``--sample-rate`` ...). Kept for one release."""
    from aframe_lib.utils import fs

    from .synthetic import check_synthetic_args, ensure_synthetic_dataset

    parser = argparse.ArgumentParser(
        prog="aframe-synthetic", description="Deprecated: use `aframe-data synthetic`."
    )
    add = parser.add_argument
    add("--out", required=True, help="data directory, local or s3://bucket/prefix")
    add("--ifos", nargs="+", default=["H1", "L1"], help="IFO codes (default: H1 L1)")
    add("--sample-rate", type=float, default=2048.0, help="Hz (default: 2048)")
    add("--duration", type=float, default=4096.0, dest="background_duration", metavar="SECONDS",
        help="seconds of background (default: 4096)")  # fmt: skip
    add("--segment-duration", type=float, default=1024.0, help="seconds per background file")
    add("--num-waveforms", type=int, default=2000, help="training waveforms (default: 2000)")
    add("--num-val-waveforms", type=int, default=500, help="validation waveforms (default: 500)")
    add("--waveform-duration", type=float, default=8.0, help="seconds per waveform (default: 8)")
    add("--coalescence-time", type=float, default=6.0, help="s from row start to merger")
    add("--seed", type=int, default=0, help="seed of everything (default: 0)")
    add("--debug", action="store_true", help="show tracebacks (also AFRAME_DEBUG=1)")
    kwargs = vars(parser.parse_args(argv))
    kwargs.pop("debug")  # taken off by the error boundary already; listed for --help
    out = kwargs.pop("out")
    print(
        "aframe-synthetic is deprecated and goes away in the next release: use "
        "`aframe-data synthetic --data_dir DIR ...` (see `aframe-data synthetic --help`)",
        file=sys.stderr,
    )
    check_synthetic_args(kwargs, lambda k: _FLAGS.get(k, "--" + k.replace("_", "-")))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in ..."
    with fs.explain_storage_errors(out, "--out"):
        ensure_synthetic_dataset(out, **kwargs)
        _summary("synthetic", {}, out)


if __name__ == "__main__":
    main()
