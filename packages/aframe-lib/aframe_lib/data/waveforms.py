"""Waveform files: the contract of ``waveforms.hdf5`` (train) and ``val_waveforms.hdf5``.

Layout of one file (local path or ``s3://`` URL)::

    waveforms/plus     (N, T) float32, chunked by rows
    waveforms/cross    (N, T) float32, chunked by rows
    parameters/<name>  (N,)   one dataset per source parameter (chirp_mass, mass_1, distance, ...)
    attrs: sample_rate (Hz), duration (s), coalescence_time (s from the start of each row to
           coalescence), num_waveforms (N)

Every row holds the two polarisations of one source, sampled at ``sample_rate``, with
``T == round(duration * sample_rate)`` and coalescence ``coalescence_time`` seconds after the
first sample. Readers get a :class:`WaveformError` naming the file and the field at fault.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aframe_lib.utils import fs
from aframe_lib.utils.errors import DataError

if TYPE_CHECKING:
    import h5py

_ATTRS = ("sample_rate", "duration", "coalescence_time", "num_waveforms")
_CHUNK_BYTES = 1 << 20  # ~1 MiB chunks: whole rows, so slicing by row reads whole chunks


class WaveformError(DataError, ValueError):
    """A waveform file or set that breaks the contract (the message names file and field)."""


@dataclass
class WaveformSet:
    """The two polarisations of N sources and the parameters they were drawn with.

    Args:
        plus:
            Plus polarisation, shape ``(N, T)``, stored as float32 (strain, dimensionless).
        cross:
            Cross polarisation, shape ``(N, T)``, same shape as ``plus``.
        parameters:
            Source parameters by name, each of shape ``(N,)`` (masses in solar masses,
            distance in Mpc, angles in radians, as drawn by the generator).
        sample_rate:
            Sample rate of each row in Hz.
        duration:
            Length of each row in seconds; ``T == round(duration * sample_rate)``.
        coalescence_time:
            Seconds from the first sample of each row to coalescence, in ``[0, duration]``.

    Raises:
        WaveformError: when shapes, values or attributes break the contract.
    """

    plus: np.ndarray
    cross: np.ndarray
    parameters: dict[str, np.ndarray] = field(default_factory=dict)
    sample_rate: float = 2048.0
    duration: float = 8.0
    coalescence_time: float = 6.0

    def __post_init__(self) -> None:
        self.plus = np.asarray(self.plus, dtype=np.float32)
        self.cross = np.asarray(self.cross, dtype=np.float32)
        self.parameters = {k: np.asarray(v) for k, v in self.parameters.items()}
        self.sample_rate = float(self.sample_rate)
        self.duration = float(self.duration)
        self.coalescence_time = float(self.coalescence_time)
        self.validate()

    def __len__(self) -> int:
        return self.plus.shape[0]

    def validate(self) -> None:
        """Check the contract; raise :class:`WaveformError` naming the field at fault."""
        if self.plus.ndim != 2 or self.plus.shape != self.cross.shape:
            raise WaveformError(
                f"waveforms/plus has shape {self.plus.shape} and waveforms/cross has shape "
                f"{self.cross.shape}: both must be (num_waveforms, num_samples) and equal"
            )
        num, size = self.plus.shape
        if num == 0:
            raise WaveformError("zero waveforms: waveforms/plus has no rows")
        if not (math.isfinite(self.sample_rate) and self.sample_rate > 0):
            raise WaveformError(f"sample_rate={self.sample_rate} must be a positive number (Hz)")
        if abs(self.duration * self.sample_rate - size) > 0.5:
            raise WaveformError(
                f"duration={self.duration} s at sample_rate={self.sample_rate} Hz means "
                f"{self.duration * self.sample_rate:g} samples, but rows have {size}"
            )
        if not 0.0 <= self.coalescence_time <= self.duration:
            raise WaveformError(
                f"coalescence_time={self.coalescence_time} s must lie in [0, duration="
                f"{self.duration}]"
            )
        for name, values in self.parameters.items():
            if values.shape != (num,):
                raise WaveformError(
                    f"parameters/{name} has shape {values.shape}, expected ({num},)"
                )
        for name, array in (("plus", self.plus), ("cross", self.cross)):
            if not np.isfinite(array).all():
                bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
                raise WaveformError(f"waveforms/{name} holds NaN or inf (first in row {bad})")


def write_waveforms(
    path: str, waveforms: WaveformSet, provenance: Mapping[str, Any] | None = None
) -> None:
    """Write ``waveforms`` to ``path`` (local or ``s3://``) atomically.

    The file is written to a local temporary file first, then renamed (local) or uploaded in
    one piece (remote), so a killed writer never leaves a partial file at ``path``.

    Args:
        path:
            Target file, e.g. ``data/waveforms.hdf5`` or ``s3://bucket/data/waveforms.hdf5``.
        waveforms:
            The set to write; validated first.
        provenance:
            Where the set came from (:mod:`aframe_lib.data.provenance`), stored in the file's
            attributes; ``None``: no record.
    """
    import h5py

    waveforms.validate()
    num, size = waveforms.plus.shape
    rows = int(max(1, min(num, _CHUNK_BYTES // (4 * size))))
    with fs.atomic_local_path(path, suffix=".hdf5") as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("waveforms")
        for name in ("plus", "cross"):
            group.create_dataset(name, data=getattr(waveforms, name), chunks=(rows, size))
        params = f.create_group("parameters")
        for name, values in waveforms.parameters.items():
            params.create_dataset(name, data=values)
        f.attrs["sample_rate"] = waveforms.sample_rate
        f.attrs["duration"] = waveforms.duration
        f.attrs["coalescence_time"] = waveforms.coalescence_time
        f.attrs["num_waveforms"] = num
        if provenance is not None:
            from .provenance import to_attrs

            to_attrs(f.attrs, provenance)


@contextlib.contextmanager
def _open(path: str) -> Iterator[h5py.File]:
    """Open a local or remote HDF5 file for reading, with clear errors when it is missing."""
    import h5py

    filesystem, inner = fs.filesystem(path)
    if not filesystem.exists(inner):
        raise WaveformError(f"waveform file {path} does not exist")
    with contextlib.ExitStack() as stack:
        source: Any = inner
        if fs.is_remote(path):
            source = stack.enter_context(filesystem.open(inner, "rb"))
        try:
            f = stack.enter_context(h5py.File(source, "r"))
        except OSError as exc:
            raise WaveformError(f"waveform file {path} is not a readable HDF5 file: {exc}") from exc
        yield f


def read_waveforms(
    path: str, start: int = 0, stop: int | None = None, sample_rate: float | None = None
) -> WaveformSet:
    """Read rows ``[start, stop)`` of a waveform file (local or ``s3://``).

    Args:
        path:
            The file to read.
        start:
            First row to read.
        stop:
            One past the last row to read; ``None`` reads to the end.
        sample_rate:
            The sample rate (Hz) the caller expects; ``None`` accepts the file's.

    Returns:
        The selected rows and their parameters.

    Raises:
        WaveformError: naming ``path`` and the field, for a missing file, a missing dataset
            or attribute, mismatched plus/cross shapes, a sample rate other than
            ``sample_rate``, NaN/inf values, a bad row range or zero waveforms.
    """
    with _open(path) as f:
        missing = [a for a in _ATTRS if a not in f.attrs]
        missing += [d for d in ("waveforms/plus", "waveforms/cross", "parameters") if d not in f]
        if missing:
            raise WaveformError(
                f"waveform file {path} lacks {', '.join(missing)}; regenerate it with "
                "aframe-data (synthetic or waveforms) or with aframe_lib.data.write_waveforms"
            )
        rate = float(f.attrs["sample_rate"])
        if sample_rate is not None and not math.isclose(rate, sample_rate):
            raise WaveformError(
                f"waveform file {path} has sample_rate={rate:g} Hz but {sample_rate:g} Hz was "
                "requested: regenerate the waveforms at that rate or change sample_rate"
            )
        plus, cross = f["waveforms/plus"], f["waveforms/cross"]
        if plus.shape != cross.shape:
            raise WaveformError(
                f"waveform file {path}: waveforms/plus has shape {plus.shape} but "
                f"waveforms/cross has shape {cross.shape}"
            )
        num = plus.shape[0]
        if int(f.attrs["num_waveforms"]) != num:
            raise WaveformError(
                f"waveform file {path}: attribute num_waveforms={int(f.attrs['num_waveforms'])} "
                f"but waveforms/plus has {num} rows"
            )
        if num == 0:
            raise WaveformError(f"waveform file {path} holds zero waveforms")
        stop = num if stop is None else stop
        if not 0 <= start < stop <= num:
            raise WaveformError(
                f"waveform file {path}: rows [{start}, {stop}) are not a non-empty range "
                f"within its {num} waveforms"
            )
        parameters = {}
        for name, dataset in f["parameters"].items():
            if dataset.shape != (num,):
                raise WaveformError(
                    f"waveform file {path}: parameters/{name} has shape {dataset.shape}, "
                    f"expected ({num},)"
                )
            parameters[name] = dataset[start:stop]
        try:
            return WaveformSet(
                plus=plus[start:stop],
                cross=cross[start:stop],
                parameters=parameters,
                sample_rate=rate,
                duration=float(f.attrs["duration"]),
                coalescence_time=float(f.attrs["coalescence_time"]),
            )
        except WaveformError as exc:
            raise WaveformError(f"waveform file {path}: {exc}") from None
