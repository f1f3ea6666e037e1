"""Provenance: where a data file came from, and whether two data sets are the same data.

One schema, written once here and read by every tool. Every background file and waveform file
carries its record as JSON in the HDF5 attribute :data:`ATTR`; ``model.json`` records the
records of the data a model trained and validated on. A record is a plain JSON-able dict:

synthetic (:func:`synthetic`)::

    {"schema": 1, "kind": "synthetic", "what": "background" | "waveforms",
     "generator": "aframe_lib.data.noise.colored_noise", "version": "0.1.0",
     "seed": 0, "stream": 0,          # the seed and the stream of it the generator drew from
     "psd": "aligo_design_psd (Ajith 2011 fit)",          # background only
     "population": {...},                                 # waveforms only (non-default fields)
     "spans": {"H1": [[t0, t1], ...], "L1": [...]},      # background only: GPS per IFO
     "noise": {...}}          # background only, non-default noise model (not in the identity)

glitches (:func:`synthetic` with ``what="glitches"``): a glitch bank (``aframe-data glitches``)
or the glitch log of synthetic noise (``glitches.hdf5``)::

    {..., "what": "glitches", "generator": "aframe_lib.data.glitches.generate_glitch_bank",
     "noise": {...},                  # the whole noise model: glitch types, SNR law, rates
     "versions": {"gengli": "0.2.0"}, # third-party generators the glitches came from
     "settings": {...},               # bank: ifos, num_glitches, sample_rate, duration
     "content": "sha256:...",         # bank: digest of its glitches (strain, SNR, type per IFO)
     "glitch_bank": {...}}            # log of noise with glitches drawn from a bank: its record

fetched (:func:`fetched`)::

    {"schema": 1, "kind": "fetched", "what": "background",
     "source": "gwosc" | "frames" | ...,                  # how the strain was obtained
     "channels": {"H1": "H1:GDS-CALIB_STRAIN", ...},      # or {} for open data
     "frametypes": {"H1": "H1_HOFT_C00", ...},            # or {}
     "flags": {"H1": ["H1:DMT-ANALYSIS_READY:1"], ...},   # data-quality flags with versions
     "vetoes": ["H1:DCH-BAD_TIMES:2", ...],               # veto flags removed, with versions
     "flag_source": "dqsegdb" | "gwosc",                  # where flags and vetoes were asked
     "flag_server": "https://segments.igwn.org",          # (these three only over a query)
     "spans": {"H1": [[t0, t1], ...], ...}}               # GPS per IFO

Two data sets are *the same data* by content, never by path (:func:`same_data`):

- real (fetched) strain: they share GPS time in one IFO (whatever the channel or source: the same
  detector at the same time is the same noise);
- synthetic strain: the same ``(generator, version, seed, stream, psd)`` and shared GPS time in
  one IFO (files of one stream at other GPS times hold other noise);
- synthetic waveforms: the same ``(generator, version, seed, stream)``;
- glitch banks: the same ``content`` digest (the glitches themselves, whatever made them).

Records hold no wall-clock values, so rewriting a file with the same arguments is byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SCHEMA = 1
#: the HDF5 attribute (on the file's root) holding a record as JSON
ATTR = "provenance"
KINDS = ("synthetic", "fetched")
_IDENTITY = ("generator", "version", "seed", "stream", "psd")

Spans = Mapping[str, Sequence[Sequence[float]]]


class ProvenanceError(ValueError):
    """A record that breaks the schema (the message names the field)."""


def _version() -> str:
    from aframe_lib import __version__

    return __version__


def _spans(spans: Spans | None) -> dict[str, list[list[float]]]:
    out = {}
    for ifo, pairs in sorted((spans or {}).items()):
        out[str(ifo)] = [[float(a), float(b)] for a, b in pairs]
        for a, b in out[str(ifo)]:
            if not b > a:
                raise ProvenanceError(f"spans.{ifo}: [{a}, {b}] is not a GPS span with end > start")
    return out


def synthetic(
    what: str,
    generator: str,
    seed: int,
    stream: int,
    psd: str | None = None,
    population: Mapping[str, Any] | None = None,
    spans: Spans | None = None,
    version: str | None = None,
    noise: Mapping[str, Any] | None = None,
    content: str | None = None,
    versions: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    glitch_bank: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of synthetic data.

    Args:
        what: ``"background"`` or ``"waveforms"``.
        generator: Dotted name of the function that drew the numbers, e.g.
            ``"aframe_lib.data.noise.colored_noise"``.
        seed: The data set's seed (``--seed``).
        stream: The stream of ``seed`` drawn from (:func:`aframe_lib.data.synthetic.stream_seed`'s
            stream numbers: 0 training background, 1/2/4 training/validation/test waveforms ...).
        psd: Identity of the PSD the noise was coloured with (background only).
        population: The non-default fields of the waveform population (waveforms only).
        spans: GPS spans per IFO, ``{"H1": [[t0, t1], ...]}`` (background only).
        version: The generator's version; ``None``: aframe-lib's.
        noise: The noise model's non-default fields (background only; ``None``/empty: stationary
            Gaussian noise). Not part of the identity: the Gaussian draws of a seed and stream
            are the same with or without PSD drift and glitches, so such data are the same data.
            Glitches: the whole noise model (the generator's settings).
        content: Digest of the data themselves (``"sha256:<hex>"``); when given it is the
            identity (glitch banks: :func:`aframe_lib.data.glitches.bank_digest`).
        versions: Versions of third-party generators, e.g. ``{"gengli": "0.2.0"}``.
        settings: Other settings of the generator (a glitch bank's IFOs, size, rate).
        glitch_bank: Glitches: the record of the bank they were drawn from.

    Returns:
        The record (JSON-able dict).
    """
    record: dict[str, Any] = {
        "schema": SCHEMA, "kind": "synthetic", "what": str(what), "generator": str(generator),
        "version": version or _version(), "seed": int(seed), "stream": int(stream),
    }  # fmt: skip
    if psd is not None:
        record["psd"] = str(psd)
    if population:
        record["population"] = json.loads(json.dumps(dict(population)))
    if spans:
        record["spans"] = _spans(spans)
    if noise:
        record["noise"] = json.loads(json.dumps(dict(noise)))
    for key, value in (("content", content), ("versions", versions), ("settings", settings),
                       ("glitch_bank", glitch_bank)):  # fmt: skip
        if value:
            record[key] = json.loads(json.dumps(value))
    return record


