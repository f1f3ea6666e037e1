"""Protocol-level stand-ins for the gravitational-wave data services, on 127.0.0.1.

The real client libraries (gwdatafind, dqsegdb2, gwosc and gwpy on top of them) run unchanged
against these servers; they reach them through their own settings (``GWDATAFIND_SERVER``,
``DEFAULT_SEGMENT_SERVER``, ``GWOSC_SERVER_URL``) or their ``host`` arguments.

- :func:`datafind_server`: the real GWDataFind server application (``gwdatafind-server``),
  configured by its TOML file with an FFL (frame file list) source listing GWF files the test
  wrote with :func:`write_frames` (lalframe through gwpy, via ``aframe_lib.data.frames``).
- :class:`SegmentServer`: the DQSegDB REST API (T1300625 section 5.1) as ``dqsegdb2`` reads it:
  ``/dq/{ifo}/{flag}`` lists versions, ``/dq/{ifo}/{flag}/{version}?s=&e=&include=`` returns
  ``known``/``active`` segments.
- :class:`OpenDataServer`: the GWOSC v2 API endpoints ``gwosc`` and gwpy's
  ``TimeSeries.fetch_open_data`` call (runs, event versions, run strain files, timeline
  segments) and the strain files themselves, in the open-data HDF5 layout
  (``strain/Strain`` with ``Xstart``/``Xspacing``, ``meta/Detector``).

Every server can fail on demand: ``fail_next(n, status, prefix)`` answers the next ``n``
requests (under ``prefix``, e.g. only the strain files' ``/archive/``) with ``status`` (a 500
then a 200, as a loaded server does), and stopping it leaves a closed port (a
server that is down).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

Segments = Sequence[tuple[float, float]]


# ---------------------------------------------------------------- failures on demand


class _Failures:
    """The next ``n`` requests (whose path starts with ``prefix``) fail with ``status``; every
    request path is recorded."""

    def __init__(self):
        self.lock = threading.Lock()
        self.left, self.status, self.prefix = 0, 500, "/"
        self.requests: list[str] = []

    def fail_next(self, n: int, status: int = 500, prefix: str = "/") -> None:
        with self.lock:
            self.left, self.status, self.prefix = n, status, prefix

    def take(self, path: str) -> int | None:
        with self.lock:
            self.requests.append(path)
            if self.left > 0 and path.startswith(self.prefix):
                self.left -= 1
                return self.status
        return None


class _Controls:
    """What every stand-in offers a test: its URL, failures on demand, the requests it saw."""

    failures: _Failures
    httpd: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def fail_next(self, n: int, status: int = 500, prefix: str = "/") -> None:
        """Answer the next ``n`` requests whose path starts with ``prefix`` with ``status``."""
        self.failures.fail_next(n, status, prefix)

    @property
    def requests(self) -> list[str]:
        return self.failures.requests

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(_Controls):
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread; ``url``, ``stop()``."""

    def __init__(self, handler):
        self.failures = _Failures()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def json(self, obj, status: int = 200) -> None:
        self.reply(status, json.dumps(obj).encode())

    def do_GET(self):  # noqa: N802 - http.server's name
        owner = self.server.owner
        status = owner.failures.take(self.path)
        if status is not None:
            return self.json({"error": "injected failure"}, status)
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        return self.route(url.path, query)

    def route(self, path: str, query: dict[str, str]) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------- DQSegDB


class SegmentServer(_Server):
    """DQSegDB's REST API over known segments.

    Args:
        flags: ``"H1:DMT-ANALYSIS_READY:1"`` (versioned) -> active segments; ``known``
            defaults to the whole queried span.
    """

    def __init__(self, flags: Mapping[str, Segments]):
        self.flags: dict[tuple[str, str], dict[int, list]] = {}
        for name, segs in flags.items():
            ifo, flag, version = name.split(":")
            self.flags.setdefault((ifo, flag), {})[int(version)] = [list(s) for s in segs]
        super().__init__(_SegmentHandler)


class _SegmentHandler(_Handler):
    def route(self, path, query):
        parts = [p for p in path.split("/") if p]
        owner = self.server.owner
        if parts[:1] != ["dq"] or len(parts) not in (3, 4):
            return self.json({"error": f"unknown path {path}"}, 404)
        versions = owner.flags.get((parts[1], parts[2]))
        if versions is None:
            return self.json({"error": f"flag {parts[1]}:{parts[2]} not found"}, 404)
        info = {"server": "segments-standin", "uri": path, "api_version": "2.1.17",
                "server_timestamp": 0, "server_elapsed_query_time": "0"}  # fmt: skip
        if len(parts) == 3:
            return self.json({"version": sorted(versions), "resource_type": "version",
                              "query_information": info})  # fmt: skip
        version = int(parts[3])
        if version not in versions:
            return self.json({"error": f"version {version} not found"}, 404)
        s, e = float(query["s"]), float(query["e"])
        active = [[max(a, s), min(b, e)] for a, b in versions[version] if b > s and a < e]
        return self.json({
            "ifo": parts[1], "name": parts[2], "version": version,
            "known": [[s, e]], "active": active,
            "metadata": {"comment": "stand-in"}, "query_information": {**info, "start": s,
                                                                       "end": e},
        })  # fmt: skip


