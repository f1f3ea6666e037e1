"""Candidates to GraceDB, exactly once: the event file, the outbox, the uploader.

**Event file**: JSON, as upstream aframe uploads and GraceDB's ``aframe`` pipeline parses:
``{"gpstime", "detection_statistic", "far", "ifos"}`` (plus ``var``, the timing uncertainty)
with pipeline ``aframe``, search ``AllSky``. JSON rather than a LIGO_LW coinc table because
the model produces no per-IFO SNRs, templates or masses, which a coinc table would have to
invent; the keys are sorted and hold no wall-clock value, so the same candidate is the same
bytes, and its ``content_id`` (the UUID of the first 128 bits of its sha256 that
``ligo-gracedb`` sends with every upload and GraceDB keeps) names it across restarts.
``aframe.p_astro.json`` (``{"BBH": p, "Terrestrial": 1 - p}``) follows as a log entry with the
``p_astro`` tag.

**Outbox**: each candidate is written (atomically) to ``OUTBOX/{gps}-{content_id}.json``
*before* any upload. :class:`Uploader` (a thread beside the search) takes them oldest first:

1. look the event up by its ``content_id`` (``GraceDb.event(content_id)``; a 404 means not
   there), else create it (``GraceDb.create_event``); the GraceDB id is written back into the
   outbox file;
2. unless the event's logs already hold ``aframe.p_astro.json``, upload it
   (``GraceDb.write_log(..., tag_name="p_astro")``);
3. move the file to ``OUTBOX/sent/`` (acknowledged).

A failure at any step (the server down, an HTTP error after the client's own retries) is
retried with exponential backoff (``backoff`` doubling to ``max_backoff`` seconds), forever: a
candidate leaves the outbox only when GraceDB has it. A service killed at any point and
restarted on the same outbox re-runs the steps for what is left there, and the look-ups make
every event and file arrive exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

GROUP, PIPELINE, SEARCH = "CBC", "aframe", "AllSky"
EVENT_FILE, PASTRO_FILE = "event.json", "aframe.p_astro.json"


@dataclass(frozen=True)
class Candidate:
    """An event to upload."""

    gpstime: float
    detection_statistic: float
    far: float  # Hz, as GraceDB's ``far``
    ifos: tuple[str, ...]
    var: float
    p_astro: float | None = None

    def event_file(self) -> bytes:
        body = {
            "gpstime": round(self.gpstime, 6),
            "detection_statistic": float(self.detection_statistic),
            "far": float(self.far),
            "ifos": ",".join(self.ifos),
            "var": float(self.var),
        }
        return json.dumps(body, sort_keys=True).encode()

    def pastro_file(self) -> bytes | None:
        if self.p_astro is None:
            return None
        p = float(self.p_astro)
        return json.dumps({"BBH": p, "Terrestrial": 1.0 - p}, sort_keys=True).encode()

    @property
    def content_id(self) -> str:
        from ligo.gracedb.utils import content_id

        return str(content_id(self.event_file()))


class Outbox:
    """Candidates on disk until GraceDB acknowledges them (see the module docstring)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.sent = self.directory / "sent"
        self.sent.mkdir(parents=True, exist_ok=True)

    def put(self, candidate: Candidate) -> Path:
        record = {
            "event": candidate.event_file().decode(),
            "p_astro": (candidate.pastro_file() or b"").decode() or None,
            "content_id": candidate.content_id,
            "graceid": None,
        }
        name = f"{candidate.gpstime:.3f}-{candidate.content_id}.json"
        path = self.directory / name
        if not path.exists() and not (self.sent / name).exists():  # a replayed candidate
            self._write(path, record)
        return path

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.json"))

    def acknowledged(self) -> list[Path]:
        return sorted(self.sent.glob("*.json"))

    @staticmethod
    def load(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text())

    @staticmethod
    def _write(path: Path, record: dict[str, Any]) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def update(self, path: Path, record: dict[str, Any]) -> None:
        self._write(path, record)

    def done(self, path: Path) -> None:
        os.replace(path, self.sent / path.name)


