"""Every command line the documentation shows is parsed by its own parser, so a page that no
longer works fails here.

The commands are found in the fenced code blocks (``bash``, ``sh``, ``console`` or unlabelled)
of README.md and docs/**/*.md, backslash continuations joined, ``&&``/``;``/``|`` chains split,
``VAR=value`` prefixes dropped. Then, by program:

- ``aframe-train`` (and ``python -m aframe_train``): :class:`aframe_train.cli.AframeCLI`'s own
  parser (all seven subcommands), values included; a ``--config``/``--tune_config`` file that is
  not in this repository (``my.yaml``, a user's) is replaced by the quickstart's, so the other
  options are still checked against a real config;
- ``aframe-data``: :func:`aframe_lib.data.cli.parser`;
- ``aframe-online`` (and any other console script a package declares): its module's
  ``parser()``; skipped, with the reason, only while ``aframe-online`` does not exist;
- ``law run aframe_flow.<Task>``: luigi's command-line parser of the task (the option names),
  then each value through its parameter's own ``parse``;
- ``nox -s NAME``: the session exists in noxfile.py.

Commands ending in ``--help`` are run (in this process: they are cheap); the others are parsed
only (they need data, clusters, GPUs or hours). ``...`` stands for "more of the same" and
``[--flag VALUE]`` for an optional part of a synopsis: both are dropped before parsing.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import helpers.flow  # noqa: F401 - a law home and luigi's config before luigi is imported
import pytest
from helpers.console import console_scripts

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
QUICKSTART = ROOT / "projects" / "quickstart"
# what stands in for a config file of the user's (`--config my.yaml`) when the command is parsed
STAND_INS = {"--config": QUICKSTART / "train.yaml", "-c": QUICKSTART / "train.yaml",
             "--tune_config": QUICKSTART / "tune.yaml"}  # fmt: skip


@dataclass
class Command:
    page: str
    line: int
    argv: list[str]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}:{' '.join(self.argv[:3])}"


def shell_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, logical line)`` of every shell code block of a Markdown page."""
    lines, block, start, out = text.splitlines(), None, 0, []
    logical, first = "", 0
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line)
        if block is None:
            if match:
                block = (match["fence"], match["lang"].lower() in SHELL_BLOCKS)
                start = number
            continue
        if match and match["fence"].startswith(block[0]) and not match["lang"]:
            block = None
            continue
        if not block[1]:
            continue
        if not logical:
            first = number
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        out.append((first, logical + line))
        logical = ""
    assert block is None, f"unclosed code block from line {start}"
    return out


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (comments dropped, chains split, env prefixes off)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in prose-like lines: not a command we check
        return []
    commands, current = [], []
    for token in tokens:
        if token and set(token) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    result = []
    for argv in commands:
        if argv[:1] in (["$"], ["%"]):  # a console block's prompt
            argv = argv[1:]
        while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
            argv = argv[1:]
        if argv and argv[0] == "export":
            continue
        if argv:
            result.append(argv)
    return result


def program(argv: list[str]) -> str | None:
    """Which checked program ``argv`` runs (None: not one we check)."""
    if argv[:3] == ["python", "-m", "aframe_train"]:
        return "aframe-train"
    if argv[0] == "law":
        return "law" if argv[1:2] == ["run"] and argv[2:3] and argv[2].startswith(
            "aframe_flow.") else None  # fmt: skip
    if argv[0] == "nox":
        return "nox"
    if argv[0] in ("aframe-train", "aframe-data", "aframe-online"):
        return argv[0]
    return None


def documented_commands() -> list[Command]:
    found = []
    for page in PAGES:
        for number, line in shell_lines(page.read_text()):
            for argv in split_commands(line):
                if program(argv):
                    found.append(Command(str(page.relative_to(ROOT)), number, argv))
    return found


COMMANDS = documented_commands()


def synopsis_removed(args: list[str]) -> list[str]:
    """``args`` without ``...`` and ``[--optional VALUE]`` groups of a synopsis."""
    out, depth = [], 0
    for token in args:
        if depth or token.startswith("[--"):
            depth += token.count("[") - token.count("]")
            continue
        if token != "...":
            out.append(token)
    return out


