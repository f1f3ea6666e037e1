"""How tests run the real console scripts of the environment under test."""

from __future__ import annotations

import sys
from pathlib import Path


def aframe_train() -> list[str]:
    """The ``aframe-train`` console script beside this interpreter (``-m`` as a fallback)."""
    script = Path(sys.executable).parent / "aframe-train"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aframe_train"]
