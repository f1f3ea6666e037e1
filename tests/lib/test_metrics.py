"""Tests of aframe_lib.metrics.TimeSlideAUROC against an independent numpy + sklearn reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from aframe_lib.metrics import TimeSlideAUROC

POOL_LENGTH, STRIDE = 8.0, 0.5  # kernel 16 windows, pooling stride 8
KERNEL, POOL_STRIDE = 16, 8


def reference_pool(scores, kernel=KERNEL, stride=POOL_STRIDE):
    """Max-pool one timeslide's scores (in window order) like MaxPool1d(ceil_mode=True)."""
    num = math.ceil(max(len(scores) - kernel, 0) / stride) + 1
    return np.array([scores[p * stride : p * stride + kernel].max() for p in range(num)])


def reference_auroc(background, shift_id, foreground, max_fpr):
    pooled = np.concatenate(
        [reference_pool(background[shift_id == t]) for t in np.unique(shift_id)]
    )
    y = np.r_[np.zeros(len(pooled)), np.ones(len(foreground))]
    preds = np.r_[pooled, foreground].astype(np.float64)
    return roc_auc_score(y, preds, max_fpr=None if max_fpr == 1 else max_fpr)


def make_scores(rng, lengths=(300, 257, 40, 9), num_foreground=200, views=None):
    """Background rows in (shift, index) order, plus foreground scores that overlap them."""
    shift_id = np.concatenate([np.full(n, t) for t, n in enumerate(lengths)])
    index = np.concatenate([np.arange(n) for n in lengths])
    background = rng.normal(size=len(index)).astype(np.float32)
    shape = (num_foreground,) if views is None else (num_foreground, views)
    foreground = rng.normal(loc=2.0, size=shape).astype(np.float32)
    return background, shift_id, index, foreground


def update(metric, background, shift_id, index, foreground=None):
    metric.update(
        torch.as_tensor(background),
        torch.as_tensor(shift_id),
        torch.as_tensor(index),
        None if foreground is None else torch.as_tensor(foreground),
    )


@pytest.mark.parametrize("length", [1, 5, 16, 17, 24, 25, 100])
def test_reference_pool_matches_maxpool_ceil_mode(length):
    x = np.random.default_rng(length).normal(size=length).astype(np.float32)
    metric = TimeSlideAUROC(pool_length=POOL_LENGTH, stride=STRIDE)
    pooled = metric.cluster(
        torch.as_tensor(x), torch.zeros(length, dtype=torch.long), torch.arange(length)
    )
    np.testing.assert_array_equal(pooled.numpy(), reference_pool(x))
    if length >= KERNEL:  # where torch's MaxPool1d is defined, it agrees
        torch_pool = torch.nn.MaxPool1d(KERNEL, POOL_STRIDE, ceil_mode=True)
        np.testing.assert_array_equal(torch_pool(torch.as_tensor(x)[None]).numpy()[0], pooled)


@pytest.mark.parametrize("max_fpr", [1e-3, 0.05, 0.3, 1.0])
def test_auroc_matches_sklearn_on_pooled_scores(max_fpr):
    rng = np.random.default_rng(1)
    background, shift_id, index, foreground = make_scores(rng, lengths=(3000, 2500, 40, 9))
    metric = TimeSlideAUROC(max_fpr=max_fpr, pool_length=POOL_LENGTH, stride=STRIDE)
    update(metric, background, shift_id, index, foreground)
    expected = reference_auroc(background, shift_id, foreground, max_fpr)
    assert metric.compute().item() == pytest.approx(expected, abs=1e-6)  # torchmetrics is float32


