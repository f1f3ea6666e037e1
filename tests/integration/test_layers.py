"""The layering rule lib <- train <- flow, and lazy heavy imports."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "aframe-lib": {"aframe_train", "aframe_flow"},
    "aframe-train": {"aframe_flow"},
    # flow runs the `aframe-train` console script as a subprocess; it never imports aframe_train
    "aframe-flow": {"aframe_train"},
}
# calls that import (or look up) the module named by their first argument
IMPORTERS = {"import_module", "__import__", "find_spec", "import_string", "locate"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants of the module, classes and functions (prose, not code)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def layer_violations(source: str, forbidden: set[str], filename: str = "<string>") -> list[str]:
    """Where ``source`` imports a package of ``forbidden``, at any depth.

    Counted: ``import``/``from`` statements anywhere (in functions, ``try`` and
    ``TYPE_CHECKING`` blocks too); ``importlib.import_module``/``__import__``/``find_spec`` of a
    literal name (or an f-string's literal head); and strings that name a module for another
    interpreter to import: a whole dotted module path (``"aframe_train.cli.AframeCLI"``, also as
    a ``--flag=`` value or an f-string's head) or a ``-m aframe_train`` command line. Not
    counted: docstrings, prose that mentions a path (an error message's example), and the
    ``aframe-train`` console script.
    """
    if not forbidden:
        return []
    names = "|".join(sorted(map(re.escape, forbidden)))
    module_path = re.compile(rf"(?:--?[\w.-]+[= ])?(?:{names})(?:\.\w*)*(?::\w+)?")
    run_module = re.compile(rf"(?:^|\s)-m\s+(?:{names})\b")
    tree = ast.parse(source, filename=filename)
    docstrings = _docstrings(tree)
    bad = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            hit = {a.name.split(".")[0] for a in node.names} & forbidden
            bad += [f"{filename}:{line}: import {h}" for h in sorted(hit)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in forbidden:
                bad.append(f"{filename}:{line}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.JoinedStr) and arg.values:
                arg = arg.values[0]  # f"aframe_train.{x}": its literal head
            if (
                name in IMPORTERS
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and arg.value.split(".")[0] in forbidden
            ):
                bad.append(f"{filename}:{line}: {name}({arg.value!r})")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            text = node.value.strip()
            if module_path.fullmatch(text) or run_module.search(text):
                bad.append(f"{filename}:{line}: module string {node.value!r}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package):
    bad = []
    for path in sorted((ROOT / "packages" / package).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        bad += layer_violations(path.read_text(), FORBIDDEN[package], rel)
    assert not bad, "\n".join(bad)


# the checker itself, on snippets (flow's rule: aframe_train is forbidden)
OFFENDING = {
    "top level": "import aframe_train",
    "submodule": "import os, aframe_train.cli as cli",
    "from": "from aframe_train.models import SupervisedAframe",
    "in a function": """
        def f():
            from aframe_train import cli
            return cli
    """,
    "in a method": """
        class T:
            def run(self):
                import aframe_train.cli
    """,
    "type checking": """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import aframe_train
    """,
    "try/except": """
        try:
            import aframe_train
        except ImportError:
            pass
    """,
    "import_module": "m = importlib.import_module('aframe_train.cli')",
    "import_module f-string": "m = importlib.import_module(f'aframe_train.{x}')",
    "__import__": "m = __import__('aframe_train')",
    "find_spec": "ok = importlib.util.find_spec('aframe_train') is not None",
    "python -m list": "cmd = [sys.executable, '-m', 'aframe_train', 'fit']",
    "python -m string": "subprocess.run('python -m aframe_train.cli fit', shell=True)",
    "class path": "cli = {'class_path': 'aframe_train.models.SupervisedAframe'}",
    "flag value": "args = ['--cli=aframe_train.cli.AframeCLI']",
    "f-string path": "path = f'aframe_train.architectures.{name}'",
}
CLEAN = {
    "console script": "cmd = ['aframe-train', 'fit', '--config', path]",
    "executable helper": """
        def aframe_train_executable():
            return [shutil.which('aframe-train') or 'aframe-train']
    """,
    "module docstring": '"""Run ``python -m aframe_train fit`` or aframe_train.cli.AframeCLI."""',
    "function docstring": '''
        def f():
            """aframe_train.cli.AframeCLI"""
    ''',
    "message": "raise ValueError('give its import path, e.g. aframe_train.cli.AframeCLI')",
    "comment": "x = 1  # import aframe_train",
    "relative": "from . import aframe_train",
    "other package": "import aframe_lib.data\ncmd = ['python', '-m', 'aframe_lib.tune']",
    "lookalike": "import aframe_training\nm = 'aframe_trainer.x'",
}


@pytest.mark.parametrize("source", OFFENDING.values(), ids=OFFENDING.keys())
def test_the_layer_check_catches_an_import_at_any_depth(source):
    bad = layer_violations(textwrap.dedent(source), {"aframe_train"}, "snippet.py")
    assert bad and all(b.startswith("snippet.py:") for b in bad), bad


@pytest.mark.parametrize("source", CLEAN.values(), ids=CLEAN.keys())
def test_the_layer_check_passes_the_console_script_and_prose(source):
    assert layer_violations(textwrap.dedent(source), {"aframe_train"}) == []


def loaded_modules(statement: str) -> set[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_import_aframe_lib_is_light():
    """``import aframe_lib`` (and its data namespace) pulls in nothing heavy."""
    loaded = loaded_modules("import aframe_lib, aframe_lib.data")
    heavy = {"torch", "ml4gw", "lightning", "h5py", "ray", "wandb", "s3fs", "law", "luigi"}
    assert not loaded & heavy, f"heavy modules imported eagerly: {sorted(loaded & heavy)}"


def test_importing_all_of_lib_loads_no_upper_layer_nor_optional_extras():
    loaded = loaded_modules(
        "import aframe_lib.data.base, aframe_lib.metrics, aframe_lib.data.synthetic"
    )
    assert not loaded & {"aframe_train", "aframe_flow"}
    assert not loaded & {"ray", "wandb", "s3fs", "law", "luigi"}


def test_test_module_basenames_are_unique():
    """Tests are collected without __init__.py files: two test_x.py would shadow each other."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_tests_import_helpers_not_conftest_nor_other_folders_test_modules():
    """``from conftest import`` picks whichever conftest.py was imported first when pytest is
    given several folders; shared test code lives in tests/helpers/ (``from helpers.x import``,
    never by its bare name, which only resolves from some folders)."""
    helpers = {p.stem for p in (ROOT / "tests" / "helpers").glob("*.py")} - {"__init__"}
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                neighbour = (path.parent / f"{top}.py").exists()
                bare_helper = top in helpers and not neighbour
                if top == "conftest" or bare_helper or (top.startswith("test_") and not neighbour):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: import {mod}")
    assert not bad, "\n".join(bad)