def stand_in_configs(args: list[str], training: bool) -> list[str]:
    """Config files that are not in this repository replaced by the quickstart's (``training``:
    the command's ``--config`` is a training config), or dropped (another program's flags)."""
    out, skip = [], False
    for i, token in enumerate(args):
        if skip:
            skip = False
            continue
        name, eq, value = token.partition("=")
        path = value if eq else (args[i + 1] if i + 1 < len(args) else "")
        if name in STAND_INS and path and not (ROOT / path).is_file() and not Path(path).is_file():
            skip = not eq
            if training:
                out.append(f"{name}={STAND_INS[name]}")
            continue
        out.append(token)
    return out


def capture(call) -> tuple[int, str]:
    """``(exit status, output)`` of ``call()``: 0 when it returns."""
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            call()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue()


_PARSERS: dict[str, object] = {}


def aframe_train_parser():
    """The full ``aframe-train`` parser (all seven subcommands), built once."""
    if "aframe-train" not in _PARSERS:
        from aframe_train.cli import AframeCLI

        class Grab(Exception):
            pass

        class ParserOnly(AframeCLI):
            def parse_arguments(self, parser, args):
                raise Grab(parser)

        try:
            ParserOnly(args=["--help"])
        except Grab as grabbed:
            _PARSERS["aframe-train"] = grabbed.args[0]
    return _PARSERS["aframe-train"]


def check_aframe_train(args: list[str]) -> None:
    parser = aframe_train_parser()
    if args[-1:] in (["--help"], ["-h"]):
        from aframe_train.cli import main

        code, out = capture(lambda: main(args))
        assert code == 0 and "usage:" in out, out[-2000:]
        return
    training = args[0] in ("fit", "validate", "test", "predict", "tune")
    code, out = capture(lambda: parser.parse_args(stand_in_configs(args, training)))
    assert code == 0, out[-2000:]  # --print_config prints and exits 0


def check_aframe_data(args: list[str]) -> None:
    from aframe_lib.data import cli

    if args[-1:] in (["--help"], ["-h"]):
        code, out = capture(lambda: cli.main(args))
        assert code == 0 and "usage:" in out, out[-2000:]
        return
    code, out = capture(lambda: cli.parser().parse_args(stand_in_configs(args, training=False)))
    assert code == 0, out[-2000:]


def check_other_script(name: str, args: list[str]) -> None:
    target = console_scripts().get(name)
    if target is None:
        assert name == "aframe-online", f"{name} is not a console script of any package"
        pytest.skip(f"{name} does not exist on this branch yet (no package declares it)")

    module = importlib.import_module(target.split(":")[0])
    if args[-1:] in (["--help"], ["-h"]):
        main = getattr(module, target.split(":")[1])
        code, out = capture(lambda: main(args))
        assert code == 0 and "usage:" in out, out[-2000:]
        return
    if hasattr(module, "parser"):
        code, out = capture(lambda: module.parser().parse_args(stand_in_configs(args, False)))
        assert code == 0, out[-2000:]
        return
    parse_only(getattr(module, target.split(":")[1]), stand_in_configs(args, False))


class Parsed(Exception):
    """Raised by :func:`parse_only` once the command's own parser has accepted its arguments."""


def parse_only(main, args: list[str]) -> None:
    """Run ``main(args)`` up to its parser: the first ``parse_args`` of an argparse or
    jsonargparse parser parses for real, then stops the command before it does anything."""
    import argparse

    import jsonargparse

    patched = []
    for cls in (argparse.ArgumentParser, jsonargparse.ArgumentParser):
        original = cls.parse_args

        def parse_args(self, *a, _original=original, **kw):
            _original(self, *a, **kw)
            raise Parsed

        patched.append((cls, original))
        cls.parse_args = parse_args
    try:
        code, out = capture(lambda: main(args))
    except Parsed:
        return
    finally:
        for cls, original in patched:
            cls.parse_args = original
    raise AssertionError(
        f"the command did not reach its parser (exit status {code}):\n{out[-2000:]}"
    )


