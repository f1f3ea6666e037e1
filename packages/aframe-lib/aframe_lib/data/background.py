"""Background strain files: ``background-{t0}-{duration}.hdf5``, local or ``s3://``.

The contract: a data directory holds one file per contiguous segment of strain. Each file holds one
1-D float32 dataset per interferometer, named by its code (``H1``, ``L1``, ``V1``), all of the same
length, with the attributes that gwpy's ``TimeSeriesDict.write(format="hdf5")`` writes:

- ``x0``: GPS start time (s); ``dx``: sample spacing (s), i.e. ``1 / sample_rate``;
- ``xunit = "s"`` (gwpy reads only datasets whose ``xunit`` is a time), ``unit = ""`` (strain);
- ``name`` and ``channel`` (the IFO code).

So files fetched with gwpy and synthetic files share one reader, and gwpy reads our files back as
``TimeSeries``. ``t0`` and ``duration`` come from the data (the file name must agree to within a
second). Files are validated when listed; every bad input raises :class:`BackgroundError` naming the
file, the field, the value found, the value expected and the fix. Writers are atomic, so a killed
writer never leaves a file that :func:`list_segments` counts.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from aframe_lib.utils import fs as fsutil
from aframe_lib.utils.errors import DataError
from aframe_lib.utils.fs import (
    atomic_local_path,
    explain_storage_errors,
    filesystem,
    is_remote,
    retry,
)

_NAME = re.compile(r"^background-(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\.hdf5$")
_IFO_CODE = re.compile(r"^[A-Z][0-9]$")  # H1, L1, V1, K1, G1, ...: what a detector dataset is named


class BackgroundError(DataError, ValueError):
    """A background file or directory that breaks the contract (the message says how to fix it)."""


@dataclass(frozen=True)
class BackgroundSegment:
    """One validated background file.

    Args:
        path: local path or ``s3://`` URL of the file.
        t0: GPS start time (s).
        duration: length (s); every IFO holds ``size`` samples.
        sample_rate: samples per second (Hz).
        ifos: the IFOs asked for (all present in the file), in the order rows are read.
    """

    path: str
    t0: float
    duration: float
    sample_rate: float
    ifos: tuple[str, ...]

    @property
    def size(self) -> int:
        """Samples per IFO."""
        return round(self.duration * self.sample_rate)


def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def background_fname(t0: float, duration: float) -> str:
    """``background-{t0}-{duration}.hdf5`` (GPS start and length in s; integers without ``.0``)."""
    return f"background-{_num(t0)}-{_num(duration)}.hdf5"


def dataset_attrs(ifo: str, t0: float, sample_rate: float) -> dict[str, Any]:
    """An IFO dataset's attributes in the background layout: those gwpy's
    ``TimeSeriesDict.write(format="hdf5")`` writes (``x0``, ``dx``, units, name)."""
    return {"x0": float(t0), "dx": 1.0 / sample_rate, "xunit": "s", "unit": "",
            "name": ifo, "channel": ifo}  # fmt: skip


def write_background(
    path: str,
    strain: Mapping[str, np.ndarray],
    t0: float,
    sample_rate: float,
    chunk_size: int = 131072,
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Write one segment atomically (temporary file, then rename or a single upload).

    Args:
        path: target file, local or ``s3://``; name it with :func:`background_fname`.
        strain: IFO code -> 1-D array of shape ``(size,)``, the same size for every IFO; stored
            as float32.
        t0: GPS time (s) of the first sample.
        sample_rate: samples per second (Hz).
        chunk_size: HDF5 chunk length in samples (``min(size, chunk_size)`` is used).
        provenance: where the strain came from (:mod:`aframe_lib.data.provenance`), stored in
            the file's attributes; ``None``: no record.
    """
    arrays = {ifo: np.asarray(x, dtype=np.float32) for ifo, x in strain.items()}
    shapes = {x.shape for x in arrays.values()}
    if len(shapes) != 1 or len(shape := shapes.pop()) != 1 or not shape[0]:
        shapes = {ifo: x.shape for ifo, x in arrays.items()}
        raise BackgroundError(
            f"{path}: strain must be equally long, non-empty 1-D arrays: {shapes}"
        )
    for ifo, x in arrays.items():
        _check_rows(path, [ifo], x[None], t0, sample_rate, 0)
    with atomic_local_path(path) as tmp, h5py.File(tmp, "w") as f:
        for ifo, x in arrays.items():
            ds = f.create_dataset(ifo, data=x, chunks=(min(shape[0], chunk_size),))
            ds.attrs.update(dataset_attrs(ifo, t0, sample_rate))
        if provenance is not None:
            from .provenance import to_attrs

            to_attrs(f.attrs, provenance)


