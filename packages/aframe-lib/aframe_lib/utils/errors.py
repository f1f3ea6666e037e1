"""aframe's own error types and the one error boundary that every console script shares.

Every error a user can fix (a bad config value, a data file that breaks the contract, a corrupt
model file, an unreachable S3 endpoint) is an :class:`InputError`; its message names the file /
field / value, says why, and gives the fix. A console script's ``main`` is wrapped by
:func:`console_main`, which prints such an error as one block on stderr::

    aframe-train fit: error: data.batch_size=0: must be a positive integer
      (DataConfigError; exit status 2; add --debug or set AFRAME_DEBUG=1 for the traceback)

and exits with status 2 (1 for an :class:`AframeError` that is not bad input). Any other
exception is a bug and keeps its traceback. ``--debug`` (anywhere on the command line) or
``AFRAME_DEBUG=1`` prints the traceback of our own errors too; ``--debug`` also sets
``AFRAME_DEBUG=1`` so that child processes (trials, law task commands) inherit it.

This module imports nothing heavy: aframe-flow uses it on machines without torch.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

DEBUG_ENV = "AFRAME_DEBUG"
DEBUG_FLAG = "--debug"

F = TypeVar("F", bound=Callable[..., Any])


class AframeError(Exception):
    """Base of aframe's own errors: a message a user can act on, printed without a traceback."""

    exit_code = 1


class InputError(AframeError):
    """Bad input the user can fix (exit status 2)."""

    exit_code = 2


class ConfigError(InputError):
    """A config value, command-line argument or config file is invalid."""


class DataError(InputError):
    """A data file or directory breaks the data contract (see the README's "Data contract")."""


class ModelFileError(InputError):
    """A model file (``model.pt``, ``model.json``, a checkpoint) is unreadable or does not fit."""


class StorageError(InputError, ConnectionError):
    """A storage location (local or ``s3://``) cannot be reached or used.

    Also a ``ConnectionError``, which is what callers caught before it existed.
    """


def debug_enabled() -> bool:
    """Whether ``AFRAME_DEBUG`` asks for tracebacks of our own errors."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def user_error(exc: BaseException) -> BaseException | None:
    """The error to report to the user for ``exc``, or ``None`` when ``exc`` is a bug.

    That is ``exc`` itself when it is an :class:`AframeError` or a command-line parse error
    (``argparse.ArgumentError``, also jsonargparse's), else the first such error among its
    explicit causes (``raise ... from``): jsonargparse, for one, wraps a Dataset's
    ``DataConfigError`` in "Does not validate against any of the Union subtypes".
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (AframeError, argparse.ArgumentError)):
            return current
        current = current.__cause__
    return None


def exit_code(exc: BaseException) -> int:
    """2 for bad input, else the error's own code (1 by default)."""
    return getattr(exc, "exit_code", 2 if isinstance(exc, argparse.ArgumentError) else 1)


def format_error(prog: str, exc: BaseException) -> str:
    """The message block for ``exc``: ``PROG: error: MESSAGE`` with an indented footer."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    if isinstance(exc, argparse.ArgumentError):
        lines = _simplify_union(lines)
    body = "\n".join([f"{prog}: error: {lines[0]}", *[f"  {line}" for line in lines[1:]]])
    hint = "" if debug_enabled() else f"; add {DEBUG_FLAG} or set {DEBUG_ENV}=1 for the traceback"
    return f"{body}\n  ({type(exc).__name__}; exit status {exit_code(exc)}{hint})\n"


_UNION_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "- Expected a <class 'NoneType'>",
)


def _simplify_union(lines: list[str]) -> list[str]:
    """jsonargparse's "Does not validate against any of the Union subtypes" without the dumps
    of the subtypes and of the whole value: what remains is the key and each subtype's error."""
    kept = [line for line in lines if line.strip() and not line.strip().startswith(_UNION_NOISE)]
    return kept or lines


def _strip_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    rest = [a for a in argv if a != DEBUG_FLAG]
    return rest, len(rest) != len(argv)


