"""Fixtures of the online tests: the search tests' oracle model and strain (helpers/search.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.search import export_oracle


@pytest.fixture(scope="session")
def oracle(tmp_path_factory) -> Path:
    return export_oracle(tmp_path_factory.mktemp("model") / "model.pt")
