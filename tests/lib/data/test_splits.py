"""Training, validation and test splits: whole files, disjoint, the latest held out."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers.tiny_data import SAMPLE_RATE, dataset_kwargs

from aframe_lib.data import AframeDataset, BackgroundSegment
from aframe_lib.data.background import BackgroundError, list_segments, read_segment
from aframe_lib.data.config import DataConfigError
from aframe_lib.data.splits import check_disjoint, split_segments


def seg(t0: float, duration: float = 100.0) -> BackgroundSegment:
    return BackgroundSegment(f"background-{t0:g}-{duration:g}.hdf5", t0, duration, 256.0, ("H1",))


def make(data_dir, **kwargs) -> AframeDataset:
    defaults = dataset_kwargs(valid_frac=0.3)
    return AframeDataset(str(data_dir), **{**defaults, **kwargs})


def test_split_segments_holds_out_the_latest_files_disjointly():
    segments = [seg(t) for t in (500, 0, 300, 100, 400, 200)]  # any order; 600 s in all
    train, valid, test = split_segments(segments, valid_frac=0.2, test_frac=0.3)
    assert [s.t0 for s in test] == [400, 500]  # 0.3 * 600 = 180 s -> two 100 s files
    assert [s.t0 for s in valid] == [200, 300]  # 0.2 * 600 = 120 s -> the next two
    assert [s.t0 for s in train] == [0, 100]
    paths = [{s.path for s in split} for split in (train, valid, test)]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert max(s.t0 + s.duration for s in train) <= min(s.t0 for s in valid)
    assert max(s.t0 + s.duration for s in valid) <= min(s.t0 for s in test)
    # test_frac=0: no test split, validation as before
    train, valid, test = split_segments(segments, valid_frac=0.2)
    assert test == [] and [s.t0 for s in valid] == [400, 500] and len(train) == 4


def test_split_segments_names_the_field_it_cannot_meet():
    with pytest.raises(BackgroundError, match="data.test_frac=0.9"):
        split_segments([seg(t) for t in (0, 100, 200)], valid_frac=0.05, test_frac=0.9)
    with pytest.raises(BackgroundError, match="training, validation and test"):
        split_segments([seg(0), seg(100)], valid_frac=0.3, test_frac=0.3)


def test_check_disjoint_refuses_overlapping_test_data():
    check_disjoint([seg(200)], [seg(0), seg(100)], "data.test_dir")  # touching is fine
    with pytest.raises(BackgroundError, match=r"data.test_dir.*overlaps"):
        check_disjoint([seg(150)], [seg(0), seg(100)], "data.test_dir")


def test_test_stage_scores_only_the_test_files(tiny_data_dir):
    """setup("test") builds the held-out windows from the latest file, never the others."""
    ds = make(tiny_data_dir, test_frac=0.3)
    ds.setup("validate")
    valid_background = ds.valid_windows.background
    ds.setup("test")
    test_background = ds.valid_windows.background
    files = sorted(p for p in os.listdir(tiny_data_dir) if p.startswith("background-"))
    assert len(files) == 3 and len(valid_background) == len(test_background) == 1
    latest = _read(tiny_data_dir, files[-1], ds.ifos)
    middle = _read(tiny_data_dir, files[-2], ds.ifos)
    np.testing.assert_array_equal(test_background[0].numpy(), latest)
    np.testing.assert_array_equal(valid_background[0].numpy(), middle)
    # and the three splits of the Dataset share no file
    train, valid, test = ds._split(list_segments(str(tiny_data_dir), ds.ifos))
    assert [len(train), len(valid), len(test)] == [1, 1, 1]
    assert len({s.path for s in train + valid + test}) == 3
    batch = ds.validation_batch(*next(iter(ds.test_dataloader())))
    assert batch["background"].shape[1:] == (2, int(SAMPLE_RATE))


def _read(folder, name, ifos):
    (segment,) = [s for s in list_segments(str(folder), ifos) if s.path.endswith(name)]
    return read_segment(segment, ifos)


def test_test_dir_is_used_and_must_not_overlap(tiny_data_dir, tmp_path):
    files = sorted(p for p in os.listdir(tiny_data_dir) if p.startswith("background-"))
    data, held = tmp_path / "data", tmp_path / "test"
    data.mkdir(), held.mkdir()
    for name in os.listdir(tiny_data_dir):
        if name not in files[-1:]:
            os.symlink(tiny_data_dir / name, data / name)
    os.symlink(tiny_data_dir / files[-1], held / files[-1])
    ds = make(data, valid_frac=0.4, test_dir=str(held))
    ds.setup("test")
    np.testing.assert_array_equal(
        ds.valid_windows.background[0].numpy(), _read(held, files[-1], ds.ifos)
    )
    # a test directory holding a training file is refused, naming the field and the file
    os.symlink(tiny_data_dir / files[0], held / files[0])
    with pytest.raises(BackgroundError, match=rf"data.test_dir=.*{files[0]}.*overlaps"):
        make(data, valid_frac=0.4, test_dir=str(held)).setup("test")


def test_test_without_a_test_split_is_refused_clearly(tiny_data_dir):
    ds = make(tiny_data_dir)
    ds.setup("fit")  # training and validation need no test split
    with pytest.raises(DataConfigError, match=r"data.test_frac=0.*set data.test_frac"):
        ds.setup("test")


@pytest.mark.parametrize(
    "kwargs", [{"test_frac": -0.1}, {"test_frac": 0.7}, {"test_frac": 0.2, "test_dir": "x"}]
)
def test_bad_test_split_arguments_name_the_field(tiny_data_dir, kwargs):
    with pytest.raises(DataConfigError, match="data.test_frac"):
        make(tiny_data_dir, **kwargs)
