"""A small Kubernetes API server for tests: the REST and watch protocol on 127.0.0.1, no cluster.

It speaks what the Ray launcher (through kr8s, over httpx) uses:

- discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}/{version}``
  (``ray.io/v1`` only while the KubeRay CRD is "installed": ``kuberay=True``);
- namespaced ``secrets``, ``services``, ``pods`` (core/v1), ``deployments`` (apps/v1),
  ``rayclusters`` (ray.io/v1): create (POST), get, list (``fieldSelector=metadata.name=``,
  ``labelSelector``),
  watch (``?watch=true``: a chunked stream of JSON event lines from ``resourceVersion``, ended
  after ``timeoutSeconds``; an ``ERROR`` event with a 410 ``Status`` when that version is older
  than the compacted history), merge patch, delete (``propagationPolicy``; objects with
  finalizers get a ``deletionTimestamp`` and disappear later);
- one ``resourceVersion`` counter for every change, as etcd's revision;
- errors as ``Status`` bodies: 404 NotFound, 409 AlreadyExists, 410 Gone, 500 (scripted: see
  :meth:`KubeAPI.fail`), 401 without the bearer token of the kubeconfig.

A cluster's behaviour is scripted per object (:meth:`KubeAPI.timeline`): after a create, the
"controller" applies status patches at given delays (no status -> pending -> ready; pods
failing), and deletion with finalizers takes ``delete_delay`` seconds.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

TOKEN = "aframe-test-token"
# (group/version, plural) -> (kind, short names)
RESOURCES = {
    ("v1", "secrets"): ("Secret", []),
    ("v1", "services"): ("Service", ["svc"]),
    ("v1", "pods"): ("Pod", ["po"]),
    ("apps/v1", "deployments"): ("Deployment", ["deploy"]),
    ("ray.io/v1", "rayclusters"): ("RayCluster", []),
}
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$"
)


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``meta/v1`` ``Status`` as the API server sends with errors."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass
class Step:
    """After ``delay`` seconds (from the previous step), merge ``patch`` into the object."""

    delay: float
    patch: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class _Fault:
    method: str
    path: re.Pattern
    code: int
    times: int
    query: str = ""


@dataclass
class KubeAPI:
    """The server's state; start with :meth:`start`, stop with :meth:`stop`.

    Args:
        kuberay: whether the RayCluster CRD is installed (discovery lists ``ray.io/v1``).
        history: watch events kept; a watch from an older ``resourceVersion`` gets 410.
        delete_delay: seconds an object with finalizers stays after its DELETE.
    """

    kuberay: bool = True
    history: int = 1000
    delete_delay: float = 0.0
    objects: dict[tuple, dict] = field(default_factory=dict)
    events: list[tuple[int, str, tuple, dict]] = field(default_factory=list)
    requests: list[tuple[str, str, dict, Any]] = field(default_factory=list)
    timelines: dict[tuple[str, str], list[Step]] = field(default_factory=dict)
    finalizers: dict[str, list[str]] = field(default_factory=dict)
    rv: int = 100

    def __post_init__(self) -> None:
        self.lock = threading.Condition()
        self.faults: list[_Fault] = []
        self.closing = False
        self.compacted = 0  # watch events at or below this resourceVersion are gone
        self.expire_watches = 0  # the next N watches answer 410 (their version was compacted)

    # --- scripting -----------------------------------------------------------------------
    def timeline(self, kind: str, name: str, steps: list[Step]) -> None:
        """What the cluster does to ``kind``/``name`` after it is created."""
        self.timelines[(kind, name)] = steps

    def fail(self, method: str, path: str, code: int = 500, times: int = 1, query: str = ""):
        """Answer the next ``times`` requests ``method`` on paths matching ``path`` (regex) and
        whose query string contains ``query`` with ``code`` and a ``Status`` body."""
        self.faults.append(_Fault(method, re.compile(path), code, times, query))

    def compact(self) -> None:
        """Forget the watch history up to now (as etcd compaction): older watches get 410."""
        with self.lock:
            self.compacted = self.rv
            self.events.clear()

    def calls(self, method: str | None = None, path: str = "") -> list[tuple[str, str, dict]]:
        return [(m, p, q) for m, p, q, _ in self.requests
                if (method is None or m == method) and path in p]  # fmt: skip

    # --- the object store ----------------------------------------------------------------
    def _record(self, kind: str, key: tuple, obj: dict) -> None:
        """Give ``obj`` a new resourceVersion and append a watch event (lock held)."""
        self.rv += 1
        if kind != "DELETED":
            obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, kind, key, copy.deepcopy(obj)))
        del self.events[: -self.history]
        if len(self.events) == self.history:
            self.compacted = self.events[0][0] - 1
        self.lock.notify_all()

    def create(self, key: tuple, body: dict) -> tuple[int, dict]:
        with self.lock:
            if key in self.objects:
                message = f'{key[1]} "{key[3]}" already exists'
                return 409, status_body(409, "AlreadyExists", message)
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            meta.update(
                namespace=key[2], uid=str(uuid.uuid4()), generation=1, creationTimestamp=now
            )
            obj.pop("status", None)  # a new object has no status until a controller writes one
            kind = obj.get("kind", "")
            if kind in self.finalizers:
                meta["finalizers"] = list(self.finalizers[kind])
            self.objects[key] = obj
            self._record("ADDED", key, obj)
            steps = self.timelines.get((kind, key[3]), [])
            out = copy.deepcopy(obj)
        if steps:
            threading.Thread(target=self._play, args=(key, steps), daemon=True).start()
        return 201, out

    def _play(self, key: tuple, steps: list[Step]) -> None:
        for step in steps:
            time.sleep(step.delay)
            with self.lock:
                obj = self.objects.get(key)
                if obj is None or self.closing:
                    return
                patch = step.patch(obj) if callable(step.patch) else step.patch
                self.objects[key] = merge_patch(obj, patch)
                self._record("MODIFIED", key, self.objects[key])

    def add_pod(self, namespace: str, body: dict) -> None:
        """What a controller and the kubelet do: create the Pod ``body`` (see :func:`pod`), then
        write its status."""
        key = ("v1", "pods", namespace, body["metadata"]["name"])
        self.create(key, body)
        self.patch(key, {"status": body["status"]})

    def patch(self, key: tuple, body: dict) -> tuple[int, dict]:
        with self.lock:
            if key not in self.objects:
                return 404, status_body(404, "NotFound", f'{key[1]} "{key[3]}" not found')
            self.objects[key] = merge_patch(self.objects[key], body)
            self._record("MODIFIED", key, self.objects[key])
            return 200, copy.deepcopy(self.objects[key])

    def delete(self, key: tuple, body: dict) -> tuple[int, dict]:
        with self.lock:
            obj = self.objects.get(key)
            if obj is None:
                return 404, status_body(404, "NotFound", f'{key[1]} "{key[3]}" not found')
            meta = obj["metadata"]
            if body.get("propagationPolicy") == "Foreground":
                meta.setdefault("finalizers", [])
                if "foregroundDeletion" not in meta["finalizers"]:
                    meta["finalizers"].append("foregroundDeletion")
            if meta.get("finalizers"):
                if "deletionTimestamp" not in meta:
                    meta["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    self._record("MODIFIED", key, obj)
                    timer = threading.Timer(self.delete_delay, self._finalize, args=(key,))
                    timer.daemon = True
                    timer.start()
                return 200, copy.deepcopy(obj)
            del self.objects[key]
            self._record("DELETED", key, obj)
            return 200, copy.deepcopy(obj)

    def _finalize(self, key: tuple) -> None:
        with self.lock:
            obj = self.objects.pop(key, None)
            if obj is not None:
                obj["metadata"]["finalizers"] = []
                self._record("DELETED", key, obj)

    def select(self, gv: str, plural: str, ns: str, query: dict) -> list[tuple[tuple, dict]]:
        """``(key, object)`` of the collection matching the field and label selectors."""
        name = None
        for term in filter(None, query.get("fieldSelector", [""])[0].split(",")):
            field_, _, value = term.partition("=")
            if field_ == "metadata.name":
                name = value
        labels = dict(t.split("=", 1) for t in
                      filter(None, query.get("labelSelector", [""])[0].split(",")))  # fmt: skip
        out = []
        for key, obj in self.objects.items():
            if key[:3] != (gv, plural, ns) or (name and key[3] != name):
                continue
            have = obj["metadata"].get("labels", {})
            if all(have.get(k) == v for k, v in labels.items()):
                out.append((key, obj))
        return out

    # --- the HTTP side -------------------------------------------------------------------
    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; the base URL."""
        api = self

        class Handler(_Handler):
            state = api

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        with self.lock:
            self.closing = True
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """Write a kubeconfig that points kr8s at this server (bearer token, no TLS)."""
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {
                "cluster": "test", "user": "test", "namespace": namespace}}],
        }))  # fmt: skip
        return path