def check_law(args: list[str]) -> None:
    import luigi
    from luigi.cmdline_parser import CmdlineParser

    module, _, task_name = args[0].rpartition(".")  # as law finds it: module, then class
    task = getattr(importlib.import_module(module), task_name, None)
    assert isinstance(task, type) and issubclass(task, luigi.Task), f"no task {args[0]}"
    argv = [task.get_task_family(), *args[1:]]
    code, out = capture(lambda: CmdlineParser(argv))
    if args[-1:] in (["--help"], ["-h"]):
        assert code == 0 and "usage:" in out, out[-2000:]
        return
    assert code == 0, f"law run {' '.join(args)}:\n{out[-2000:]}"
    CmdlineParser(argv)._get_task_kwargs()  # each value through its parameter's parse()


def nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if ast.unparse(target) == "nox.session":
                    name = node.name
                    if isinstance(dec, ast.Call):
                        for kw in dec.keywords:
                            if kw.arg == "name":
                                name = ast.literal_eval(kw.value)
                    sessions.add(name)
    return sessions


def check_nox(args: list[str]) -> None:
    sessions = nox_sessions()
    given = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-s", "--session", "-e")]
    assert given, f"nox {' '.join(args)}: name the session with -s"
    for name in given:
        assert name in sessions, (
            f"nox -s {name}: no such session in noxfile.py ({sorted(sessions)})"
        )


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_documented_command_parses(command, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("COLUMNS", "100")
    argv = command.argv
    name = program(argv)
    if argv[:3] == ["python", "-m", "aframe_train"]:
        argv = ["aframe-train", *argv[3:]]
    args = synopsis_removed(argv[1:])
    where = f"{command.page}, line {command.line}: {' '.join(command.argv)}"
    try:
        if name == "aframe-train":
            check_aframe_train(args)
        elif name == "aframe-data":
            check_aframe_data(args)
        elif name == "law":
            check_law(args[1:])
        elif name == "nox":
            check_nox(args)
        else:
            check_other_script(name, args)
    except (AssertionError, Exception) as exc:
        if isinstance(exc, pytest.skip.Exception):
            raise
        pytest.fail(f"{where}\n{type(exc).__name__}: {exc}")


def test_commands_are_found_in_every_form_a_page_writes_them():
    page = """
text

```console
$ aframe-train fit --config a.yaml \\
    --trainer.max_epochs=2   # a comment
```

  ~~~bash
  export LAW_CONFIG_FILE=x.cfg
  AFRAME_BASE_DIR=/tmp/x law run aframe_flow.Train --gpus 0 && nox -s docs
  ~~~

```yaml
aframe-train: not a command
```
"""
    argvs = [argv for _, line in shell_lines(page) for argv in split_commands(line)]
    assert argvs == [
        ["aframe-train", "fit", "--config", "a.yaml", "--trainer.max_epochs=2"],
        ["law", "run", "aframe_flow.Train", "--gpus", "0"],
        ["nox", "-s", "docs"],
    ]


def test_the_pages_show_commands_of_every_checked_program():
    """The search finds what it is meant to (a regex that matched nothing would pass all)."""
    found = {program(c.argv) for c in COMMANDS}
    assert {"aframe-train", "aframe-data", "law", "nox"} <= found
    readme = [c for c in COMMANDS if c.page == "README.md"]
    assert {" ".join(c.argv) for c in readme} >= {"nox -s quickstart", "nox -s tests"}


def test_a_wrong_option_fails_the_check():
    """The checks can fail: a misspelt option of each program is refused."""
    with pytest.raises(Exception, match="bogus"):
        check_aframe_train(["fit", "--config", str(QUICKSTART / "train.yaml"), "--bogus=1"])
    with pytest.raises(Exception, match="bogus"):
        check_aframe_data(["synthetic", "--data_dir", "d", "--bogus", "1"])
    with pytest.raises(AssertionError):
        check_law(["aframe_flow.Train", "--bogus", "1"])
    with pytest.raises(AssertionError):
        check_nox(["-s", "no_such_session"])
    # a console script without a parser() is stopped at its own parser (aframe-data's here)
    from aframe_lib.data.cli import main as data_main

    parse_only(data_main, ["synthetic", "--data_dir", "never-written"])
    assert not (ROOT / "never-written").exists()
    with pytest.raises(AssertionError, match="bogus"):
        parse_only(data_main, ["synthetic", "--data_dir", "never-written", "--bogus", "1"])
    assert os.path.exists(ROOT / "noxfile.py")
