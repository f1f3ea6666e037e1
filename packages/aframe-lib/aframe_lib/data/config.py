"""Checks of the data section of a config, run when the Dataset is built (before any data is read).

Each error names the config field as a user writes it (``data.<name>``), the value, and the fix.
"""

from __future__ import annotations

import math
from typing import Any

from aframe_lib.utils.errors import ConfigError

KNOWN_IFOS = ("H1", "L1", "V1", "K1")  # the detectors whose geometry ml4gw knows


class DataConfigError(ConfigError, ValueError):
    """A value in the data section of a config is invalid."""


def _fail(field: str, value: Any, why: str) -> None:
    raise DataConfigError(f"data.{field}={value!r}: {why}")


def validate_data_args(values: dict[str, Any]) -> dict[str, Any]:
    """Check the Dataset's arguments and add the derived sizes.

    Args:
        values: The constructor arguments of :class:`~aframe_lib.data.AframeDataset`.

    Returns:
        The same values (``ifos`` as a list) plus ``num_ifos``, ``kernel_size``,
        ``window_size`` (kernel + whitening padding), ``psd_size``, ``psd_staleness`` (most
        samples between a PSD segment and its window), ``sample_size``,
        ``sample_length`` (s) and ``inject_prob`` (the injection probability that leaves
        ``waveform_prob`` of each batch labelled signal after swapping and muting).

    Raises:
        DataConfigError: naming the field, its value, and what to change.
    """
    v = dict(values)
    ifos = v["ifos"]
    if isinstance(ifos, str) or not ifos:
        _fail("ifos", ifos, "give a non-empty list of detector codes, e.g. [H1, L1]")
    unknown = [i for i in ifos if i not in KNOWN_IFOS]
    if unknown:
        _fail("ifos", ifos, f"unknown detector(s) {unknown}; known: {list(KNOWN_IFOS)}")
    if len(set(ifos)) != len(ifos):
        _fail("ifos", ifos, "each detector may appear only once")
    if len(ifos) < 2:
        _fail("ifos", ifos, "validation shifts IFOs against each other: give at least 2")
    v["ifos"] = list(ifos)

    for name in (
        "sample_rate",
        "kernel_length",
        "fduration",
        "valid_stride",
        "valid_livetime",
    ):
        if not v[name] > 0 or not math.isfinite(v[name]):
            _fail(name, v[name], "must be a positive number")
    for name in ("batch_size", "batches_per_epoch", "num_valid_views"):
        if int(v[name]) != v[name] or v[name] < 1:
            _fail(name, v[name], "must be a positive integer")
    for name in ("waveform_prob", "swap_prob", "mute_prob", "inversion_prob", "reversal_prob"):
        if not 0.0 <= v[name] <= 1.0:
            _fail(name, v[name], "must be a probability in [0, 1]")
    if not 0.0 < v["valid_frac"] < 1.0:
        _fail("valid_frac", v["valid_frac"], "must be in (0, 1)")
    test_frac = v.get("test_frac", 0.0)
    if not 0.0 <= test_frac < 1.0 or test_frac + v["valid_frac"] >= 1.0:
        _fail("test_frac", test_frac, "must be in [0, 1 - data.valid_frac), to leave training data")
    if test_frac > 0 and v.get("test_dir") is not None:
        _fail("test_frac", test_frac, "give data.test_frac or data.test_dir, not both")

    nyquist = v["sample_rate"] / 2
    for name in ("highpass", "lowpass"):
        if v[name] is not None and not 0 < v[name] < nyquist:
            _fail(name, v[name], f"must be in (0, {nyquist}) Hz (Nyquist), or null")
    if v["highpass"] and v["lowpass"] and v["highpass"] >= v["lowpass"]:
        _fail("lowpass", v["lowpass"], f"must exceed data.highpass={v['highpass']}")
    policy = v.get("psd_policy")
    if policy is not None:  # the PSD policy (aframe_lib.data.psd), already merged
        names = {k: f"data.{s}" for k, s in (("length", "psd_length"), ("fftlength", "fftlength"))
                 if v.get(s) is not None}  # fmt: skip
        policy.check(v["kernel_length"], v["fduration"], names=names)
        v["psd_length"] = policy.length
        v["fftlength"] = policy.resolve(v["kernel_length"], v["fduration"]).fftlength
    if v["left_pad"] < 0 or v["right_pad"] < 0:
        _fail("left_pad", (v["left_pad"], v["right_pad"]), "pads must be >= 0")
    if v["left_pad"] + v["right_pad"] >= v["kernel_length"]:
        _fail(
            "left_pad",
            v["left_pad"],
            f"left_pad + right_pad ({v['left_pad'] + v['right_pad']} s) must be shorter than "
            f"kernel_length ({v['kernel_length']} s) so coalescence can land in the kernel",
        )

    keep = (1 - v["swap_prob"]) * (1 - v["mute_prob"])
    inject_prob = v["waveform_prob"] / keep if keep > 0 else math.inf
    if inject_prob > 1:
        _fail(
            "waveform_prob",
            v["waveform_prob"],
            f"with swap_prob={v['swap_prob']} and mute_prob={v['mute_prob']} more than the "
            "whole batch would need an injection; lower one of the three",
        )

    sr = v["sample_rate"]
    v["num_ifos"] = len(ifos)
    v["kernel_size"] = int(round(v["kernel_length"] * sr))
    v["window_size"] = int(round((v["kernel_length"] + v["fduration"]) * sr))
    v["psd_size"] = int(round(v["psd_length"] * sr))
    v["psd_staleness"] = policy.max_staleness(sr) if policy is not None else 0
    v["sample_size"] = v["window_size"] + v["psd_size"] + v["psd_staleness"]
    v["sample_length"] = v["sample_size"] / sr
    v["inject_prob"] = inject_prob
    _check_loading(v)
    return v


LOADING_MODES = ("auto", "memory", "chunked")


def _check_loading(v: dict[str, Any]) -> None:
    """The training-data loading fields: ``background_loading``, ``max_memory``,
    ``chunk_length``, ``chunks_per_epoch``."""
    if v["background_loading"] not in LOADING_MODES:
        _fail("background_loading", v["background_loading"], f"must be one of {LOADING_MODES}")
    if not v["max_memory"] > 0 or not math.isfinite(v["max_memory"]):
        _fail("max_memory", v["max_memory"], "must be a positive number of GiB, e.g. 4")
    if not v["chunk_length"] > 0 or not math.isfinite(v["chunk_length"]):
        _fail("chunk_length", v["chunk_length"], "must be a positive number of seconds")
    if v["background_loading"] == "chunked":  # with "auto", checked once chunked is chosen
        check_chunk_length(v["chunk_length"], v["sample_length"])
    cpe = v["chunks_per_epoch"]
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