def test_max_fpr_one_is_plain_auroc():
    rng = np.random.default_rng(2)
    background, shift_id, index, foreground = make_scores(rng)
    metric = TimeSlideAUROC(max_fpr=1.0, pool_length=POOL_LENGTH, stride=STRIDE)
    update(metric, background, shift_id, index, foreground)
    pooled = np.concatenate([reference_pool(background[shift_id == t]) for t in range(4)])
    y = np.r_[np.zeros(len(pooled)), np.ones(len(foreground))]
    expected = roc_auc_score(y, np.r_[pooled, foreground])
    assert metric.compute().item() == pytest.approx(expected, abs=1e-6)  # torchmetrics is float32


def test_foreground_views_are_averaged():
    rng = np.random.default_rng(3)
    background, shift_id, index, foreground = make_scores(rng, views=5)
    metric = TimeSlideAUROC(max_fpr=0.2, pool_length=POOL_LENGTH, stride=STRIDE)
    update(metric, background, shift_id, index, foreground)
    expected = reference_auroc(background, shift_id, foreground.mean(axis=1), 0.2)
    assert metric.compute().item() == pytest.approx(expected, abs=1e-6)  # torchmetrics is float32


def test_pooling_clusters_a_loud_burst():
    metric = TimeSlideAUROC(pool_length=POOL_LENGTH, stride=STRIDE)
    n = 200
    shift_id, index = torch.zeros(n, dtype=torch.long), torch.arange(n)
    # a burst at the start of a timeslide lies in pool 0 only: six windows count once
    scores = torch.zeros(n)
    scores[:6] = 10.0
    pooled = metric.cluster(scores, shift_id, index)
    assert int((pooled == 10).sum()) == 1
    # elsewhere, pools overlap by half: windows 17..22 lie in pools 1 (8..23) and 2 (16..31)
    scores = torch.zeros(n)
    scores[17:23] = 10.0
    pooled = metric.cluster(scores, shift_id, index)
    assert int((pooled == 10).sum()) == 2
    assert len(pooled) == len(reference_pool(scores.numpy()))

    # in the AUROC, a burst louder than every injection costs one (pooled) false positive,
    # not one per window: compare with the same burst spread out over distant windows
    foreground = torch.full((10,), 5.0)
    clustered = TimeSlideAUROC(max_fpr=1.0, pool_length=POOL_LENGTH, stride=STRIDE)
    clustered.update(scores, shift_id, index, foreground)
    spread_scores = torch.zeros(n)
    spread_scores[torch.arange(6) * 32 + 4] = 10.0  # six separate events
    spread = TimeSlideAUROC(max_fpr=1.0, pool_length=POOL_LENGTH, stride=STRIDE)
    spread.update(spread_scores, shift_id, index, foreground)
    assert clustered.compute() > spread.compute()


def test_pools_only_windows_that_exist():
    metric = TimeSlideAUROC(pool_length=POOL_LENGTH, stride=STRIDE)
    pooled = metric.cluster(torch.tensor([1.0, 2.0]), torch.tensor([3, 3]), torch.tensor([0, 40]))
    # pools 0 (0..15) and 4 (32..47) hold a window; pools 1-3 are empty and dropped
    assert pooled.tolist() == [1.0, 2.0]


def test_padding_rows_are_ignored():
    rng = np.random.default_rng(4)
    background, shift_id, index, foreground = make_scores(rng)
    clean = TimeSlideAUROC(max_fpr=0.1, pool_length=POOL_LENGTH, stride=STRIDE)
    update(clean, background, shift_id, index, foreground)
    padded = TimeSlideAUROC(max_fpr=0.1, pool_length=POOL_LENGTH, stride=STRIDE)
    pad = np.full(7, -1)
    update(
        padded,
        np.r_[background, np.full(7, 1e6, dtype=np.float32)],
        np.r_[shift_id, pad],
        np.r_[index, pad],
        foreground,
    )
    assert torch.equal(clean.compute(), padded.compute())