def console_main(prog: str) -> Callable[[F], F]:
    """Decorate a console script's ``main(args=None)`` with the error boundary.

    The wrapped ``main`` takes ``--debug`` off the arguments (``sys.argv[1:]`` when ``args`` is
    None) and calls the original with the rest. Our own errors (found also as the cause of
    another library's exception) become one message block on stderr and exit status 2 (bad
    input) or 1; a ``SystemExit`` passes through; anything else is re-raised with its
    traceback (exit status 1): that is a bug.

    Args:
        prog: the command's name as the user types it, e.g. ``"aframe-train"``; a first
            argument that is a subcommand (not an option) is appended to it in messages.
    """

    def decorate(main: F) -> F:
        @functools.wraps(main)
        def wrapper(args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
            argv, debug = _strip_debug(sys.argv[1:] if args is None else args)
            if args is None:  # parsers that read sys.argv themselves must not see --debug
                sys.argv[1:] = argv
            else:
                args = argv
            if debug:
                os.environ[DEBUG_ENV] = "1"  # children (trials, subprocesses) inherit it
            name = prog
            if argv and not argv[0].startswith("-") and argv[0].isidentifier():
                name = f"{prog} {argv[0]}"
            try:
                return main(args, *rest, **kwargs)
            except Exception as exc:
                error = user_error(exc)
                if error is None:
                    raise  # a bug: its traceback is what a maintainer needs
                if debug_enabled():
                    traceback.print_exc()
                sys.stderr.write(format_error(name, error))
                sys.stderr.flush()
                raise SystemExit(exit_code(error)) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def check_yaml_files(argv: Sequence[str], options: Sequence[str] = ("--config", "-c")) -> None:
    """Parse each YAML file given to ``options`` in ``argv``, so a syntax error names the file.

    jsonargparse reports YAML errors "in <unicode string>"; this check runs first and raises a
    :class:`ConfigError` with the file, line and column. Missing files are left to the parser.
    """
    import yaml

    paths = []
    for i, token in enumerate(argv):
        name, eq, value = token.partition("=")
        if name in options:
            if eq:
                paths.append(value)
            elif i + 1 < len(argv):
                paths.append(argv[i + 1])
    for path in paths:
        file = Path(path).expanduser()
        if not file.is_file():
            continue
        try:
            yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(
                f"{path}{where}: not valid YAML: {problem}; fix the file's syntax "
                "(indentation, unclosed brackets or quotes, ':' inside unquoted values)"
            ) from exc


# botocore / s3fs error names (no import needed) -> what is wrong
_ENDPOINT_ERRORS = {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionRefusedError"}
_CREDENTIAL_ERRORS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
}


def _names(exc: BaseException) -> str:
    """Type names and messages of ``exc`` and its causes/contexts, for classification."""
    parts, seen, current = [], set(), exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [type(current).__name__, str(current)]
        current = current.__cause__ or current.__context__
    return " ".join(parts)


def classify_storage_error(exc: BaseException) -> str | None:
    """``"endpoint"``, ``"credentials"``, ``"bucket"``, ``"key"`` or ``None`` for ``exc``."""
    text = _names(exc)
    if any(n in text for n in _ENDPOINT_ERRORS) or "Could not connect to the endpoint" in text:
        return "endpoint"
    if any(n in text for n in _CREDENTIAL_ERRORS) or "Unable to locate credentials" in text:
        return "credentials"
    if "NoSuchBucket" in text or "bucket does not exist" in text:
        return "bucket"
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return "credentials"
    if isinstance(exc, FileNotFoundError) or "NoSuchKey" in text or "Not Found" in text:
        return "key"
    return None


def storage_error(path: str, field: str | None, exc: BaseException) -> StorageError | None:
    """A :class:`StorageError` naming ``path``, its config ``field`` and what is wrong, or None."""
    kind = classify_storage_error(exc)
    if kind is None or "://" not in str(path):
        return None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    bucket = str(path).split("://", 1)[1].split("/", 1)[0]
    what = f"{path}" + (f" ({field})" if field else "")
    why = {
        "endpoint": f"cannot reach the S3 endpoint {endpoint or '(AWS default)'}; check "
        "AWS_ENDPOINT_URL (host and port) and that the server is up",
        "credentials": "the S3 credentials are missing or rejected; set AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to keys valid for this bucket",
        "bucket": f"the bucket {bucket!r} does not exist at {endpoint or 'AWS'}; create it "
        "or fix the bucket name",
        "key": "no such object or prefix in the bucket; check the path (or create the data)",
    }[kind]
    return StorageError(f"{what}: {why} [{type(exc).__name__}: {str(exc)[:200]}]")


@contextlib.contextmanager
def explain_model_file(path: str | os.PathLike, what: str = "model") -> Iterator[None]:
    """Re-raise a failure to read the model file ``path`` as a :class:`ModelFileError`.

    torch says "PytorchStreamReader failed reading zip archive" and json says "Expecting value:
    line 1 column 1" without naming the file; the error raised here names it, says why and what
    to do. ``what`` is ``"model"`` (TorchScript ``model.pt``), ``"metadata"`` (``model.json``)
    or ``"checkpoint"``.
    """
    import json
    import pickle

    try:
        yield
    except AframeError:
        raise
    except FileNotFoundError as exc:
        fix = (
            "give the model.pt that aframe_lib.callbacks.ExportModel wrote"
            if what == "model"
            else "model.json must lie beside model.pt (ExportModel writes both)"
        )
        raise ModelFileError(f"{path}: no such file; {fix}") from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); the "
            "file is corrupt or truncated: export the model again or copy model.json again"
        ) from exc
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        kind, fix = {
            "model": ("a TorchScript model", "export it again (ExportModel) or copy it again"),
            "checkpoint": ("a Lightning checkpoint", "use another one (e.g. last.ckpt)"),
        }.get(what, (what, "write it again or copy it again"))
        raise ModelFileError(
            f"{path}: cannot be read as {kind} ({first}); the file is corrupt or truncated "
            f"(e.g. an interrupted copy) or of another kind: {fix}"
        ) from exc
