"""Calls to the data services (DQSegDB, GWDataFind, the open-data service), retried.

The client libraries do the talking (``dqsegdb2``, ``gwdatafind``, ``gwosc``/gwpy) and find their
servers and credentials by their own settings: ``DEFAULT_SEGMENT_SERVER``, ``GWDATAFIND_SERVER``,
``GWOSC_SERVER_URL``, and SciTokens/X.509 through ``igwn-auth-utils`` (``BEARER_TOKEN_FILE``,
``X509_USER_PROXY``, ...). What they do not do for everyone is retry: :func:`call` retries a
transient failure (no connection, a timeout, an HTTP 5xx or 429) with exponential backoff, then
raises one :class:`ServiceError` naming the server and what was asked for. Anything else (an
HTTP 404 for an unknown flag, a 401 for missing credentials) is not retried.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from aframe_lib.utils.errors import InputError

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: attempts in all, and the first wait (s, doubled after each failure); overridable by the
#: environment (AFRAME_SERVICE_ATTEMPTS, AFRAME_SERVICE_DELAY) for slow or flaky sites
ATTEMPTS, DELAY = 5, 1.0


class ServiceError(InputError, ConnectionError):
    """A data service that cannot be used (down, failing, or refusing the credentials)."""


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: no connection, a timeout, an HTTP 5xx or 429."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError))


def call(fn: Callable[[], T], what: str, server: str) -> T:
    """``fn()``, retried on transient errors (:func:`transient`) with exponential backoff.

    Args:
        fn: the client call, without arguments.
        what: what it asks for, for the message (e.g. ``"flag H1:DMT-ANALYSIS_READY:1"``).
        server: the server it asks (URL), for the message.

    Raises:
        ServiceError: after the last attempt, or at once for an HTTP error that is not
            transient, naming ``server`` and ``what``.
    """
    import requests

    attempts = int(os.environ.get("AFRAME_SERVICE_ATTEMPTS", ATTEMPTS))
    delay = float(os.environ.get("AFRAME_SERVICE_DELAY", DELAY))
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                if isinstance(exc, requests.HTTPError):
                    raise ServiceError(
                        f"{server}: asking for {what} failed: {exc}; check the name (and "
                        "version), and for 401/403 your credentials (igwn-auth-utils: "
                        "BEARER_TOKEN_FILE or X509_USER_PROXY)"
                    ) from exc
                raise
            if i == attempts - 1:
                raise ServiceError(
                    f"{server}: no answer for {what} after {attempts} attempts over "
                    f"{delay * (2 ** (attempts - 1) - 1):g} s ({type(exc).__name__}: "
                    f"{_short(exc)}); check the server address and that it is up, then rerun"
                ) from exc
            wait = delay * 2**i
            logger.warning("%s: %s (%s); retrying in %g s", server, what, _short(exc), wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def dqsegdb_server(host: str | None = None) -> str:
    """The DQSegDB server a query goes to: ``host``, else ``DEFAULT_SEGMENT_SERVER`` (dqsegdb2's
    own default, https://segments.igwn.org)."""
    if host:
        return host
    from dqsegdb2.utils import get_default_host

    return get_default_host()


def datafind_server(host: str | None = None) -> str:
    """The GWDataFind server: ``host``, else ``GWDATAFIND_SERVER`` (gwdatafind's setting)."""
    if host:
        return host
    from gwdatafind.utils import get_default_host

    try:
        return get_default_host()
    except ValueError as exc:
        raise ServiceError(
            "no GWDataFind server: set GWDATAFIND_SERVER (e.g. datafind.igwn.org) or give --host"
        ) from exc


def open_data_server(host: str | None = None) -> str:
    """The open-data server: ``host``, else ``GWOSC_SERVER_URL`` (read when called, not when
    gwosc was imported), else https://gwosc.org."""
    return host or os.environ.get("GWOSC_SERVER_URL") or "https://gwosc.org"


__all__ = ["ServiceError", "call", "datafind_server", "dqsegdb_server", "open_data_server"]
