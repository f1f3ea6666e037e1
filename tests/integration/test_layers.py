"""The layering rule lib <- train <- flow, and lazy heavy imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "aframe-lib": {"aframe_train", "aframe_flow"},
    "aframe-train": {"aframe_flow"},
    "aframe-flow": set(),
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package):
    bad = []
    for path in (ROOT / "packages" / package).rglob("*.py"):
        hit = imported_top_levels(path) & FORBIDDEN[package]
        if hit:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert not bad, "\n".join(bad)


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
