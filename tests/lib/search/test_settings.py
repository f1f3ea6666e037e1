"""``SearchSettings``: the one declaration of how a search runs, its checks and its plumbing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aframe_lib.search import SearchSettings
from aframe_lib.search.settings import SearchSettingsError


def test_the_settings_module_imports_neither_torch_nor_h5py():
    code = (
        "import sys, aframe_lib.search.settings\n"
        "print('torch' in sys.modules, 'h5py' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, r"batch_size=0: must be a positive integer"),
        ({"cluster_window": 0.0}, r"cluster_window=0.0: must be positive"),
        ({"inference_sampling_rate": -4.0}, r"inference_sampling_rate=-4.0: must be positive"),
        ({"var": 0.0}, r"var=0.0: must be positive seconds, or null"),
    ],
)
def test_out_of_range_settings_name_the_field(kwargs, match):
    with pytest.raises(SearchSettingsError, match=match):
        SearchSettings(**kwargs)


def test_search_takes_the_settings_and_from_exported_overrides_fields(engine):
    search = engine(settings=SearchSettings(inference_sampling_rate=8.0, batch_size=3),
                    integration_length=0.5)  # fmt: skip
    assert search.search_settings == SearchSettings(
        inference_sampling_rate=8.0, batch_size=3, integration_length=0.5, cluster_window=4.0,
        device="cpu",
    )  # fmt: skip
    assert (search.rate, search.batch_size, search.integration_size) == (8.0, 3, 4)
    assert search.cluster_size == 32 and str(search.device) == "cpu"
    assert search.settings()["integration_length"] == 0.5