def fetched(
    spans: Spans,
    source: str,
    channels: Mapping[str, str] | None = None,
    frametypes: Mapping[str, str] | None = None,
    flags: Mapping[str, Sequence[str]] | None = None,
    vetoes: Sequence[str] | None = None,
    flag_source: str | None = None,
    flag_server: str | None = None,
) -> dict[str, Any]:
    """The record of real strain.

    Args:
        spans: GPS spans per IFO, ``{"H1": [[t0, t1], ...]}``.
        source: How it was obtained, e.g. ``"gwosc"`` (open data) or ``"frames"`` (gwdatafind).
        channels: Channel per IFO (``{}`` for open data).
        frametypes: Frame type per IFO, when read from frames.
        flags: Data-quality flags per IFO, each with its version (``"H1:DMT-ANALYSIS_READY:1"``).
        vetoes: Veto flags whose active time was removed, each with its version.
        flag_source: Where the flags and vetoes were asked (``"dqsegdb"`` or ``"gwosc"``, the
            open-data timeline); ``None``: no segments query (then ``vetoes`` and
            ``flag_server`` are not recorded either).
        flag_server: The server asked (URL).

    Returns:
        The record (JSON-able dict).
    """
    record = {
        "schema": SCHEMA, "kind": "fetched", "what": "background", "source": str(source),
        "channels": dict(sorted((channels or {}).items())),
        "frametypes": dict(sorted((frametypes or {}).items())),
        "flags": {k: list(v) for k, v in sorted((flags or {}).items())},
    }  # fmt: skip
    if flag_source is not None:
        record.update(vetoes=list(vetoes or []), flag_source=str(flag_source),
                      flag_server=None if flag_server is None else str(flag_server))  # fmt: skip
    return {**record, "spans": _spans(spans)}