@contextlib.contextmanager
def _open(path: str, fs=None) -> Iterator[h5py.File]:
    """Open ``path`` (local or remote) with h5py, turning unreadable files into BackgroundError."""
    with contextlib.ExitStack() as stack:
        try:
            if is_remote(path):  # h5py reads through a file object; small blocks: see HDF5_BLOCK
                fs = fs or filesystem(path)[0]
                # a storage failure (endpoint, credentials) is said as such, not as corruption
                with explain_storage_errors(path, "data.data_dir"):
                    src = stack.enter_context(
                        fs.open(path.split("://", 1)[1], "rb", block_size=fsutil.HDF5_BLOCK)
                    )
            else:
                src = filesystem(path)[1]
        except FileNotFoundError as exc:
            raise BackgroundError(f"{path}: file not found ({exc})") from exc
        try:
            f = stack.enter_context(h5py.File(src, "r"))
        except FileNotFoundError as exc:
            raise BackgroundError(f"{path}: file not found ({exc})") from exc
        except OSError as exc:
            raise BackgroundError(
                f"{path}: cannot be read as HDF5 ({exc}); the file is corrupt or truncated "
                "(e.g. an interrupted copy): delete it and write or download it again"
            ) from exc
        yield f


def _no_data(data_dir: str, exists: bool, holds: list[str]) -> BackgroundError:
    what = "holds no background-{t0}-{duration}.hdf5 files" if exists else "does not exist"
    return BackgroundError(
        f"{data_dir}: the data directory (data.data_dir) {what}"
        + (f" (it holds {sorted(holds)[:10]})" if exists else "")
        + "; create the data there (e.g. with aframe-data synthetic) or fix data.data_dir"
    )


def _inspect(f: h5py.File, path: str, ifos: Sequence[str]) -> BackgroundSegment:
    """Read and cross-check the metadata of the requested IFOs in an open file."""
    have = sorted(k for k in f if isinstance(f[k], h5py.Dataset))
    t0s, rates, sizes = {}, {}, {}
    for ifo in ifos:
        if ifo not in have and not any(_IFO_CODE.match(k) for k in have):
            raise BackgroundError(
                f"{path}: does not follow the background data contract: it holds {have[:10]}, "
                "no dataset named by a detector code (H1, L1, V1, K1, ...); background files hold "
                "one 1-D dataset per IFO (write_background or gwpy TimeSeriesDict.write): "
                "remove the file from the data directory or convert it"
            )
        if ifo not in have:
            raise BackgroundError(
                f"{path}: no dataset for IFO {ifo!r} (data.ifos={list(ifos)}); the file has "
                f"{have}; drop {ifo!r} from data.ifos or use data that include it"
            )
        ds = f[ifo]
        if ds.ndim != 1:
            raise BackgroundError(f"{path}: dataset {ifo!r} has shape {ds.shape}, expected 1-D")
        missing = [a for a in ("x0", "dx") if a not in ds.attrs]
        if missing:
            raise BackgroundError(
                f"{path}: dataset {ifo!r} lacks the attribute(s) {missing} (x0: GPS start in s, "
                "dx: sample spacing in s); write files with write_background or gwpy's "
                "TimeSeriesDict.write(format='hdf5')"
            )
        rate = 1.0 / float(ds.attrs["dx"])  # rounded so that 1 / (1 / 2048) reads as 2048
        rates[ifo] = float(round(rate)) if np.isclose(rate, round(rate), rtol=1e-9) else rate
        t0s[ifo], sizes[ifo] = float(ds.attrs["x0"]), len(ds)
    for what, values, fix in (
        ("sample rates", rates, "Hz; resample them to one rate"),
        ("lengths", sizes, "samples; crop every IFO to their common span"),
        ("start times", t0s, "s (x0); crop every IFO to their common span"),
    ):
        if len(set(values.values())) > 1:
            raise BackgroundError(f"{path}: the IFOs have different {what}: {values} {fix}")
    t0, rate, size = t0s[ifos[0]], rates[ifos[0]], sizes[ifos[0]]
    seg = BackgroundSegment(path, t0, size / rate, rate, tuple(ifos))
    m = _NAME.match(Path(path).name)
    if m and (abs(float(m[1]) - seg.t0) > 1 or abs(float(m[2]) - seg.duration) > 1):
        raise BackgroundError(
            f"{path}: the name says t0={m[1]}, duration={m[2]} but the data say "
            f"t0={_num(seg.t0)} (x0), duration={_num(seg.duration)} s; rename the file to "
            f"{background_fname(seg.t0, seg.duration)}"
        )
    return seg


