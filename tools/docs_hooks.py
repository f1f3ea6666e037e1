"""mkdocs hook: the command-line reference (docs/reference/cli.md), rendered from the parsers.

At build time the page's ``<!-- cli-reference -->`` marker is replaced by the ``--help`` of every
console script the three packages declare (``[project.scripts]`` in ``packages/*/pyproject.toml``),
of each of their subcommands, and of every law task of ``aframe_flow`` (``law run
aframe_flow.<Task> --help``), each captured by calling the command's own parser in this process.
So the reference cannot drift from the code: a new option, subcommand, console script or task
appears in it at the next build.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- cli-reference -->"
API_MARKER = re.compile(r"<!-- api: (\w+) -->")
WIDTH = "100"  # argparse wraps its help to $COLUMNS
# deprecated aliases: listed, not expanded
DEPRECATED = {"aframe-synthetic": "aframe-data synthetic"}


def console_scripts() -> dict[str, str]:
    """``{script name: "module:function"}`` of the three packages, in package order."""
    scripts: dict[str, str] = {}
    for package in ("aframe-lib", "aframe-train", "aframe-flow", *sorted(
        p.name for p in (ROOT / "packages").iterdir()
        if p.name not in ("aframe-lib", "aframe-train", "aframe-flow")
    )):  # fmt: skip
        pyproject = ROOT / "packages" / package / "pyproject.toml"
        if pyproject.exists():
            project = tomllib.loads(pyproject.read_text())["project"]
            scripts.update(project.get("scripts", {}))
    return scripts


def _capture(call) -> str:
    """stdout (and stderr) of ``call()``, which is expected to exit (``--help``)."""
    out = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    argv = sys.argv[:]
    sys.argv[1:] = []  # LightningCLI warns when it sees mkdocs' own arguments beside args=
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                call()
            except SystemExit:
                pass
    finally:
        sys.argv[:] = argv
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return out.getvalue().rstrip()


def script_help(target: str, args: list[str]) -> str:
    """``--help`` of the console script ``target`` (``"module:function"``) with ``args``."""
    module, function = target.split(":")
    main = getattr(importlib.import_module(module), function)
    return _capture(lambda: main([*args, "--help"]))


def subcommands(help_text: str) -> list[str]:
    """The subcommands an argparse help lists in its usage line (``{fit,validate,...}``)."""
    usage = help_text.split("\n\n", 1)[0]
    match = re.search(r"\{([\w,-]+)\}", usage)
    return match.group(1).split(",") if match else []


def law_tasks() -> list[str]:
    """The task classes ``aframe_flow`` exports, in its ``__all__`` order."""
    import luigi

    import aframe_flow

    return [n for n in aframe_flow.__all__
            if isinstance(getattr(aframe_flow, n), type)
            and issubclass(getattr(aframe_flow, n), luigi.Task)]  # fmt: skip


def law_help(task: str) -> str:
    """``law run aframe_flow.<task> --help``: luigi's command-line parser of the task."""
    from luigi.cmdline_parser import CmdlineParser

    import aframe_flow

    family = getattr(aframe_flow, task).get_task_family()
    argv0 = sys.argv[0]
    sys.argv[0] = "law run"
    try:
        text = _capture(lambda: CmdlineParser([family, "--help"]))
    finally:
        sys.argv[0] = argv0
    return text


def _block(title: str, command: str, text: str, level: int = 2) -> list[str]:
    return [f"{'#' * level} {title}", "", f"`{command} --help`", "", "```text", text, "```", ""]


def reference() -> str:
    """The whole generated reference (Markdown)."""
    lines: list[str] = []
    for name, target in console_scripts().items():
        if name in DEPRECATED:
            lines += [f"## `{name}`", "", f"Deprecated: use `{DEPRECATED[name]}`.", ""]
            continue
        top = script_help(target, [])
        lines += _block(f"`{name}`", name, top)
        for sub in subcommands(top):
            lines += _block(f"`{name} {sub}`", f"{name} {sub}", script_help(target, [sub]), 3)
    lines += ["## `law run aframe_flow.*`", "",
              "The law tasks of aframe-flow; luigi's own options (`--workers`, "
              "`--local-scheduler`, ...) are listed by `--help-all`.", ""]  # fmt: skip
    for task in law_tasks():
        lines += _block(f"`{task}`", f"law run aframe_flow.{task}", law_help(task), 3)
    return "\n".join(lines)


def modules(package: str) -> list[str]:
    """Every public module of ``package`` (by its files: nothing is imported), in path order."""
    folder = next((ROOT / "packages").glob(f"*/{package}"))
    found = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts) or "__main__" in parts:
            continue
        found.append(".".join(parts))
    return found


def api(package: str) -> str:
    """The API reference of ``package``: one mkdocstrings block per module (members only where
    they are defined, so a re-export is documented once)."""
    blocks = []
    for module in modules(package):
        blocks += [f"::: {module}", "    options:", "      show_submodules: false", ""]
    return "\n".join(blocks)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - mkdocs API
    markdown = API_MARKER.sub(lambda m: api(m.group(1)), markdown)
    if MARKER not in markdown:
        return markdown
    for path in ("aframe-lib", "aframe-train", "aframe-flow"):
        package = str(ROOT / "packages" / path)
        if package not in sys.path:
            sys.path.insert(0, package)
    return markdown.replace(MARKER, reference())
