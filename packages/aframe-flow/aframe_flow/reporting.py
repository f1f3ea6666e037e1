"""How ``law run`` reports a failure from bad input: the one message, once, without tracebacks.

luigi logs a task that raised (and a task that could not even be built from its parameters) with
the exception's whole traceback, through the ``luigi-interface`` logger. For our own errors that
traceback says nothing the message does not: a :class:`~aframe_flow.parameters.ParameterError`
names the parameter, the value and the fix, and a :class:`~aframe_flow.sandbox.CommandError` is a
command (``aframe-train fit``, ``aframe-data ...``) that failed after printing its own error
block, which the task echoed live. :func:`install` adds a filter to that logger which drops the
traceback of these errors: a ``ParameterError``'s record becomes its message (also one raised in a
task's ``complete()`` or ``requires()``, which luigi logs with the traceback as text); a task that
failed on a ``CommandError`` keeps luigi's "failed Task(...)" line plus one line naming the
command and its exit status (its message is already on the screen above). Every other exception
keeps its traceback (a bug), and ``AFRAME_DEBUG=1`` keeps them all. ``law run`` still exits
non-zero (luigi's ``[retcode]`` settings in the shipped ``law.cfg``).
"""

from __future__ import annotations

import logging
import os

LOGGER = "luigi-interface"


def _debug() -> bool:
    return os.environ.get("AFRAME_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def user_error(exc: BaseException | None) -> BaseException | None:
    """``exc`` or the first of its causes that is bad input we have described (else None)."""
    from .parameters import ParameterError
    from .sandbox import CommandError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ParameterError, CommandError)):
            return exc
        exc = exc.__cause__
    return None


class UserErrorFilter(logging.Filter):
    """Drops the traceback of a record whose exception is one of our described errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _debug():
            return True
        if not record.exc_info:
            return _drop_formatted_traceback(record)
        error = user_error(record.exc_info[1])
        if error is None:
            return True
        from .sandbox import CommandError

        if isinstance(error, CommandError):
            first = str(error).splitlines()[0].rstrip(":")
            text = f"{record.getMessage()}\n  {first} (its error is above)"
        else:
            text = str(error)
        record.msg, record.args = text, ()
        record.exc_info = record.exc_text = None
        return True


# luigi's worker logs an error in a task's complete() or requires() as a headline plus the
# traceback formatted into the message (no exc_info): its last lines are "module.Type: message"
_HEADLINES = ("due to error in complete() method:\n", "due to error in deps() method:\n")
_OURS = "aframe_flow.parameters.ParameterError: "


def _drop_formatted_traceback(record: logging.LogRecord) -> bool:
    """A complete()/requires() ParameterError's record: the headline and the message only."""
    text = record.getMessage()
    headline = next((h for h in _HEADLINES if h in text), None)
    if headline is None or _OURS not in text:
        return True
    head = text.split(headline, 1)[0] + headline.rstrip(":\n")
    message = text.rsplit(_OURS, 1)[1].strip()
    record.msg, record.args = f"{head}:\n  {message}", ()
    return True


def install() -> None:
    """Add :class:`UserErrorFilter` to luigi's ``luigi-interface`` logger (once)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, UserErrorFilter) for f in logger.filters):
        logger.addFilter(UserErrorFilter())