# ---------------------------------------------------------------- GWDataFind


def write_frames(
    root: Path,
    ifo: str,
    channel: str,
    tag: str,
    spans: Segments,
    file_duration: float,
    sample_rate: float = 16384.0,
    signal=None,
) -> list[Path]:
    """GWF files of float64 strain over ``spans``, each at most ``file_duration`` long, named
    ``{obs}-{ifo}_{tag}-{gps}-{dur}.gwf`` (the frame type is ``{ifo}_{tag}``).

    ``signal(ifo, t)`` gives the samples at GPS times ``t``; default: a deterministic tone plus
    noise per IFO (seeded by GPS), so every file's samples are known to the test.
    """
    from gwpy.timeseries import TimeSeries

    from aframe_lib.data.frames import ifo_frame_name, write_frame

    signal = signal or strain_signal
    paths = []
    for start, end in spans:
        t = float(start)
        while t < end:
            d = min(file_duration, end - t)
            times = t + np.arange(round(d * sample_rate)) / sample_rate
            ts = TimeSeries(signal(ifo, times), t0=t, sample_rate=sample_rate, unit="strain")
            path = root / ifo_frame_name(ifo, tag, t, d)
            write_frame(path, {channel: ts})
            paths.append(path)
            t += d
    return paths


def strain_signal(ifo: str, t: np.ndarray) -> np.ndarray:
    """Known float64 strain: two tones (one above the 2048 Hz band's Nyquist, removed by the
    resampler) and white noise seeded by the first GPS second, ~1e-21."""
    rng = np.random.default_rng([int(t[0]), len(t), ord(ifo[0])])
    phase = 0.3 if ifo.startswith("H") else 1.1
    tone = np.sin(2 * np.pi * 60.0 * t + phase) + 0.5 * np.sin(2 * np.pi * 3000.0 * t)
    return (tone + 0.1 * rng.standard_normal(len(t))) * 1e-21


def write_ffl(path: Path, frames: Sequence[Path]) -> Path:
    """A frame file list: one ``path gps duration 0 0`` line per file."""
    from aframe_lib.data.frames import parse_frame_name

    lines = []
    for f in sorted(frames):
        meta = parse_frame_name(f)
        lines.append(f"{f} {meta.start:g} {meta.duration:g} 0 0")
    path.write_text("\n".join(lines) + "\n")
    return path


class DatafindServer(_Controls):
    """The real ``gwdatafind-server`` application (Flask) served by werkzeug on 127.0.0.1,
    configured by a TOML file with one FFL source over ``ffl_dir``; ``fail_next`` answers the
    next requests with an error before the application sees them (WSGI middleware)."""

    def __init__(self, ffl_dir: Path, config_dir: Path):
        import logging

        from gwdatafind_server import create_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

        config = config_dir / "gwdatafind-server.toml"
        config.write_text(
            '[api]\nversions = ["ldr", "v1"]\n\n'
            "[[input.source]]\n"
            f'type = "ffl"\nname = "test-frames"\npath = "{ffl_dir}"\ninterval = 3600\n'
        )
        self.config = config
        self.app = create_app(config=config)
        self.failures = _Failures()
        self.httpd = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _wsgi(self, environ, start_response):
        status = self.failures.take(environ.get("PATH_INFO", ""))
        if status is not None:
            start_response(f"{status} Injected", [("Content-Type", "text/plain")])
            return [b"injected failure"]
        return self.app(environ, start_response)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(Exception):
            self.app._scheduler.shutdown(wait=False)


# ---------------------------------------------------------------- GWOSC