def check(record: Any) -> dict[str, Any]:
    """``record`` if it follows the schema.

    Raises:
        ProvenanceError: naming the field that is missing or wrong.
    """
    if not isinstance(record, Mapping):
        raise ProvenanceError(f"a provenance record is a mapping, not {type(record).__name__}")
    if record.get("schema") != SCHEMA:
        raise ProvenanceError(f"schema={record.get('schema')!r}: this aframe-lib reads {SCHEMA}")
    kind = record.get("kind")
    if kind not in KINDS:
        raise ProvenanceError(f"kind={kind!r}: must be one of {KINDS}")
    need = ("generator", "version", "seed", "stream") if kind == "synthetic" else ("spans",)
    if missing := [k for k in need if k not in record]:
        raise ProvenanceError(f"a {kind} record needs {missing}")
    _spans(record.get("spans"))
    return dict(record)


def to_attrs(attrs: Any, record: Mapping[str, Any]) -> None:
    """Store ``record`` in an HDF5 attribute set (``h5py.File(...).attrs``) under :data:`ATTR`."""
    attrs[ATTR] = json.dumps(check(record), sort_keys=True)


def from_attrs(attrs: Any) -> dict[str, Any] | None:
    """The record stored by :func:`to_attrs`; ``None`` for a file written without one."""
    if ATTR not in attrs:
        return None
    value = attrs[ATTR]
    return check(json.loads(value.decode() if isinstance(value, bytes) else value))


def read(path: str) -> dict[str, Any] | None:
    """The record of an HDF5 file (local or ``s3://``); ``None`` when it has none."""
    import h5py

    from aframe_lib.utils import fs

    filesystem, inner = fs.filesystem(path)
    # small read-ahead: the attributes are in the header, not the whole (s3://) file
    with filesystem.open(inner, "rb", block_size=fs.HDF5_BLOCK) as src, h5py.File(src, "r") as f:
        return from_attrs(f.attrs)


def identity(record: Mapping[str, Any]) -> tuple:
    """What makes two records' numbers the same apart from GPS time: ``("fetched",)`` for real
    strain (only time matters), ``("content", digest)`` for a record with a ``content``
    digest (a glitch bank: the same glitches are the same data), else ``("synthetic", what,
    generator, version, seed, stream, psd)``."""
    if record["kind"] == "fetched":
        return ("fetched",)
    if record.get("content"):
        return ("content", record["content"])
    return ("synthetic", record.get("what"), *(record.get(k) for k in _IDENTITY))


def combine(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records with one identity merged into one, their spans joined (touching spans merged):
    what ``model.json`` stores for a data split of many files. Fetched records merge only when
    source, channels, frame types and flags agree."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        record = check(record)
        rest = {k: v for k, v in record.items() if k != "spans"}
        key = json.dumps(rest, sort_keys=True)
        merged = out.setdefault(key, {**rest, **({"spans": {}} if "spans" in record else {})})
        for ifo, pairs in record.get("spans", {}).items():
            merged["spans"].setdefault(ifo, []).extend(pairs)
    for merged in out.values():
        for ifo, pairs in merged.get("spans", {}).items():
            joined: list[list[float]] = []
            for a, b in sorted(pairs):
                if joined and a <= joined[-1][1]:
                    joined[-1][1] = max(joined[-1][1], b)
                else:
                    joined.append([a, b])
            merged["spans"][ifo] = joined
    return list(out.values())


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, float, float] | None:
    for ifo in sorted(set(a.get("spans", {})) & set(b.get("spans", {}))):
        for a0, a1 in a["spans"][ifo]:
            for b0, b1 in b["spans"][ifo]:
                if min(a1, b1) > max(a0, b0):
                    return ifo, max(a0, b0), min(a1, b1)
    return None


