"""Parameters shared by the tasks, checked when a task is built (before anything runs).

Every bad value raises :class:`ParameterError`, naming the parameter, the value and the fix.
"""

from __future__ import annotations

import re

import law
import luigi

from aframe_lib.utils.errors import ConfigError

KNOWN_IFOS = ("H1", "L1", "V1", "K1", "G1")
_GPUS = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*$")


class ParameterError(ConfigError, ValueError):
    """A task parameter with a bad value (the message says how to fix it)."""


class IfosParameter(law.CSVParameter):
    """Comma-separated interferometer codes, e.g. ``H1,L1``; unknown codes are refused."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", ("H1", "L1"))
        super().__init__(*args, **kwargs)

    def normalize(self, value):
        if isinstance(value, str):  # given in Python as "H1,L1" rather than parsed
            value = tuple(v for v in value.split(",") if v.strip())
        value = super().normalize(value)
        ifos = tuple(str(v).strip() for v in value)
        unknown = [i for i in ifos if i not in KNOWN_IFOS]
        if unknown or not ifos or len(set(ifos)) != len(ifos):
            raise ParameterError(
                f"--ifos={','.join(ifos)}: unknown or repeated interferometer(s) {unknown or ifos}"
                f"; use distinct codes out of {', '.join(KNOWN_IFOS)}, e.g. --ifos H1,L1"
            )
        return ifos


class GpusParameter(luigi.Parameter):
    """GPU indices as ``0,1`` (empty: CPU only). Normalised to a tuple of ints."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", ())
        super().__init__(*args, **kwargs)

    def parse(self, x):
        return self.normalize(x)

    def normalize(self, value):
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        text = str(value).strip()
        if not text:
            return ()
        if not _GPUS.match(text):
            raise ParameterError(
                f"--gpus={text!r}: expected comma-separated GPU indices such as 0 or 0,1 "
                "(or nothing for CPU)"
            )
        gpus = tuple(int(g) for g in text.split(","))
        if len(set(gpus)) != len(gpus):
            raise ParameterError(f"--gpus={text!r}: a GPU index is repeated; list each once")
        return gpus

    def serialize(self, x):
        return ",".join(str(g) for g in x)
