"""Fixtures of the flow tests (helpers live in flow_helpers.py)."""

from __future__ import annotations

import pytest
from flow_helpers import law_env_for


@pytest.fixture
def law_env(tmp_path):
    """Environment of a `law run` in a subprocess: law home, config and outputs under tmp_path."""
    return law_env_for(tmp_path)
