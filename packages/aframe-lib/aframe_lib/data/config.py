"""Checks of the data section of a config, run when the Dataset's
:class:`~aframe_lib.data.settings.DatasetSettings` are built (before any data is read).

Each error names the config field as a user writes it (``data.<name>``), the value, and the fix.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from aframe_lib.utils.errors import ConfigError

if TYPE_CHECKING:
    from .settings import DatasetSettings

KNOWN_IFOS = ("H1", "L1", "V1", "K1")  # the detectors whose geometry ml4gw knows


class DataConfigError(ConfigError, ValueError):
    """A value in the data section of a config is invalid."""


def _fail(field: str, value: Any, why: str) -> None:
    raise DataConfigError(f"data.{field}={value!r}: {why}")


def check_settings(s: DatasetSettings) -> None:
    """Check the Dataset's settings (run by :class:`~aframe_lib.data.settings.DatasetSettings`
    when it is built, with ``psd_policy`` already resolved and the rest as given).

    Raises:
        DataConfigError: naming the field, its value, and what to change.
    """
    ifos = s.ifos
    if isinstance(ifos, str) or not ifos:
        _fail("ifos", ifos, "give a non-empty list of detector codes, e.g. [H1, L1]")
    unknown = [i for i in ifos if i not in KNOWN_IFOS]
    if unknown:
        _fail("ifos", ifos, f"unknown detector(s) {unknown}; known: {list(KNOWN_IFOS)}")
    if len(set(ifos)) != len(ifos):
        _fail("ifos", ifos, "each detector may appear only once")
    if len(ifos) < 2:
        _fail("ifos", ifos, "validation shifts IFOs against each other: give at least 2")

    for name in (
        "sample_rate",
        "kernel_length",
        "fduration",
        "valid_stride",
        "valid_livetime",
    ):
        value = getattr(s, name)
        if not value > 0 or not math.isfinite(value):
            _fail(name, value, "must be a positive number")
    for name in ("batch_size", "batches_per_epoch", "num_valid_views"):
        value = getattr(s, name)
        if int(value) != value or value < 1:
            _fail(name, value, "must be a positive integer")
    probs = ("waveform_prob", "swap_prob", "mute_prob", "inversion_prob", "reversal_prob")
    for name in (*probs, "glitch_prob"):
        value = getattr(s, name)
        if not 0.0 <= value <= 1.0:
            _fail(name, value, "must be a probability in [0, 1]")
    if s.glitch_prob > 0 and not s.glitch_bank:
        _fail("glitch_prob", s.glitch_prob, "needs data.glitch_bank (make one with "
              "`aframe-data glitches --path FILE`), or set it to 0")  # fmt: skip
    if not 0.0 < s.valid_frac < 1.0:
        _fail("valid_frac", s.valid_frac, "must be in (0, 1)")
    test_frac = s.test_frac
    if not 0.0 <= test_frac < 1.0 or test_frac + s.valid_frac >= 1.0:
        _fail("test_frac", test_frac, "must be in [0, 1 - data.valid_frac), to leave training data")
    if test_frac > 0 and s.test_dir is not None:
        _fail("test_frac", test_frac, "give data.test_frac or data.test_dir, not both")

    nyquist = s.sample_rate / 2
    for name in ("highpass", "lowpass"):
        value = getattr(s, name)
        if value is not None and not 0 < value < nyquist:
            _fail(name, value, f"must be in (0, {nyquist}) Hz (Nyquist), or null")
    if s.highpass and s.lowpass and s.highpass >= s.lowpass:
        _fail("lowpass", s.lowpass, f"must exceed data.highpass={s.highpass}")
    # the PSD policy (aframe_lib.data.psd), already merged with its shorthands
    shorthands = (("length", "psd_length"), ("fftlength", "fftlength"))
    names = {k: f"data.{short}" for k, short in shorthands if getattr(s, short) is not None}
    s.psd_policy.check(s.kernel_length, s.fduration, names=names)
    if s.left_pad < 0 or s.right_pad < 0:
        _fail("left_pad", (s.left_pad, s.right_pad), "pads must be >= 0")
    if s.left_pad + s.right_pad >= s.kernel_length:
        _fail(
            "left_pad",
            s.left_pad,
            f"left_pad + right_pad ({s.left_pad + s.right_pad} s) must be shorter than "
            f"kernel_length ({s.kernel_length} s) so coalescence can land in the kernel",
        )
    if s.inject_prob > 1:
        _fail(
            "waveform_prob",
            s.waveform_prob,
            f"with swap_prob={s.swap_prob} and mute_prob={s.mute_prob} more than the "
            "whole batch would need an injection; lower one of the three",
        )
    _check_loading(s)


LOADING_MODES = ("auto", "memory", "chunked")


def _check_loading(s: DatasetSettings) -> None:
    """The training-data loading fields: ``background_loading``, ``max_memory``,
    ``chunk_length``, ``chunks_per_epoch``."""
    if s.background_loading not in LOADING_MODES:
        _fail("background_loading", s.background_loading, f"must be one of {LOADING_MODES}")
    if not s.max_memory > 0 or not math.isfinite(s.max_memory):
        _fail("max_memory", s.max_memory, "must be a positive number of GiB, e.g. 4")
    if not s.chunk_length > 0 or not math.isfinite(s.chunk_length):
        _fail("chunk_length", s.chunk_length, "must be a positive number of seconds")
    if s.background_loading == "chunked":  # with "auto", checked once chunked is chosen
        check_chunk_length(s.chunk_length, s.sample_length)
    cpe = s.chunks_per_epoch
    if cpe is not None and (int(cpe) != cpe or cpe < 1):
        _fail("chunks_per_epoch", cpe, "must be a positive integer, or null (fill max_memory)")


def check_chunk_length(chunk_length: float, sample_length: float) -> None:
    """A chunk must hold more than one training window."""
    if chunk_length <= sample_length:
        _fail(
            "chunk_length",
            chunk_length,
            f"must be longer than one training window (psd_length + kernel_length + fduration "
            f"= {sample_length:g} s); chunks of many windows read faster, e.g. 256",
        )