def list_segments(
    data_dir: str,
    ifos: Sequence[str],
    sample_rate: float | None = None,
    min_duration: float = 0.0,
    min_duration_desc: str | None = None,
) -> list[BackgroundSegment]:
    """Find, open and validate every ``background-*.hdf5`` directly inside ``data_dir``.

    Args:
        data_dir: local directory or ``s3://bucket/prefix``.
        ifos: IFO codes every file must hold; segments read rows in this order.
        sample_rate: required rate (Hz); ``None`` takes the first file's and requires the rest
            to match it.
        min_duration: shortest acceptable file (s), e.g. one training window; shorter files raise.
        min_duration_desc: what ``min_duration`` is made of, for the error message (e.g.
            ``"kernel_length + psd_length + fduration = 1.5 + 8 + 1"``).

    Returns:
        The segments, sorted by ``t0``.
    """
    if not ifos:
        raise BackgroundError(f"{data_dir}: no IFOs requested; set data.ifos, e.g. ['H1', 'L1']")
    fs, inner = filesystem(data_dir)
    with explain_storage_errors(data_dir):
        found = sorted(retry(lambda: fs.glob(f"{inner.rstrip('/')}/background-*.hdf5")))
    if not found:
        exists = fs.isdir(inner)
        raise _no_data(data_dir, exists, [Path(p).name for p in fs.ls(inner)] if exists else [])
    prefix = data_dir.split("://", 1)[0] + "://" if is_remote(data_dir) else ""
    segments = []
    rate_from = f"the config asks for data.sample_rate={_num(sample_rate or 0)}"
    for name in found:
        path = prefix + name
        with _open(path, fs) as f:
            seg = _inspect(f, path, list(ifos))
        if sample_rate is None:
            sample_rate = seg.sample_rate
            rate_from = f"{path} has {_num(sample_rate)} Hz (data.sample_rate is unset)"
        if not np.isclose(seg.sample_rate, sample_rate, rtol=1e-9, atol=0):
            raise BackgroundError(
                f"{path}: sample rate of {seg.ifos[0]!r} is {_num(seg.sample_rate)} Hz "
                f"(dx={1 / seg.sample_rate!r}), but {rate_from}; resample the data or set "
                f"data.sample_rate={_num(seg.sample_rate)}"
            )
        if seg.duration < min_duration - 0.5 / seg.sample_rate:  # float slack: half a sample
            raise BackgroundError(
                f"{path}: duration is {_num(seg.duration)} s, shorter than the minimum "
                f"{_num(min_duration)} s ({min_duration_desc or 'min_duration'}); remove the "
                "file or shorten the windows"
            )
        segments.append(seg)
    return sorted(segments, key=lambda s: s.t0)


def _check_rows(path, ifos, x: np.ndarray, t0: float, rate: float, start: int) -> None:
    """Raise naming the first non-finite sample of ``x`` (rows = ``ifos``, column 0 = ``start``)."""
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        idx = start + int(np.argmax(bad[row]))
        raise BackgroundError(
            f"{path}: strain of {ifos[row]!r} is {x[row, idx - start]} at sample {idx} "
            f"(GPS {t0 + idx / rate!r}); expected finite values: remove or repair this data"
        )


