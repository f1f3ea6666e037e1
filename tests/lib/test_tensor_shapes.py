"""The jaxtyping shapes in the public tensor signatures are what the functions take and give.

Runtime checking is not switched on in aframe (it needs beartype or typeguard, and costs on
the training path); here each annotated function is called on real tensors and its arguments
and results are checked against its own annotations, with the named dimensions bound
consistently within a call (``jaxtyped`` memo).
"""

from __future__ import annotations

import inspect
import types
import typing

import pytest
import torch
from jaxtyping import jaxtyped
from ml4gw.transforms import SpectralDensity, Whiten

from aframe_lib.augmentations import ChannelMuter, ChannelSwapper
from aframe_lib.data.preprocessing import (
    PsdEstimator,
    apply_filters,
    median_last,
    welch_median,
    whitening_filters,
)
from aframe_lib.data.sampling import BackgroundSampler, ChunkSampler
from aframe_lib.search.whitening import StreamingWhitener

SR = 64.0


def matches(value, hint) -> bool:
    """``value`` fits ``hint``: a jaxtyping array type, a tuple of them, or a union."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        return len(value) == len(args) and all(map(matches, value, args))
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def checked(fn, *args, **kwargs):
    """Call ``fn``, asserting every tensor argument and the result fit ``fn``'s annotations."""
    hints = typing.get_type_hints(fn)
    bound = inspect.signature(fn).bind(*args, **kwargs)

    @jaxtyped(typechecker=None)
    def call():
        for name, value in bound.arguments.items():
            if name in hints and (value is None or isinstance(value, torch.Tensor)):
                assert matches(value, hints[name]), f"{fn.__qualname__}: argument {name}"
        out = fn(*args, **kwargs)
        assert matches(out, hints["return"]), f"{fn.__qualname__}: returned shape/dtype"
        return out

    return call()


def test_data_path_shapes():
    segments = [torch.randn(2, 2000), torch.randn(2, 1500)]
    sampler = BackgroundSampler(segments, sample_size=600)
    X = checked(sampler.forward, 5)
    assert X.shape == (5, 2, 600)
    checked(sampler.sample_starts, 5)
    chunks = ChunkSampler(torch.randn(3, 2, 700), torch.tensor([50, 100, 101]), 600)
    checked(chunks.forward, 4)

    estimator = PsdEstimator(2.0, SR, fftlength=1.0, fast=True, max_staleness=8)
    window, psd = checked(estimator.forward, X, torch.arange(5) % 9)
    assert window.shape == (5, 2, 128) and psd.dtype == torch.float64
    checked(welch_median, X, SpectralDensity(SR, 1.0, average="median", fast=True))
    checked(median_last, torch.rand(3, 4, 5))
    whitener = Whiten(1.0, SR, 8.0)
    filters = checked(whitening_filters, psd, whitener, window.shape[-1])
    kernel = checked(apply_filters, window, filters.float(), whitener)
    assert kernel.shape == (5, 2, 64)  # the kernel: fduration / 2 cropped on each side

    for augment in (ChannelSwapper(0.5), ChannelMuter(0.5)):
        checked(augment.forward, torch.randn(8, 2, 64))


def test_streaming_whitener_shapes():
    from aframe_lib.data.psd import PsdPolicy

    whitener = StreamingWhitener(
        SR, kernel_length=1.0, fduration=1.0, psd=PsdPolicy(length=4.0, cadence=1.0),
        stride=32, highpass=8.0,
    )  # fmt: skip
    X = torch.randn(2, int(12 * SR))
    windows = checked(whitener.forward, X)
    assert windows.shape[1:] == (2, 64)
    checked(whitener.psds, X, 0, 2)


def test_a_wrong_shape_is_caught_by_the_annotations():
    with pytest.raises(AssertionError, match="argument X"):
        checked(ChannelMuter(0.5).forward, torch.randn(8, 64))  # no IFO axis