def write_open_data_file(path: Path, ifo: str, t0: float, data: np.ndarray, rate: float) -> Path:
    """One strain file in the open-data HDF5 layout (what gwpy's ``read_gwosc_hdf5`` reads)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("strain/Strain", data=np.asarray(data, dtype=np.float64))
        ds.attrs.update({"Xstart": float(t0), "Xspacing": 1.0 / rate, "Xunits": "second",
                         "Yunits": "", "Npoints": len(data)})  # fmt: skip
        f["strain/GWOSCmeta"] = b"GWOSC-4KHZ_R1_STRAIN"
        f["meta/Detector"] = ifo.encode()
        f["meta/GPSstart"] = int(t0)
        f["meta/Duration"] = int(round(len(data) / rate))
    return path


class OpenDataServer(_Server):
    """The GWOSC v2 API (one run) and its strain files.

    Args:
        root: where the strain files are written (served under ``/archive/``).
        run: the run's name, e.g. ``"O3b_4KHZ_R1"`` (gwosc's dataset name).
        strain: ``{ifo: [(start, end), ...]}`` spans with data; files of ``file_duration`` s at
            ``rate`` Hz hold :func:`strain_signal`.
        timelines: ``{"H1_DATA": [(start, end), ...]}``: the open-data timeline segments.
    """

    def __init__(self, root: Path, run: str, strain: Mapping[str, Segments],
                 timelines: Mapping[str, Segments], file_duration: float = 64.0,
                 rate: float = 4096.0):  # fmt: skip
        self.root, self.run, self.rate = Path(root), run, rate
        self.timelines = {k: [list(s) for s in v] for k, v in timelines.items()}
        self.files: dict[str, list[tuple[float, float, str]]] = {}
        khz = round(rate / 1024)
        for ifo, spans in strain.items():
            for start, end in spans:
                t = float(start)
                while t < end:
                    d = min(file_duration, end - t)
                    name = f"{ifo[0]}-{ifo}_GWOSC_{khz}KHZ_R1-{t:.0f}-{d:.0f}.hdf5"
                    times = t + np.arange(round(d * rate)) / rate
                    write_open_data_file(self.root / name, ifo, t, strain_signal(ifo, times), rate)
                    self.files.setdefault(ifo, []).append((t, t + d, name))
                    t += d
        every = [s for spans in strain.values() for s in spans]
        self.span = (min(a for a, _ in every), max(b for _, b in every))
        super().__init__(_OpenDataHandler)


def _page(results: list) -> dict:
    return {"results": results, "num_pages": 1, "next": None, "previous": None,
            "count": len(results)}  # fmt: skip


class _OpenDataHandler(_Handler):
    def route(self, path, query):
        owner: OpenDataServer = self.server.owner
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == "archive":
            f = owner.root / parts[-1]
            if not f.is_file():
                return self.json({"error": "no such file"}, 404)
            return self.reply(200, f.read_bytes(), "application/x-hdf5")
        if parts[:2] != ["api", "v2"]:
            return self.json({"detail": "Not found."}, 404)
        rest = parts[2:]
        if rest == ["event-versions"] or rest == ["catalogs"]:
            return self.json(_page([]))
        if rest == ["runs"]:
            return self.json(_page([{
                "name": owner.run, "gps_start": owner.span[0], "gps_end": owner.span[1],
                "detectors": sorted(owner.files),
            }]))  # fmt: skip
        if len(rest) == 3 and rest[0] == "runs" and rest[2] == "strain-files":
            if rest[1] != owner.run.split("_")[0] and rest[1] != owner.run:
                return self.json(_page([]))
            ifo = query.get("detector")
            start, stop = float(query.get("start", 0)), float(query.get("stop", 1e10))
            want = {"4": 4096.0, "16": 16384.0}.get(query.get("sample-rate", ""), owner.rate)
            out = []
            for det, files in sorted(owner.files.items()):
                if (ifo and det != ifo) or want != owner.rate:
                    continue
                for a, b, name in files:
                    if b > start and a < stop:
                        url = f"{owner.url}/archive/{name}"
                        out.append({"detector": det, "gps_start": a, "gps_end": b,
                                    "sample_rate_kHz": round(owner.rate / 1024),
                                    "hdf5_url": url, "gwf_url": url[:-4] + "gwf",
                                    "txt_url": url[:-4] + "txt.gz"})  # fmt: skip
            return self.json(_page(out))
        if len(rest) == 3 and rest[0] == "timelines" and rest[2] == "segments":
            segs = owner.timelines.get(rest[1])
            if segs is None:
                return self.json({"detail": "Not found."}, 404)
            s, e = float(query["start"]), float(query["stop"])
            out = [{"start": int(max(a, s)), "stop": int(min(b, e))}
                   for a, b in segs if b > s and a < e]  # fmt: skip
            return self.json(_page(out))
        return self.json({"detail": "Not found."}, 404)


@contextlib.contextmanager
def serving(server) -> Iterator:
    """Yield a started server and stop it afterwards."""
    try:
        yield server
    finally:
        server.stop()
