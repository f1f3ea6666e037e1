"""Parameters shared by the tasks, checked when a task is built (before anything runs).

Every bad value raises :class:`ParameterError`, naming the parameter, the value and the fix.

:class:`PathParameter` makes relative paths absolute: a value read from a law ``.cfg`` is taken
relative to the file that set it (following ``[core] inherit``/``extend`` and ``&::section::option``
references, as law does), a value from the command line or Python relative to the working
directory. So a project ``.cfg`` in one directory may inherit ``quickstart.cfg`` from another.
"""

from __future__ import annotations

import configparser
import functools
import os
import re

import law
import luigi

KNOWN_IFOS = ("H1", "L1", "V1", "K1", "G1")
_GPUS = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*$")


class ParameterError(ValueError):
    """A task parameter with a bad value (the message says how to fix it)."""


_REF = re.compile(r"^&(::(?P<section>[^:]+))?::(?P<option>.+)$")


def _read(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(allow_no_value=True, strict=False)
    parser.optionxform = str  # law keeps option names as written
    parser.read(path)
    return parser


def _includes(parser: configparser.RawConfigParser, path: str, option: str) -> list[str]:
    value = parser.get("core", option, fallback="") or ""
    names = [os.path.expanduser(os.path.expandvars(v.strip())) for v in value.split(",")]
    return [os.path.normpath(os.path.join(os.path.dirname(path), n)) for n in names if n]


@functools.lru_cache(maxsize=8)
def config_files(main: str) -> tuple[str, ...]:
    """The law config ``main`` and every file it inherits or extends, highest precedence first
    (law reads inherited files, then ``main``, then extended files, each overriding the last)."""
    if not os.path.isfile(main):
        return ()
    parser = _read(main)
    inherited = [f for i in _includes(parser, main, "inherit") for f in config_files(i)]
    extended = [f for e in _includes(parser, main, "extend") for f in config_files(e)]
    order = [*inherited, main, *extended]  # lowest first
    return tuple(reversed(order))


def config_source(section: str, option: str, main: str | None = None) -> str | None:
    """The file that set ``[section] option`` in the law config (``None``: not set in one)."""
    if main is None:
        main = law.config.Config.instance().config_file
    if not main:
        return None
    files = config_files(os.path.abspath(main))
    for _ in range(16):  # follow &::section::option references
        for path in files:
            parser = _read(path)
            if parser.has_option(section, option):
                value = (parser.get(section, option) or "").strip()
                break
        else:
            return None
        ref = _REF.match(value)
        if not ref:
            return path
        section, option = ref.group("section") or section, ref.group("option")
    return None


def absolute_path(value: str, base: str | None = None) -> str:
    """``value`` as an absolute path (``~`` expanded), relative to ``base`` (default: the working
    directory); empty values and URLs (``s3://...``) are returned unchanged."""
    value = str(value)
    if not value or "://" in value:
        return value
    value = os.path.expanduser(value)
    return os.path.normpath(os.path.join(base or os.getcwd(), value))


class PathParameter(luigi.Parameter):
    """A local path or URL, made absolute when read: relative to the ``.cfg`` file that set it,
    or to the working directory when given on the command line or in Python."""

    def _get_value_from_config(self, section, name):
        value = super()._get_value_from_config(section, name)
        if not isinstance(value, str) or not value or "://" in value:
            return value
        source = config_source(f"luigi_{section}", name) or config_source(section, name)
        return absolute_path(value, os.path.dirname(source) if source else None)

    def normalize(self, x):
        return absolute_path(x) if isinstance(x, str) else x


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
