"""How tests run the real console scripts of the environment under test."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def aframe_train() -> list[str]:
    """The ``aframe-train`` console script beside this interpreter (``-m`` as a fallback)."""
    script = Path(sys.executable).parent / "aframe-train"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aframe_train"]


def console_scripts() -> dict[str, str]:
    """The console scripts the packages declare: ``{name: "module:function"}``."""
    found: dict[str, str] = {}
    for pyproject in sorted((ROOT / "packages").glob("*/pyproject.toml")):
        found.update(tomllib.loads(pyproject.read_text())["project"].get("scripts", {}))
    return found
