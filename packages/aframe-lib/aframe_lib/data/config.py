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
        ``window_size`` (kernel + whitening padding), ``psd_size``, ``sample_size``,
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
        "psd_length",
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

    nyquist = v["sample_rate"] / 2
    for name in ("highpass", "lowpass"):
        if v[name] is not None and not 0 < v[name] < nyquist:
            _fail(name, v[name], f"must be in (0, {nyquist}) Hz (Nyquist), or null")
    if v["highpass"] and v["lowpass"] and v["highpass"] >= v["lowpass"]:
        _fail("lowpass", v["lowpass"], f"must exceed data.highpass={v['highpass']}")
    fftlength = v["fftlength"] or v["kernel_length"] + v["fduration"]
    if fftlength > v["psd_length"]:
        _fail(
            "psd_length",
            v["psd_length"],
            f"must be at least the FFT length ({fftlength} s) so the PSD can be estimated; "
            "raise psd_length or lower fftlength",
        )
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
    v["sample_size"] = v["window_size"] + v["psd_size"]
    v["sample_length"] = v["sample_size"] / sr
    v["inject_prob"] = inject_prob
    return v