def read_segment(
    segment: BackgroundSegment,
    ifos: Sequence[str] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> np.ndarray:
    """Read samples ``[start, stop)`` of each IFO.

    Args:
        segment: a segment from :func:`list_segments`.
        ifos: rows to read, in order; ``None`` means ``segment.ifos``.
        start: first sample index.
        stop: one past the last sample index; ``None`` means ``segment.size``.

    Returns:
        float32 array of shape ``(len(ifos), stop - start)``. Raises on NaN or inf.
    """
    ifos = list(segment.ifos if ifos is None else ifos)
    stop = segment.size if stop is None else stop
    if not 0 <= start <= stop <= segment.size:
        raise BackgroundError(
            f"{segment.path}: sample range [{start}, {stop}) is outside [0, {segment.size})"
        )
    out = np.empty((len(ifos), stop - start), dtype=np.float32)
    with _open(segment.path) as f:
        _inspect(f, segment.path, ifos)
        for i, ifo in enumerate(ifos):
            out[i] = f[ifo][start:stop]
    _check_rows(segment.path, ifos, out, segment.t0, segment.sample_rate, start)
    return out


def check_finite(
    segment: BackgroundSegment, ifos: Sequence[str] | None = None, chunk: int = 2**22
) -> None:
    """Scan the whole file chunk by chunk; raise naming the IFO and GPS time of a NaN/inf.

    Args:
        segment: a segment from :func:`list_segments`.
        ifos: IFOs to scan; ``None`` means ``segment.ifos``.
        chunk: samples read at a time (bounds memory: ``4 * chunk`` bytes).
    """
    ifos = list(segment.ifos if ifos is None else ifos)
    with _open(segment.path) as f:
        _inspect(f, segment.path, ifos)
        for ifo in ifos:
            ds = f[ifo]
            for i in range(0, len(ds), chunk):
                x = np.asarray(ds[i : i + chunk])[None]
                _check_rows(segment.path, [ifo], x, segment.t0, segment.sample_rate, i)


def split_by_file(
    segments: Sequence[BackgroundSegment],
    valid_frac: float | None = None,
    min_valid_duration: float | None = None,
) -> tuple[list[BackgroundSegment], list[BackgroundSegment]]:
    """Hold out the latest files for validation.

    Args:
        segments: every segment (any order).
        valid_frac: fraction of the total duration to hold out, in (0, 1).
        min_valid_duration: duration (s) to hold out. With both, the larger request wins.

    Returns:
        ``(train, valid)``, each sorted by ``t0`` and holding at least one file. Raises when fewer
        than two files are given or the latest files cannot meet the request while leaving one.
    """
    segs = sorted(segments, key=lambda s: s.t0)
    bad_frac = valid_frac is not None and not 0 < valid_frac < 1
    if bad_frac or (valid_frac is None and min_valid_duration is None):
        raise BackgroundError(
            f"data.valid_frac={valid_frac}, min_valid_duration={min_valid_duration}: set "
            "valid_frac in (0, 1), e.g. 0.25, or min_valid_duration (s)"
        )
    if len(segs) < 2:
        where = segs[0].path if segs else "no files"
        raise BackgroundError(
            f"{where}: {len(segs)} background file(s), but training and validation each need "
            "whole files; add background files (validation takes the latest ones)"
        )
    total = sum(s.duration for s in segs)
    want = max((valid_frac or 0.0) * total, min_valid_duration or 0.0)
    n, held = 1, segs[-1].duration
    while held < want * (1 - 1e-9) and n < len(segs) - 1:
        n += 1
        held += segs[-n].duration
    if held < want * (1 - 1e-9):
        raise BackgroundError(
            f"{segs[-1].path}: validation needs {_num(want)} s (data.valid_frac={valid_frac}, "
            f"min_valid_duration={min_valid_duration}) of {_num(total)} s in {len(segs)} files, "
            f"but the latest {n} file(s) hold {_num(held)} s while leaving {segs[0].path} for "
            "training; lower the request or add background files"
        )
    return segs[:-n], segs[-n:]


def localize(data_dir: str, cache_dir: str, latest: int | None = None) -> str:
    """Copy an ``s3://`` data directory's top-level ``*.hdf5`` files into ``cache_dir``.

    Files already in ``cache_dir`` with the same size are skipped; each download is atomic and
    retried with backoff on transient errors.

    Args:
        data_dir: local directory (returned unchanged) or ``s3://bucket/prefix``.
        cache_dir: local directory to fill (created if missing).
        latest: how many background files to copy, the latest by GPS start (cached ones
            beyond them are removed, so the cache stays bounded); ``None``: all of them. The
            other ``*.hdf5`` files (waveforms, glitch bank) are always copied.

    Returns:
        The local directory to read from.
    """
    if not is_remote(data_dir):
        return data_dir
    fs, inner = filesystem(data_dir)
    try:
        with explain_storage_errors(data_dir, "data.data_dir"):
            entries = retry(lambda: fs.ls(inner, detail=True))
    except FileNotFoundError as exc:
        raise _no_data(data_dir, False, []) from exc
    names = {Path(e["name"]).name: e for e in entries if e["type"] == "file"}
    files = {n: e for n, e in names.items() if n.endswith(".hdf5")}
    backgrounds = sorted(
        (n for n in files if _NAME.match(n)), key=lambda n: float(_NAME.match(n)[1])
    )
    if not backgrounds:
        raise _no_data(data_dir, True, list(names))
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    # a cache filled from another data_dir would silently mix its segments into this one's
    stale = sorted(p.name for p in Path(cache_dir).glob("background-*.hdf5") if p.name not in files)
    if stale:
        raise BackgroundError(
            f"{cache_dir}: the cache holds background files that {data_dir} does not: "
            f"{stale[:10]}; empty the cache directory or give this data_dir its own"
        )
    if latest is not None:
        keep = set(backgrounds[len(backgrounds) - latest :] if latest > 0 else [])
        for name in set(backgrounds) - keep:
            Path(cache_dir, name).unlink(missing_ok=True)
            del files[name]
    for name, e in files.items():
        local = Path(cache_dir, name)
        if local.is_file() and local.stat().st_size == e["size"]:
            continue
        with atomic_local_path(local) as tmp, explain_storage_errors(data_dir, "data.data_dir"):
            retry(lambda e=e, tmp=tmp: fs.get_file(e["name"], str(tmp)))
    return str(cache_dir)
