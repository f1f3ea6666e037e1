"""A GraceDB REST stand-in over https on 127.0.0.1, for the real ``ligo-gracedb`` client.

It serves what the client reads and calls: the API root document (``links``, ``templates``,
``groups``, ``pipelines``, ``searches``, ``labels``, ``api-default``), event creation
(multipart ``eventFile`` + ``group``/``pipeline``/``search``/``content_id``), an event by
GraceDB id or by ``content_id`` (the UUID the client derives from the file's sha256), event
logs with file uploads and tags, and labels. It records every request, never deduplicates
(a second creation with the same ``content_id`` makes a second event and counts a duplicate),
and fails on demand (:meth:`GraceDbStandIn.fail_for`: every request answered with ``status``,
503 without ``Retry-After`` by default, GraceDB's maintenance answer).

The certificate is self-signed (made with ``cryptography``) and written to ``cert.pem``;
point ``REQUESTS_CA_BUNDLE`` at it so the client verifies the server as it would the real one,
through its own https adapter (and its retries).
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import ipaddress
import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1/localhost: ``(cert.pem, key.pem)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class GraceDbStandIn:
    """The server (see the module docstring). ``url`` is the API root; ``events`` what it holds."""

    def __init__(self, directory: Path) -> None:
        self.cert, key = self_signed(Path(directory))
        self.events: dict[str, dict] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.duplicates = 0
        self.fail_until = 0.0
        self.fail_status = 503
        self.failed = 0
        self.delay = 0.0  # seconds each event creation takes (to kill a client mid-stream)
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                stand_in._handle(self, "GET")

            def do_POST(self):
                stand_in._handle(self, "POST")

            def do_PUT(self):
                stand_in._handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GraceDbStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_for(self, seconds: float, status: int = 503) -> None:
        """Answer every request with ``status`` for the next ``seconds``."""
        self.fail_until, self.fail_status = time.monotonic() + seconds, status

    def root(self) -> dict:
        u = self.url
        return {
            "api-default": "v1",
            "api-versions": ["v1"],
            "server-version": "stand-in",
            "links": {"events": f"{u}events/", "self": u},
            "templates": {
                "event-detail-template": f"{u}events/{{graceid}}",
                "event-log-template": f"{u}events/{{graceid}}/log/",
                "event-log-detail-template": f"{u}events/{{graceid}}/log/{{N}}",
                "event-label-template": f"{u}events/{{graceid}}/labels/{{label}}",
            },
            "groups": ["CBC", "Burst", "Test"],
            "pipelines": ["aframe", "gstlal", "pycbc", "MBTA", "spiir", "cwb"],
            "searches": ["AllSky", "BBH", "EarlyWarning", "MDC"],
            "labels": ["INJ", "DQV", "EM_READY", "PASTRO_READY"],
        }

    # -- request handling -------------------------------------------------------------------
    def _reply(self, h, status: int, body: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _form(self, h) -> dict:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        ctype = h.headers.get("Content-Type", "")
        fields: dict = {}
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + raw
            )
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                filename = part.get_filename()
                value = part.get_payload(decode=True)
                if filename is not None:
                    fields[name] = (filename, value)
                else:
                    fields.setdefault(name, []).append(value.decode())
        elif raw:
            fields = parse_qs(raw.decode())
        return fields

    def _handle(self, h, method: str) -> None:
        path = urlparse(h.path).path
        with self.lock:
            failing = time.monotonic() < self.fail_until
            status = self.fail_status if failing else None
        if failing:
            h.rfile.read(int(h.headers.get("Content-Length") or 0))
            with self.lock:
                self.failed += 1
                self.requests.append((method, path, status))
            return self._reply(h, status, {"detail": "stand-in failing on demand"})
        status, body = self._route(h, method, path)
        with self.lock:
            self.requests.append((method, path, status))
        self._reply(h, status, body)

    def _route(self, h, method: str, path: str) -> tuple[int, dict]:
        parts = [p for p in path.split("/") if p][1:]  # after "api"
        if not parts and method == "GET":
            return 200, self.root()
        if parts == ["events"] and method == "POST":
            time.sleep(self.delay)
            return self._create(self._form(h))
        if len(parts) >= 2 and parts[0] == "events":
            event = self._find(parts[1])
            if event is None:
                return 404, {"detail": "Not found."}
            if len(parts) == 2 and method == "GET":
                return 200, self._public(event)
            if parts[2:3] == ["log"] and method == "GET":
                return 200, {"numRows": len(event["log"]), "log": event["log"]}
            if parts[2:3] == ["log"] and method == "POST":
                form = self._form(h)
                filename, content = form.get("upload", ("", b""))
                entry = {
                    "N": len(event["log"]) + 1,
                    "comment": form.get("comment", [""])[0],
                    "filename": filename,
                    "tag_names": form.get("tagname", []),
                }
                with self.lock:
                    event["log"].append(entry)
                    event["files"][filename] = content
                return 201, entry
            if parts[2:3] == ["labels"] and method == "PUT":
                self._form(h)
                with self.lock:
                    event["labels"].append(parts[3])
                return 201, {"name": parts[3]}
        return 404, {"detail": f"no route {method} {path}"}

    def _create(self, form: dict) -> tuple[int, dict]:
        group, pipeline = form["group"][0], form["pipeline"][0]
        root = self.root()
        if group not in root["groups"] or pipeline not in root["pipelines"]:
            return 400, {"detail": "bad group or pipeline"}
        filename, content = form["eventFile"]
        try:
            parsed = json.loads(content)
        except ValueError:
            return 400, {"detail": "event file is not JSON"}
        with self.lock:
            cid = form.get("content_id", [None])[0]
            if cid is not None and any(e["content_id"] == cid for e in self.events.values()):
                self.duplicates += 1
            graceid = f"{'T' if group == 'Test' else 'G'}{len(self.events) + 1:06d}"
            self.events[graceid] = {
                "graceid": graceid,
                "group": group,
                "pipeline": pipeline,
                "search": form.get("search", [None])[0],
                "content_id": cid,
                "gpstime": parsed.get("gpstime"),
                "far": parsed.get("far"),
                "extra_attributes": parsed,
                "labels": [],
                "log": [],
                "files": {filename: content},
                "created": time.time(),  # when it was acknowledged (latency benchmarks)
            }
            return 201, self._public(self.events[graceid])

    def _find(self, key: str) -> dict | None:
        with self.lock:
            if UUID.match(key):
                return next((e for e in self.events.values() if e["content_id"] == key), None)
            return self.events.get(key)

    @staticmethod
    def _public(event: dict) -> dict:
        return {k: v for k, v in event.items() if k not in ("files", "log")}
