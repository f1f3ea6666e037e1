"""Shared by the glitch tests: a glitch bank's content digest, computed independently of
``aframe_lib.data.glitches`` (numpy and hashlib on the file's arrays)."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np


def bank_digest(path) -> str:
    """``"sha256:<hex>"`` of the bank's sample rate and, per IFO, its strain, SNRs and types."""
    with h5py.File(path) as f:
        h = hashlib.sha256(f"sample_rate={float(f.attrs['sample_rate'])!r}".encode())
        for ifo in ("H1", "L1"):
            h.update(ifo.encode())
            h.update(np.asarray(f[ifo]["strain"], "<f4").tobytes())
            h.update(np.asarray(f[ifo]["snr"], "<f8").tobytes())
            h.update(b"|".join(bytes(t) for t in f[ifo]["type"][:]))
    return "sha256:" + h.hexdigest()
