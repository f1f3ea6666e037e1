"""The chunked training path: windows from the right place, uniform over segments, disjoint rank
shares, bounded buffers, the auto/memory/chunked choice and its config errors.

Background files hold arange-valued strain (segment k, IFO j: ``1e6 j + 1e5 k + t``), so every
sampled window says which segment, IFO and start it came from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tiny_data import SAMPLE_RATE
from ml4gw.distributions import PowerLaw

from aframe_lib.data import AframeDataset
from aframe_lib.data.background import (
    BackgroundError,
    background_fname,
    list_segments,
    write_background,
)
from aframe_lib.data.chunked import (
    ChunkBudget,
    ChunkedTrainingData,
    ChunkTable,
    GiB,
    plan_epoch,
    read_chunks,
    select_chunks,
)
from aframe_lib.data.config import DataConfigError
from aframe_lib.data.sampling import ChunkSampler

RATE = 64.0
SIZES = [5000, 1200, 3000]  # samples per segment (IFO rows 2)
SAMPLE = 1000  # window (samples)
CHUNK = 1600  # chunk (samples): 601 starts per full chunk


def write_arange(root, sizes=SIZES, num_ifos=2):
    root.mkdir(parents=True, exist_ok=True)
    t0 = 1_000_000_000
    for k, n in enumerate(sizes):
        strain = {ifo: 1e6 * j + 1e5 * k + np.arange(n) for j, ifo in enumerate(["H1", "L1"])}
        write_background(str(root / background_fname(t0, n / RATE)), strain, t0, RATE)
        t0 += int(n / RATE) + 10
    return list_segments(str(root), ["H1", "L1"], RATE)


def chunked(segments, chunks_per_epoch=3, rank=0, world_size=1, batch_size=256, batches=2):
    table = ChunkTable.tile([s.size for s in segments], SAMPLE, CHUNK)
    budget = ChunkBudget(chunks_per_load=chunks_per_epoch, loads_per_epoch=1, waveform_rows=None)
    return ChunkedTrainingData(
        segments, ["H1", "L1"], SAMPLE, CHUNK, table, budget, batch_size, batches,
        rank=rank, world_size=world_size, seed=3,
    )  # fmt: skip


def decode(X):
    """(segment, ifo, start) of every window row, checking each is one contiguous slice."""
    X = X.numpy().astype(np.float64)
    np.testing.assert_array_equal(X - X[..., :1], np.broadcast_to(np.arange(X.shape[-1]), X.shape))
    ifo, rest = np.divmod(X[..., 0], 1e6)
    segment, start = np.divmod(rest, 1e5)
    return segment.astype(int), ifo.astype(int), start.astype(int)


def test_chunks_tile_every_window_start_exactly_once():
    table = ChunkTable.tile(SIZES, SAMPLE, CHUNK)
    for k, n in enumerate(SIZES):
        mine = table.segment == k
        pairs = zip(table.first[mine], table.starts[mine], strict=True)
        starts = np.concatenate([np.arange(f, f + c) for f, c in pairs])
        np.testing.assert_array_equal(starts, np.arange(n - SAMPLE + 1))
    assert table.starts.max() == CHUNK - SAMPLE + 1


def test_chunk_selection_is_proportional_to_usable_length_and_distinct():
    starts = np.array([601, 601, 100, 601, 7, 601, 350])
    rng = np.random.default_rng(0)
    trials, num = 20000, 3
    counts = np.zeros(len(starts))
    for _ in range(trials):
        picked = select_chunks(starts, num, rng)
        assert len(set(picked.tolist())) == num
        counts[picked] += 1
    expected = trials * num * starts / starts.sum()
    # binomial standard deviation; 5 sigma: a wrong weighting (e.g. equal weights) is > 20 sigma
    np.testing.assert_array_less(np.abs(counts - expected), 5 * np.sqrt(expected) + 1)


def test_ranks_read_disjoint_shares_of_one_draw_per_epoch():
    table = ChunkTable.tile([40_000, 9_000, 25_000], SAMPLE, CHUNK)
    for epoch in range(5):
        shares = [
            plan_epoch(table.starts, 4, seed=3, epoch=epoch, rank=r, world_size=3) for r in range(3)
        ]
        union = np.concatenate(shares)
        assert all(len(s) == 4 for s in shares) and len(set(union.tolist())) == 12
    first = plan_epoch(table.starts, 4, seed=3, epoch=0, rank=0, world_size=3)
    assert not np.array_equal(
        first, plan_epoch(table.starts, 4, seed=3, epoch=1, rank=0, world_size=3)
    )


def test_windows_come_from_every_segment_and_ifo(tmp_path):
    """Read from HDF5: each window is a contiguous slice of one segment of its own IFO."""
    segments = write_arange(tmp_path)
    data = chunked(segments, chunks_per_epoch=6, batch_size=64, batches=2)
    found = [decode(X) for _ in range(10) for X, _ in data]  # 10 epochs, a new draw each
    seg, ifo, start = (np.concatenate([f[i] for f in found]) for i in range(3))
    assert seg.shape == (10 * 2 * 64, 2)
    assert (ifo == np.arange(2)).all()  # IFO j's window comes from IFO j's data
    assert set(seg.ravel().tolist()) == {0, 1, 2}
    assert (start + SAMPLE <= np.array(SIZES)[seg]).all()
    assert (seg[:, 0] != seg[:, 1]).mean() > 0.3  # IFOs drawn independently
    data.close()


def test_sampling_is_uniform_over_all_window_starts():
    """Chunk draws (in proportion to their starts) + uniform chunk and start within a load:
    each segment's share of windows is its share of window starts, and starts are uniform.

    The loads are cut from in-memory arrays as ``read_chunks`` cuts them from files (checked
    above), so that 2000 epochs run in a second.
    """
    strain = [np.stack([1e5 * k + np.arange(n)]).astype(np.float32) for k, n in enumerate(SIZES)]
    table = ChunkTable.tile(SIZES, SAMPLE, CHUNK)
    epochs, per_epoch, batch = 2000, 6, 32
    seg, start = [], []
    for epoch in range(epochs):
        ids = plan_epoch(table.starts, per_epoch, seed=0, epoch=epoch, rank=0, world_size=1)
        chunks = torch.zeros((per_epoch, 1, CHUNK))
        for i, c in enumerate(ids):
            lo = table.first[c]
            n = table.starts[c] + SAMPLE - 1
            chunks[i, 0, :n] = torch.as_tensor(strain[table.segment[c]][0, lo : lo + n])
        X = ChunkSampler(chunks, torch.as_tensor(table.starts[ids]), SAMPLE)(batch)
        s, t = np.divmod(X[:, 0, 0].numpy().astype(np.int64), 100_000)
        seg.append(s)
        start.append(t)
    seg, start = np.concatenate(seg), np.concatenate(start)
    usable = np.array(SIZES) - SAMPLE + 1
    frac = np.bincount(seg, minlength=3) / len(seg)
    # sd over 2000 epochs ~0.004; weighting by chunk count or segment count would be off by
    # >= 0.05
    np.testing.assert_allclose(frac, usable / usable.sum(), atol=0.015)
    for k in range(3):  # starts uniform within each segment: five equal bins, each 1/5 +- 15 %
        hist = np.histogram(start[seg == k], bins=5, range=(0, usable[k]))[0]
        np.testing.assert_allclose(hist / hist.sum(), 0.2, rtol=0.15)


def test_rank_windows_come_only_from_its_own_chunks(tmp_path):
    segments = write_arange(tmp_path, sizes=[9000, 6000, 7000])
    seen = []
    for rank in range(2):
        data = chunked(segments, chunks_per_epoch=4, rank=rank, world_size=2, batches=1)
        ids = data.chunk_ids(0).ravel()
        ((X, _),) = list(data)
        seg, _, start = decode(X)
        # every window lies in one of this rank's chunks
        first, count, owner = data.table.first[ids], data.table.starts[ids], data.table.segment[ids]
        inside = (
            (seg[..., None] == owner)
            & (start[..., None] >= first)
            & (start[..., None] < first + count)
        )
        assert inside.any(-1).all()
        seen.append(set(ids.tolist()))
        data.close()
    assert not seen[0] & seen[1]


def test_buffer_size_does_not_depend_on_the_number_of_files():
    def plan(num_files):
        table = ChunkTable.tile([60_000] * num_files, SAMPLE, CHUNK)
        return ChunkBudget.plan(
            max_memory=0.0005, chunk_size=CHUNK, num_ifos=2, table=table, chunks_per_epoch=None,
            world_size=2, batches_per_rank=10, num_waveforms=64, waveform_size=256,
        )  # fmt: skip

    budgets = [plan(n) for n in (4, 32, 256)]
    assert len(set(budgets)) == 1
    b = budgets[0]
    loads = 2 * b.chunks_per_load * 2 * CHUNK * 4  # two loads in host memory
    assert 0 < loads <= 0.0005 * GiB


def test_prefetch_reads_next_load_in_the_background_and_holds_at_most_two(tmp_path):
    segments = write_arange(tmp_path)
    table = ChunkTable.tile(SIZES, SAMPLE, CHUNK)
    budget = ChunkBudget(chunks_per_load=2, loads_per_epoch=3, waveform_rows=None)
    data = ChunkedTrainingData(segments, ["H1", "L1"], SAMPLE, CHUNK, table, budget, 8, 6)
    it = iter(data)
    next(it)
    # while load 0 serves batches, exactly one further load (the next) is being read
    assert data._pending is not None and data._pending[0] == (0, 1)
    assert len(list(it)) == 5
    assert data._pending[0] == (1, 0)  # the next epoch's first load, read ahead
    data.close()


# ------------------------------------------------------------------ through the Dataset
def make(data_dir, **kwargs):
    defaults = dict(
        data_dir=str(data_dir), ifos=["H1", "L1"], sample_rate=SAMPLE_RATE, kernel_length=1.0,
        fduration=1.0, psd_length=4.0, highpass=20.0, batch_size=16, batches_per_epoch=4,
        valid_frac=0.34, valid_livetime=300.0, valid_stride=1.0, valid_batch_size=16,
        snr_sampler=PowerLaw(10.0, 20.0, -3.0), chunk_length=32.0,
    )  # fmt: skip
    return AframeDataset(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(max_memory=1.0), "memory"),  # auto: the tiny set fits
        (dict(max_memory=0.0016), "chunked"),  # auto: it does not (validation counts)
        (dict(max_memory=0.0016, background_loading="memory"), "memory"),  # override
        (dict(max_memory=1.0, background_loading="chunked"), "chunked"),  # override
    ],
)
def test_loading_is_chosen_by_size_unless_the_config_says(tiny_data_dir, kwargs, expected):
    ds = make(tiny_data_dir, **kwargs)
    ds.setup("fit")
    assert ds.loading == expected
    assert (ds.chunked is not None) == (expected == "chunked")
    batch = next(iter(ds.train_dataloader()))
    X, y = ds.augment(batch[0] if expected == "chunked" else ds.sampler(16))
    assert X.shape == (16, 2, int(SAMPLE_RATE)) and torch.isfinite(X).all()
    ds.teardown()


def test_max_memory_holds_the_validation_set_beside_the_chunk_buffers(tiny_data_dir):
    """max_memory bounds all the data a rank holds: the validation set (its background and
    projected waveforms, counted from the tensors themselves) plus two loads and the training
    waveforms; validation that alone exceeds it is refused naming the fields."""
    max_memory = 0.0016
    ds = make(tiny_data_dir, max_memory=max_memory, background_loading="chunked")
    ds.setup("fit")
    valid = sum(b.numel() for b in ds.valid_windows.background) + ds.valid_responses.numel()
    b = ds.chunked.budget
    loads = 2 * b.chunks_per_load * 2 * ds.chunked.chunk_size
    waveforms = 2 * b.waveform_rows * 2 * int(4.0 * SAMPLE_RATE)  # two subsets of (rows, 2, T)
    assert 4 * (valid + loads + waveforms) <= max_memory * GiB
    assert ds._held_out_bytes(ds._split_paths["valid"]) == 4 * valid
    # without the validation set the same max_memory held more chunks per load
    alone = ChunkBudget.plan(
        max_memory=max_memory, chunk_size=ds.chunked.chunk_size, num_ifos=2,
        table=ds.chunked.table, chunks_per_epoch=None, world_size=1,
        batches_per_rank=ds.batches_per_epoch, num_waveforms=64,
        waveform_size=int(4.0 * SAMPLE_RATE),
    )  # fmt: skip
    assert alone.chunks_per_load > b.chunks_per_load
    ds.teardown()
    with pytest.raises(DataConfigError, match=r"data.max_memory=0.001: the validation data "
                       r"alone hold .* lower data.valid_livetime"):  # fmt: skip
        make(tiny_data_dir, max_memory=0.001, background_loading="chunked").setup("fit")


def test_chunked_waveforms_are_a_bounded_subset_refreshed_per_load(tiny_data_dir):
    ds = make(tiny_data_dir, max_memory=0.0016, background_loading="chunked")
    ds.setup("fit")
    rows = ds.chunked.budget.waveform_rows
    assert ds.train_waveforms is None and 0 < rows < 64  # the file holds 64
    a, b = ds.chunked.waveform_subset(0, 0), ds.chunked.waveform_subset(0, 1)
    assert a.shape == (rows, 2, int(4.0 * SAMPLE_RATE)) and not torch.equal(a, b)
    X, waveforms = next(iter(ds.train_dataloader()))
    assert waveforms.shape == a.shape
    Xw, y = ds.augment(X)
    assert Xw.shape == (16, 2, int(SAMPLE_RATE)) and y.shape == (16, 1)
    ds.teardown()


def test_validation_reads_only_what_valid_livetime_needs(tiny_data_dir):
    # the tiny set holds out 2 files of 256 s; 200 s of timeslides fit in the first
    ds = make(tiny_data_dir, valid_livetime=200.0)
    ds.setup("fit")
    assert len(ds.valid_windows.background) == 1
    ds = make(tiny_data_dir, valid_livetime=400.0)
    ds.setup("fit")
    assert len(ds.valid_windows.background) == 2


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("background_loading", "disk", r"data.background_loading='disk': must be one of"),
        ("max_memory", 0.0, r"data.max_memory=0.0: must be a positive"),
        ("chunk_length", -1.0, r"data.chunk_length=-1.0: must be a positive"),
        ("chunks_per_epoch", 0, r"data.chunks_per_epoch=0: must be a positive integer"),
    ],
)
def test_bad_loading_fields_fail_at_construction(tiny_data_dir, field, value, match):
    with pytest.raises(DataConfigError, match=match):
        make(tiny_data_dir, **{field: value})


def test_chunked_settings_that_cannot_work_fail_naming_the_field(tiny_data_dir):
    with pytest.raises(DataConfigError, match=r"data.chunk_length=5.0: must be longer than one"):
        make(tiny_data_dir, chunk_length=5.0, background_loading="chunked")
    ds = make(tiny_data_dir, chunk_length=5.0, max_memory=0.0016)  # auto picks chunked
    with pytest.raises(DataConfigError, match=r"data.chunk_length=5.0"):
        ds.setup("fit")
    with pytest.raises(DataConfigError, match=r"data.max_memory=1e-06: .*raise max_memory"):
        make(tiny_data_dir, max_memory=1e-6, background_loading="chunked").setup("fit")
    table = ChunkTable.tile([1100], SAMPLE, CHUNK)  # one chunk, two ranks
    with pytest.raises(DataConfigError, match=r"data.chunk_length: .*fewer than 2 full chunks"):
        ChunkBudget.plan(
            max_memory=1.0, chunk_size=CHUNK, num_ifos=2, table=table, chunks_per_epoch=None,
            world_size=2, batches_per_rank=10, num_waveforms=64, waveform_size=256,
        )  # fmt: skip


# ------------------------------------------------------------------ s3:// streamed, per rank
@pytest.mark.s3
def test_s3_background_is_streamed_each_rank_reading_only_its_share(
    tiny_data_dir, s3_bucket, tmp_path, monkeypatch
):
    """An s3:// data set is never copied whole: each rank's chunk reads fetch byte ranges of
    about its own share (the ranks' chunks are disjoint and hold the files' samples), and the
    only files downloaded are the waveforms and the latest background file."""
    import shutil
    from pathlib import Path

    import h5py
    import s3fs

    from aframe_lib.utils import fs

    monkeypatch.setattr(fs, "HDF5_BLOCK", 2048)  # read-ahead well below a file
    local, size, ifos = tmp_path / "local", int(200 * SAMPLE_RATE), ["H1", "L1"]
    rng = np.random.default_rng(0)
    for k in range(5):
        t0 = 1_000_000_000 + 300 * k
        strain = {ifo: rng.normal(size=size) for ifo in ifos}
        path = local / background_fname(t0, 200)
        local.mkdir(exist_ok=True)
        write_background(str(path), strain, t0, SAMPLE_RATE, chunk_size=512)
    for name in ("waveforms.hdf5", "val_waveforms.hdf5"):
        shutil.copy(tiny_data_dir / name, local / name)
    store, inner = fs.filesystem(f"{s3_bucket}/data")
    for path in sorted(local.iterdir()):
        store.put_file(str(path), f"{inner}/{path.name}")

    # spies on the real client: the byte ranges it fetches and the whole files it downloads
    ranges, downloads = [], []
    fetch, get_file = s3fs.core._inner_fetch, s3fs.S3FileSystem._get_file

    async def spy_fetch(fs_, bucket, key, version_id, start, end, *args, **kwargs):
        ranges.append((key.rsplit("/", 1)[-1], end - start))
        return await fetch(fs_, bucket, key, version_id, start, end, *args, **kwargs)

    async def spy_get_file(self, rpath, lpath, *args, **kwargs):
        downloads.append(rpath.rsplit("/", 1)[-1])
        return await get_file(self, rpath, lpath, *args, **kwargs)

    monkeypatch.setattr(s3fs.core, "_inner_fetch", spy_fetch)
    monkeypatch.setattr(s3fs.S3FileSystem, "_get_file", spy_get_file)

    class FakeTrainer:  # the attributes the data module reads
        world_size, current_epoch = 2, 0

        def __init__(self, rank):
            self.global_rank = rank

    names = sorted(p.name for p in local.glob("background-*.hdf5"))
    train_bytes = 4 * len(ifos) * size * 4  # the first four files train, the latest validates
    shares = []
    for rank in range(2):
        ds = make(f"{s3_bucket}/data", cache_dir=str(tmp_path / f"cache{rank}"),
                  background_loading="chunked", chunk_length=32.0, chunks_per_epoch=6,
                  valid_frac=0.2, valid_livetime=100.0)  # fmt: skip
        ds.trainer = FakeTrainer(rank)
        ds.prepare_data()
        cached = sorted(p.name for p in Path(ds.local_dir).iterdir())
        assert cached == [names[-1], "val_waveforms.hdf5", "waveforms.hdf5"]
        ds.setup("fit")
        assert [s.path for s in ds._split_paths["train"]] == [
            f"{s3_bucket}/data/{n}" for n in names[:-1]
        ]
        data, ranges[:] = ds.chunked, []
        ids = data.chunk_ids(0)
        share = 0
        for load in range(data.budget.loads_per_epoch):
            chunks, counts, _ = data.read(0, load)
            for i, c in enumerate(ids[load]):  # the chunk holds the file's samples
                seg = data.table.segment[c]
                lo, n = int(data.table.first[c]), int(counts[i]) + data.sample_size - 1
                with h5py.File(local / names[seg]) as f:
                    expected = np.stack([f[ifo][lo : lo + n] for ifo in ifos])
                np.testing.assert_array_equal(chunks[i, :, :n].numpy(), expected)
                share += len(ifos) * n * 4
        fetched = sum(b for name, b in ranges)
        assert {name for name, _ in ranges} <= set(names[:-1])
        # about its own share (HDF5 chunks and read-ahead at the edges), far below the data set
        assert share <= fetched <= 1.5 * share
        assert fetched < 0.4 * train_bytes
        shares.append(set(ids.ravel().tolist()))
        ds.teardown()
    assert not shares[0] & shares[1] and len(shares[0]) == len(shares[1]) == 6
    assert sorted(set(downloads)) == [names[-1], "val_waveforms.hdf5", "waveforms.hdf5"]


def test_a_chunk_read_refuses_non_finite_samples_naming_file_ifo_and_gps(tmp_path):
    """Streamed (s3://) files are not scanned at setup: each chunk read checks its samples."""
    import h5py

    segments = write_arange(tmp_path)
    with h5py.File(segments[0].path, "r+") as f:
        f["L1"][700] = np.inf
    data = chunked(segments, chunks_per_epoch=1)
    table, sample = data.table, SAMPLE
    clean = np.flatnonzero((table.segment != 0) | (table.first > 700))[:1]
    read_chunks(segments, ["H1", "L1"], table, clean, sample, CHUNK)  # elsewhere: fine
    gps = segments[0].t0 + 700 / RATE
    with pytest.raises(
        BackgroundError, match=rf"{segments[0].path}: strain of 'L1' is inf .*{gps}"
    ):
        read_chunks(segments, ["H1", "L1"], table, np.array([0]), sample, CHUNK)