def describe(record: Mapping[str, Any]) -> str:
    """A short human-readable name of a record, e.g. ``synthetic background (colored_noise
    0.1.0, seed 0 stream 0, PSD aligo_design_psd)``."""
    if record["kind"] == "fetched":
        spans = record.get("spans", {})
        gps = ", ".join(
            f"{ifo} {min(a for a, _ in s):.0f}-{max(b for _, b in s):.0f}"
            for ifo, s in spans.items() if s
        )  # fmt: skip
        return f"fetched strain ({record.get('source')}: {gps})"
    psd = f", PSD {record['psd']}" if record.get("psd") else ""
    extra = "".join(f", {k} {v}" for k, v in sorted((record.get("versions") or {}).items()))
    if record.get("content"):
        extra += f", content {record['content'][:19]}"
    if record.get("glitch_bank"):
        extra += f", drawn from the glitch bank {describe(record['glitch_bank'])}"
    return (
        f"synthetic {record.get('what')} ({record['generator'].rsplit('.', 1)[-1]} "
        f"{record['version']}, seed {record['seed']} stream {record['stream']}{psd}{extra})"
    )


def same_data(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """Whether two records describe (in part) the same data; see the module docstring.

    Returns:
        ``None`` when they share nothing, else why they are the same data (human-readable),
        e.g. ``"both are H1 strain at GPS 1000000000-1000001024"``.
    """
    a, b = check(a), check(b)
    if a["kind"] != b["kind"] or identity(a) != identity(b):
        return None
    if identity(a)[0] == "content":
        return f"both hold the same {a.get('what')} (content {a['content']})"
    if a["kind"] == "synthetic" and "spans" not in a and "spans" not in b:
        return f"both are {describe(a)}"
    where = _overlap(a, b)
    if where is None:
        return None
    ifo, t0, t1 = where
    what = f"{describe(a)}, " if a["kind"] == "synthetic" else ""
    return f"both are {what}{ifo} strain at GPS {t0:.0f}-{t1:.0f}"


def find_same(ours: Iterable[Mapping[str, Any]], theirs: Iterable[Mapping[str, Any]]) -> str | None:
    """The first reason (:func:`same_data`) a record of ``ours`` is data of ``theirs``."""
    theirs = list(theirs)
    for a in ours:
        for b in theirs:
            if reason := same_data(a, b):
                return reason
    return None


def _from_manifest(path: str) -> dict[str, Any] | None:
    """The record of a synthetic background file written before files carried one, from the
    ``synthetic.json`` manifest beside it (its seed; stream 0, the design PSD)."""
    import h5py

    from aframe_lib.utils import fs

    from .noise import GENERATOR, PSD_MODEL
    from .synthetic import MANIFEST

    folder = path.rsplit("/", 1)[0] if "/" in path else "."
    filesystem, inner = fs.filesystem(fs.join(folder, MANIFEST))
    if not filesystem.exists(inner):
        return None
    manifest = json.loads(filesystem.cat_file(inner))
    with h5py.File(fs.filesystem(path)[1], "r") as f:
        spans = {}
        for ifo in manifest.get("ifos", []):
            if ifo in f:
                x0, dx = float(f[ifo].attrs["x0"]), float(f[ifo].attrs["dx"])
                spans[ifo] = [[x0, x0 + dx * len(f[ifo])]]
    stream = int(manifest.get("background_stream", 0))
    return synthetic("background", GENERATOR, manifest["seed"], stream, psd=PSD_MODEL, spans=spans)


def of_files(paths: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of data files, combined (:func:`combine`), and the files without one.

    A local synthetic background file written before files carried records gets one from the
    ``synthetic.json`` manifest of its directory.
    """
    from aframe_lib.utils import fs

    records, missing = [], []
    for path in sorted(set(paths)):
        record = read(path)
        if record is None and not fs.is_remote(path) and "background-" in path:
            record = _from_manifest(path)
        if record is None:
            missing.append(path)
        else:
            records.append(record)
    return combine(records), missing