def _discovery(path: str, kuberay: bool) -> dict | None:
    groups = {"apps/v1"} | ({"ray.io/v1"} if kuberay else set())

    verbs = ["create", "delete", "get", "list", "patch", "watch"]

    def resource_list(gv: str) -> dict:
        resources = [
            {"name": plural, "singularName": kind.lower(), "namespaced": True, "kind": kind,
             "shortNames": short, "verbs": verbs}
            for (g, plural), (kind, short) in RESOURCES.items() if g == gv
        ]  # fmt: skip
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources}  # fmt: skip

    if path == "/version":
        return {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/api/v1":
        return resource_list("v1")
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": "v1"}],
             "preferredVersion": {"groupVersion": gv, "version": "v1"}}
            for gv in sorted(groups)]}  # fmt: skip
    if path.startswith("/apis/") and path[len("/apis/") :] in groups:
        return resource_list(path[len("/apis/") :])
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: KubeAPI

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}

    def _handle(self, method: str) -> None:
        api = self.state
        url = urlparse(self.path)
        url = url._replace(path=url.path.rstrip("/") or "/")  # kr8s asks for /version/, /api/
        query = parse_qs(url.query)
        body = self._body() if method in ("POST", "PATCH", "DELETE") else None
        api.requests.append((method, url.path, query, body))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, status_body(401, "Unauthorized", "Unauthorized"))
        for fault in api.faults:
            if fault.times > 0 and fault.method == method and fault.path.search(url.path) \
                    and fault.query in url.query:  # fmt: skip
                fault.times -= 1
                reason = {500: "InternalError", 410: "Expired", 503: "ServiceUnavailable",
                          409: "Conflict", 404: "NotFound"}.get(fault.code, "Unknown")  # fmt: skip
                return self._send(fault.code, status_body(fault.code, reason, "scripted fault"))
        if method == "GET" and (doc := _discovery(url.path, api.kuberay)) is not None:
            return self._send(200, doc)
        match = _PATH.match(url.path)
        gv = match and (match["core"] or f"{match['group']}/{match['version']}")
        if (
            not match
            or (gv, match["plural"]) not in RESOURCES
            or (gv == "ray.io/v1" and not api.kuberay)
        ):
            return self._send(404, status_body(404, "NotFound", "the server could not find "
                                                "the requested resource"))  # fmt: skip
        key = (gv, match["plural"], match["ns"], match["name"])
        if method == "POST" and not match["name"]:
            return self._send(*api.create(key[:3] + (body["metadata"]["name"],), body))
        if method == "PATCH" and match["name"]:
            return self._send(*api.patch(key, body))
        if method == "DELETE" and match["name"]:
            return self._send(*api.delete(key, body or {}))
        if method == "GET" and match["name"]:
            with api.lock:
                obj = api.objects.get(key)
                if obj is None:
                    message = f'{key[1]} "{key[3]}" not found'
                    return self._send(404, status_body(404, "NotFound", message))
                return self._send(200, copy.deepcopy(obj))
        if method == "GET" and query.get("watch", [""])[0] in ("true", "1"):
            return self._watch(gv, match["plural"], match["ns"], query)
        if method == "GET":
            kind = RESOURCES[gv, match["plural"]][0]
            with api.lock:
                items = [copy.deepcopy(o) for _, o in api.select(gv, match["plural"],
                                                                  match["ns"], query)]  # fmt: skip
                return self._send(200, {"kind": f"{kind}List", "apiVersion": gv, "items": items,
                                        "metadata": {"resourceVersion": str(api.rv)}})  # fmt: skip
        return self._send(405, status_body(405, "MethodNotAllowed", method))

    def _watch(self, gv: str, plural: str, ns: str, query: dict) -> None:
        api = self.state
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        timeout = float(query.get("timeoutSeconds", ["3600"])[0])
        deadline = time.monotonic() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(event: dict) -> None:
            data = (json.dumps(event) + "\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            with api.lock:
                expired = api.expire_watches > 0
                api.expire_watches -= expired
                if expired or (since and since < api.compacted):
                    gone = status_body(410, "Expired", f"too old resource version: {since} "
                                       f"({api.compacted})")  # fmt: skip
                    chunk({"type": "ERROR", "object": gone})
                    return
                if not since:  # no version: the current objects first, as ADDED
                    current = [(k, copy.deepcopy(o)) for k, o in api.select(gv, plural, ns, query)]
                    since = api.rv
                else:
                    current = []
            for _, obj in current:
                chunk({"type": "ADDED", "object": obj})
            while True:
                with api.lock:
                    wanted = {k for k, _ in api.select(gv, plural, ns, query)}
                    news = [e for e in api.events if e[0] > since]
                    if not news:
                        left = deadline - time.monotonic()
                        if left <= 0 or api.closing:
                            return
                        api.lock.wait(min(left, 0.5))
                        continue
                for rv, kind, key, obj in news:
                    since = rv
                    if key[:3] == (gv, plural, ns) and (key in wanted or kind == "DELETED") \
                            and _name_ok(key, query):  # fmt: skip
                        chunk({"type": kind, "object": obj})
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")


def _name_ok(key: tuple, query: dict) -> bool:
    for term in filter(None, query.get("fieldSelector", [""])[0].split(",")):
        field_, _, value = term.partition("=")
        if field_ == "metadata.name" and value != key[3]:
            return False
    return True


# what the controllers write once a cluster is up (for Step timelines)
RUNNING = {"state": "ready", "desiredWorkerReplicas": 3, "readyWorkerReplicas": 3,
           "conditions": [{"type": "HeadPodReady", "status": "True"},
                          {"type": "RayClusterProvisioned", "status": "True"}]}  # fmt: skip


def pod(name: str, instance: str, image: str, waiting: dict | None = None) -> dict:
    """A Pod of the cluster ``instance`` (its labels) whose one container waits with ``waiting``
    (``{"reason": "ImagePullBackOff", "message": ...}``) or runs; as the kubelet reports it."""
    state = {"waiting": waiting} if waiting else {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": instance}},
            "spec": {"containers": [{"name": "ray", "image": image}]},
            "status": {"phase": "Pending" if waiting else "Running", "containerStatuses": [
                {"name": "ray", "image": image, "ready": not waiting, "restartCount": 0,
                 "state": state}]}}  # fmt: skip


def deployment_up(obj):
    """What the Deployment controller writes once every pod is ready."""
    n = obj["spec"]["replicas"]
    return {"status": {"observedGeneration": obj["metadata"]["generation"], "replicas": n,
                       "readyReplicas": n, "availableReplicas": n,
                       "conditions": [{"type": "Available", "status": "True"}]}}  # fmt: skip