def test_order_and_split_do_not_matter():
    """What a DDP gather does: the same rows, reordered and spread over several updates."""
    rng = np.random.default_rng(5)
    background, shift_id, index, foreground = make_scores(rng, views=3)
    single = TimeSlideAUROC(max_fpr=0.1, pool_length=POOL_LENGTH, stride=STRIDE)
    update(single, background, shift_id, index, foreground)

    shuffled = TimeSlideAUROC(max_fpr=0.1, pool_length=POOL_LENGTH, stride=STRIDE)
    order, fg_order = rng.permutation(len(background)), rng.permutation(len(foreground))
    cuts, fg_cuts = [0, 13, 250, 251, 600, len(order)], [0, 50, 51, 120, 120, len(fg_order)]
    for i in range(len(cuts) - 1):
        rows, fg_rows = order[cuts[i] : cuts[i + 1]], fg_order[fg_cuts[i] : fg_cuts[i + 1]]
        update(shuffled, background[rows], shift_id[rows], index[rows], foreground[fg_rows])
    assert torch.equal(single.compute(), shuffled.compute())


def test_errors_without_foreground_or_background():
    rng = np.random.default_rng(6)
    background, shift_id, index, foreground = make_scores(rng)
    metric = TimeSlideAUROC()
    update(metric, background, shift_id, index)
    with pytest.raises(ValueError, match="no foreground"):
        metric.compute()

    metric = TimeSlideAUROC()
    update(metric, background[:3], np.full(3, -1), np.full(3, -1), foreground)
    with pytest.raises(ValueError, match="no background"):
        metric.compute()

    with pytest.raises(ValueError, match="max_fpr"):
        TimeSlideAUROC(max_fpr=0.0)
    with pytest.raises(ValueError, match="shape"):
        update(TimeSlideAUROC(), background[:3], shift_id[:2], index[:3])


def _ddp_worker(rank, world_size, init_file, out_dir):
    """One gloo process: score its share of TimeslideWindows, sync the metric, save the score."""
    import torch.distributed as dist

    from aframe_lib.data.timeslides import TimeslideWindows

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        background, timeslides, foreground = _ddp_data()
        dataset = TimeslideWindows(background, timeslides, 32, 8, 16, rank, world_size)
        metric = TimeSlideAUROC(max_fpr=0.2, pool_length=2.0, stride=0.5)
        for i in range(len(dataset)):
            X, shift_id, index = dataset[i]
            metric.update(X.std(dim=(1, 2)), shift_id, index)
        if rank == 0:  # rank 1 sees no injections at all: its foreground state stays empty
            metric.update(torch.zeros(0), torch.zeros(0), torch.zeros(0), foreground)
        torch.save(metric.compute(), f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _ddp_data():
    from aframe_lib.data.timeslides import make_timeslides

    rng = np.random.default_rng(7)
    background = [rng.normal(size=(2, n)).astype(np.float32) for n in (900, 700)]
    timeslides = make_timeslides([900, 700], 2, 16.0, 200.0, 1.0, 32)
    foreground = torch.as_tensor(rng.normal(loc=1.0, scale=0.1, size=(50, 2)).astype(np.float32))
    return background, timeslides, foreground


def test_ddp_score_equals_single_process(tmp_path):
    """Two real gloo processes (uneven split, one without foreground) agree with one process."""
    from aframe_lib.data.timeslides import TimeslideWindows

    background, timeslides, foreground = _ddp_data()
    dataset = TimeslideWindows(background, timeslides, 32, 8, 16)
    single = TimeSlideAUROC(max_fpr=0.2, pool_length=2.0, stride=0.5)
    for X, shift_id, index in (dataset[i] for i in range(len(dataset))):
        single.update(X.std(dim=(1, 2)), shift_id, index)
    single.update(torch.zeros(0), torch.zeros(0), torch.zeros(0), foreground)
    assert dataset.num_windows % 2 == 1  # so rank 1 gets a padding row

    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, tmp_path / "init", tmp_path), nprocs=2, join=True
    )
    expected = single.compute()
    for rank in range(2):
        assert torch.equal(torch.load(tmp_path / f"{rank}.pt"), expected)
