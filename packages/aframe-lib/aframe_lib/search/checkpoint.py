"""Saved work of a search: each span's events as it ends, so a killed search resumes.

:class:`SpanCheckpoint` is what ``Search.run(checkpoint=DIR, key=...)`` writes and reads;
:func:`model_digest` is the usual ``key``: what the saved events depend on beside the search
settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .events import Events
from .strain import Span

logger = logging.getLogger(__name__)


def model_digest(model: str | os.PathLike) -> str:
    """sha256 of an exported model's files, local or ``s3://``: ``model.pt`` and the
    ``.json``/``.onnx`` beside it (those that exist)."""
    from aframe_lib.utils import fs

    from .backends import onnx_path

    model = str(model)
    digest = hashlib.sha256()
    stem = model[: -len(".pt")] if model.endswith(".pt") else model
    for path in (model, stem + ".json", onnx_path(model)):
        filesystem, inner = fs.filesystem(path)
        if filesystem.exists(inner):
            with filesystem.open(inner, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


class SpanCheckpoint:
    """Events of searched spans in a directory, so that a killed search keeps its work.

    ``fingerprint.json`` holds what the events depend on (the model, the search settings);
    when it differs from the current one, the saved spans are deleted first. Span ``i``'s
    events are ``span-<i>.npz`` (written atomically, with the span's description, its
    livetime and the wall seconds it took) and are reused only for the same span.
    """

    def __init__(self, where: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
        from aframe_lib.utils.fs import atomic_local_path

        self.where = Path(where)
        self.where.mkdir(parents=True, exist_ok=True)
        text = json.dumps(fingerprint, sort_keys=True, default=str)
        stored = self.where / "fingerprint.json"
        if not stored.exists() or stored.read_text() != text:
            for old in self.where.glob("span-*.npz"):
                old.unlink()
            with atomic_local_path(stored) as tmp:
                tmp.write_text(text)

    @staticmethod
    def describe(span: Span) -> str:
        """What identifies a span's data: times, shifts and where each IFO's samples are
        (and those of the strain before a short gap that whitens its first windows)."""
        p = span.prior
        prior = None if p is None else (p.t0, p.size, p.channels)
        return repr((span.t0, span.size, span.sample_rate, span.shifts, span.channels, prior))

    def _path(self, i: int) -> Path:
        return self.where / f"span-{i:06d}.npz"

    def load(self, i: int, span: Span) -> tuple[Events, float, float] | None:
        """Span ``i``'s saved ``(events, livetime, wall seconds)``, if saved for this span."""
        path = self._path(i)
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                if str(z["span"]) != self.describe(span):
                    return None
                shift = z["shift"] if bool(z["has_shift"]) else None
                events = Events(z["time"], z["stat"], z["var"], shift)
                return events, float(z["livetime"]), float(z["wall"])
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("%s: unreadable (%s): searching the span again", path, exc)
            return None

    def save(self, i: int, span: Span, events: Events, livetime: float, wall: float) -> None:
        from aframe_lib.utils.fs import atomic_local_path

        shift = events.shift if events.shift is not None else np.zeros((len(events), 0))
        with atomic_local_path(self._path(i)) as tmp, open(tmp, "wb") as f:
            np.savez(
                f, time=events.time, stat=events.stat, var=events.var, shift=shift,
                has_shift=events.shift is not None, livetime=livetime, wall=wall,
                span=self.describe(span),
            )  # fmt: skip