def client(url: str, retries: int = 3, backoff_factor: float = 0.1):
    """A ``ligo.gracedb.rest.GraceDb`` client of ``url``: X.509/SciToken credentials as the
    client finds them (``force_noauth`` when it finds none, as against a local stand-in)."""
    from ligo.gracedb.rest import GraceDb

    try:
        return GraceDb(
            service_url=url, fail_if_noauth=True, retries=retries, backoff_factor=backoff_factor
        )
    except Exception:  # no credentials found: an unauthenticated client
        return GraceDb(
            service_url=url, force_noauth=True, retries=retries, backoff_factor=backoff_factor
        )


class Uploader:
    """Uploads the outbox's candidates, exactly once, in a thread (see the module docstring).

    Args:
        outbox: the outbox.
        make_client: returns a ``GraceDb`` client (called again after failures).
        group: GraceDB group (``CBC``; ``Test`` for tests and replays).
        backoff: first wait after a failure (s); doubles per failure.
        max_backoff: the longest wait (s).
        poll: seconds between looks at an empty outbox.
    """

    def __init__(
        self,
        outbox: Outbox,
        make_client,
        group: str = GROUP,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        poll: float = 0.05,
    ) -> None:
        self.outbox, self.make_client, self.group = outbox, make_client, group
        self.backoff, self.max_backoff, self.poll = backoff, max_backoff, poll
        self.client = None
        self.failures = 0
        self.acks: list[tuple[str, float]] = []  # (content_id, wall time of acknowledgement)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="gracedb-uploader", daemon=True)

    def start(self) -> Uploader:
        self.thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, drain: float = 0.0) -> None:
        """Stop, after up to ``drain`` seconds spent emptying the outbox."""
        end = time.monotonic() + drain
        while self.outbox.pending() and time.monotonic() < end:
            time.sleep(self.poll)
        self._stop.set()
        self._wake.set()
        self.thread.join(timeout=max(self.max_backoff, 5.0))

    def _loop(self) -> None:
        wait = self.backoff
        while not self._stop.is_set():
            pending = self.outbox.pending()
            if not pending:
                self._wake.wait(self.poll)
                self._wake.clear()
                continue
            try:
                for path in pending:
                    if self._stop.is_set():
                        return
                    self.upload(path)
                wait = self.backoff
            except Exception as exc:  # the server down or failing: back off, try again
                self.failures += 1
                self.client = None
                logger.warning("GraceDB upload failed (%s); retrying in %.1f s", exc, wait)
                self._stop.wait(wait)
                wait = min(2 * wait, self.max_backoff)

    def upload(self, path: Path) -> str:
        """Upload one outbox file (steps 1-3 of the module docstring); returns the GraceDB id."""
        from ligo.gracedb.exceptions import HTTPError

        if self.client is None:
            self.client = self.make_client()
        g = self.client
        record = self.outbox.load(path)
        graceid = record.get("graceid")
        if graceid is None:
            try:
                graceid = g.event(record["content_id"]).json()["graceid"]
                logger.info("GraceDB already has %s as %s", record["content_id"], graceid)
            except HTTPError as exc:
                if exc.response.status_code != 404:
                    raise
                r = g.create_event(
                    self.group, PIPELINE, EVENT_FILE, search=SEARCH,
                    filecontents=record["event"].encode(),
                )  # fmt: skip
                graceid = r.json()["graceid"]
                logger.info("GraceDB event %s created (%s)", graceid, record["event"])
            record["graceid"] = graceid
            self.outbox.update(path, record)
        if record.get("p_astro"):
            logs = g.logs(graceid).json().get("log", [])
            if not any(entry.get("filename") == PASTRO_FILE for entry in logs):
                g.write_log(
                    graceid, "aframe p_astro", filename=PASTRO_FILE,
                    filecontents=record["p_astro"].encode(), tag_name="p_astro",
                )  # fmt: skip
        self.outbox.done(path)
        self.acks.append((record["content_id"], time.time()))
        return graceid
