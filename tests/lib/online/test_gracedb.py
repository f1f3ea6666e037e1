"""Candidates reach a GraceDB stand-in (https, self-signed) through the real ligo-gracedb
client: exactly once, through server failures and restarts."""

from __future__ import annotations

import json
import time

import pytest
from helpers.gracedb_api import GraceDbStandIn


@pytest.fixture
def gracedb(tmp_path, monkeypatch):
    with GraceDbStandIn(tmp_path) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert))
        yield server


def _candidates(n=3):
    from aframe_lib.online.gracedb import Candidate

    return [Candidate(1e9 + 10.5 * i, 5.0 + i, 1e-8, ("H1", "L1"), 0.1, 0.9) for i in range(n)]


def _uploader(outbox, server, **kwargs):
    from aframe_lib.online.gracedb import Uploader, client

    return Uploader(outbox, lambda: client(server.url), group="Test", **kwargs)


def _wait(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)
    return cond()


def test_each_candidate_arrives_once_with_its_p_astro(gracedb, tmp_path):
    from aframe_lib.online.gracedb import Outbox

    outbox = Outbox(tmp_path / "outbox")
    cands = _candidates()
    for c in cands:
        outbox.put(c)
    up = _uploader(outbox, gracedb).start()
    assert _wait(lambda: not outbox.pending())
    up.stop()
    assert len(gracedb.events) == 3 and gracedb.duplicates == 0
    for c, event in zip(cands, sorted(gracedb.events.values(), key=lambda e: e["gpstime"]),
                        strict=True):  # fmt: skip
        assert (event["pipeline"], event["search"], event["group"]) == ("aframe", "AllSky", "Test")
        assert event["gpstime"] == pytest.approx(c.gpstime)
        assert event["extra_attributes"]["ifos"] == "H1,L1"
        assert event["content_id"] == c.content_id
        (log,) = event["log"]
        assert log["filename"] == "aframe.p_astro.json" and log["tag_names"] == ["p_astro"]
        p_astro = json.loads(event["files"]["aframe.p_astro.json"])
        assert p_astro == {"BBH": 0.9, "Terrestrial": pytest.approx(0.1)}
    assert len(outbox.acknowledged()) == 3


def test_a_server_failing_for_a_while_loses_nothing(gracedb, tmp_path):
    from aframe_lib.online.gracedb import Outbox

    gracedb.fail_for(3.0)
    outbox = Outbox(tmp_path / "outbox")
    up = _uploader(outbox, gracedb, backoff=0.1, max_backoff=0.5).start()
    for c in _candidates():
        outbox.put(c)
        up.wake()
    assert _wait(lambda: not outbox.pending())
    up.stop()
    assert gracedb.failed > 0 and up.failures > 0
    assert len(gracedb.events) == 3 and gracedb.duplicates == 0
    assert all(len(e["log"]) == 1 for e in gracedb.events.values())


def test_a_restart_after_an_unrecorded_post_looks_it_up_by_content_id(gracedb, tmp_path):
    """Killed after GraceDB created the event but before the outbox recorded it: the restarted
    uploader finds it by content_id and posts only the p_astro file."""
    from aframe_lib.online.gracedb import EVENT_FILE, Outbox, client

    outbox = Outbox(tmp_path / "outbox")
    first, *rest = _candidates()
    for c in (first, *rest):
        outbox.put(c)
    client(gracedb.url).create_event("Test", "aframe", EVENT_FILE, search="AllSky",
                                     filecontents=first.event_file())  # fmt: skip
    up = _uploader(outbox, gracedb).start()
    assert _wait(lambda: not outbox.pending())
    up.stop()
    assert len(gracedb.events) == 3 and gracedb.duplicates == 0
    assert all(len(e["log"]) == 1 for e in gracedb.events.values())
    looked_up = [p for m, p, s in gracedb.requests if m == "GET" and first.content_id in p]
    assert looked_up
