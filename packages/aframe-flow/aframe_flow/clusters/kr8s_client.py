"""The one piece of code that talks to a Kubernetes API: kr8s (async API, httpx) on its own loop.

What it does, and why:

- **create**: POST; a 5xx or a dropped connection is retried with backoff; a 409 on a retry
  means the first attempt got through (adopted), a 409 on the first attempt is an error naming
  the object left over (and how to delete it).
- **wait**: list-then-watch, as Kubernetes' own clients do: GET the object, test it, then watch
  it (``?watch=true&resourceVersion=<that GET's>&timeoutSeconds=``) and test each event; when
  the watch ends, or answers ``410 Gone`` (its version was compacted), GET again. API errors
  (5xx, connection errors, timeouts) are retried with backoff until the deadline. kr8s's own
  ``wait`` is not used: its ``jsonpath`` condition raises ``ValueError`` while an object has no
  ``status`` yet (kr8s 0.20), and its watch restarts a 410 at the same version forever.
  Meanwhile the cluster's pods may be listed too (an image that cannot be pulled shows only in
  the pods' container statuses).
- **delete**: DELETE with ``propagationPolicy=Foreground``, then wait until the object is gone
  (finalizers take time), so a cluster of the same name can be made right after.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """The cluster failed (pods failing, the API refused an object): waiting longer won't help."""


@dataclass
class Readiness:
    """What a readiness test saw: ready yet?, a failure that will not heal, and a description."""

    ready: bool
    seen: str
    failed: str = ""


def describe(manifest: dict[str, Any]) -> str:
    meta = manifest["metadata"]
    return f"{manifest['kind']} {meta.get('namespace', 'default')}/{meta['name']}"


def _transient(exc: BaseException) -> bool:
    """API errors worth retrying: 5xx/429 answers, connection errors, timeouts."""
    import httpx
    from kr8s import APITimeoutError, ServerError

    if isinstance(exc, ServerError):
        code = exc.response.status_code if exc.response is not None else 0
        return code >= 500 or code == 429
    return isinstance(exc, httpx.TransportError | APITimeoutError | _WatchError)


class _WatchError(Exception):
    """A watch stream's ERROR event other than 410."""


def _code(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    return response.status_code if response is not None else 0


class Kr8sClient:
    """Create, wait for, read and delete objects through kr8s.

    Args:
        namespace: default namespace.
        kubeconfig: kubeconfig file; ``None``: ``$KUBECONFIG``, ``~/.kube/config`` or the pod's
            service account.
        context: kubeconfig context; ``None``: its current one.
        attempts: tries of one request (create, get, delete) on transient errors.
        backoff: seconds before the first retry; doubled after each, at most 10 s.
        watch_window: seconds one watch request lasts before the object is listed again.
        pod_poll: seconds between two listings of a cluster's pods while waiting.
    """

    def __init__(
        self,
        namespace: str = "default",
        kubeconfig: str | None = None,
        context: str | None = None,
        attempts: int = 5,
        backoff: float = 1.0,
        watch_window: int = 60,
        pod_poll: float = 5.0,
    ):
        try:
            import kr8s  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("Ray clusters on Kubernetes need kr8s: pip install kr8s") from exc
        self.namespace, self.kubeconfig, self.context = namespace, kubeconfig, context
        self.attempts, self.backoff, self.watch_window = attempts, backoff, watch_window
        self.pod_poll = pod_poll
        self._loop = asyncio.new_event_loop()
        self._api = None

    # --- plumbing ------------------------------------------------------------------------
    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    async def _get_api(self):
        import kr8s.asyncio

        if self._api is None:
            self._api = await kr8s.asyncio.api(
                namespace=self.namespace, kubeconfig=self.kubeconfig, context=self.context
            )
        return self._api

    async def _object(self, manifest: dict[str, Any]):
        from kr8s.asyncio.objects import object_from_spec

        return object_from_spec(dict(manifest), api=await self._get_api(), allow_unknown_type=True)

    async def _retry(self, what: str, fn: Callable[[int], Any]) -> Any:
        delay = self.backoff
        for attempt in range(self.attempts):
            try:
                return await fn(attempt)
            except Exception as exc:
                if attempt == self.attempts - 1 or not _transient(exc):
                    raise
                logger.warning("%s: %s; retrying in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 10.0)

    def close(self) -> None:
        """Close the HTTP session and the event loop."""
        if self._loop.is_closed():
            return
        session = getattr(self._api, "_session", None)
        if session is not None and not session.is_closed:
            self._run(session.aclose())
        self._loop.close()

    # --- the four operations -------------------------------------------------------------
    def require_kind(self, api_version: str, plural: str, hint: str) -> None:
        """Fail early (discovery: ``/api``, ``/apis``, ...) when the cluster lacks a kind."""

        async def run():
            api = await self._get_api()
            try:
                await api.async_lookup_kind(f"{plural}.{api_version}")
            except ValueError:
                raise ClusterError(
                    f"this Kubernetes cluster does not serve {plural} ({api_version}); {hint}"
                ) from None

        self._run(run())

    def create(self, manifest: dict[str, Any]) -> None:
        async def attempt(n: int):
            from kr8s import ServerError

            obj = await self._object(manifest)
            try:
                await obj.async_create()
            except ServerError as exc:
                if _code(exc) != 409:
                    raise
                if n > 0:  # the earlier attempt got through before its answer was lost
                    logger.info("%s: created by an earlier attempt", describe(manifest))
                    return
                kind, meta = manifest["kind"], manifest["metadata"]
                raise ClusterError(
                    f"{describe(manifest)} already exists (left from an earlier run?): "
                    f"delete it (kubectl -n {meta.get('namespace', 'default')} delete "
                    f"{kind.lower()} {meta['name']}) or choose another cluster name"
                ) from None

        self._run(self._retry(f"creating {describe(manifest)}", attempt))

    def get(self, manifest: dict[str, Any]) -> dict[str, Any]:
        async def attempt(n: int):
            obj = await self._object(manifest)
            await obj.async_refresh()
            return obj.raw.to_dict() if hasattr(obj.raw, "to_dict") else dict(obj.raw)

        return self._run(self._retry(f"reading {describe(manifest)}", attempt))

    def delete(self, manifest: dict[str, Any], timeout: float = 300.0, poll: float = 0.1) -> None:
        """Delete and wait until the object is gone (absent already: nothing to do)."""

        async def attempt(n: int):
            from kr8s import NotFoundError

            obj = await self._object(manifest)
            try:
                await obj.async_delete(propagation_policy="Foreground")
            except NotFoundError:
                return False
            return True

        async def gone() -> None:
            obj = await self._object(manifest)
            deadline = time.monotonic() + timeout
            delay = poll
            while time.monotonic() < deadline:
                try:
                    if not await obj.async_exists():
                        return
                except Exception as exc:
                    if not _transient(exc):
                        raise
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)
            raise TimeoutError(
                f"{describe(manifest)} is still being deleted after {timeout:.0f} s "
                "(finalizers pending?); check it with kubectl"
            )

        if self._run(self._retry(f"deleting {describe(manifest)}", attempt)):
            self._run(gone())

    def wait(
        self,
        manifest: dict[str, Any],
        test: Callable[[dict], Readiness],
        what: str,
        timeout: float,
        pods: tuple[str, Callable[[list[dict]], str]] | None = None,
    ) -> None:
        """Block until ``test`` says ready; ``TimeoutError`` naming the object, ``what`` it
        waited for and what it saw last; ``ClusterError`` when ``test`` sees a failure.

        ``pods``: ``(label selector, pod test)``: meanwhile the pods of that selector are listed
        every ``pod_poll`` s; a message from the pod test (a container that cannot pull its
        image, which no Deployment or RayCluster status says) ends the wait as a
        ``ClusterError``."""
        self._run(self._wait_with_pods(manifest, test, what, timeout, pods))

    async def _wait_with_pods(self, manifest, test, what, timeout, pods) -> None:
        if pods is None:
            return await self._wait(manifest, test, what, timeout)
        tasks = [asyncio.ensure_future(self._wait(manifest, test, what, timeout)),
                 asyncio.ensure_future(self._watch_pods(manifest, *pods))]  # fmt: skip
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the object is ready, or the first error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_pods(self, manifest, selector: str, pod_test) -> None:
        """List the pods of ``selector`` every ``pod_poll`` s until cancelled; raise
        ``ClusterError`` with ``pod_test``'s message once it has one."""
        namespace = manifest["metadata"].get("namespace", self.namespace)
        while True:
            try:
                api = await self._get_api()
                found = [dict(p.raw) async for p in api.async_get(
                    "pods", namespace=namespace, label_selector=selector)]  # fmt: skip
            except Exception as exc:  # the object's wait reports API trouble; keep looking
                if not _transient(exc):
                    logger.debug("listing pods %s: %s", selector, exc)
                found = []
            if message := pod_test(found):
                raise ClusterError(message)
            await asyncio.sleep(self.pod_poll)

    async def _wait(self, manifest, test, what: str, timeout: float) -> None:
        from kr8s import NotFoundError

        name = describe(manifest)
        deadline = time.monotonic() + timeout
        state = {"seen": "nothing yet (no answer from the API)", "error": ""}
        delay = self.backoff

        def check(raw: dict) -> bool:
            result = test(raw)
            state["seen"] = result.seen
            if result.failed:
                raise ClusterError(f"{name} failed while waiting for {what}: {result.failed}")
            return result.ready

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                error = f"; last API error: {state['error']}" if state["error"] else ""
                raise TimeoutError(
                    f"{name}: not ready after {timeout:.1f} s (waited for {what}; last seen: "
                    f"{state['seen']}{error}); see kubectl -n "
                    f"{manifest['metadata'].get('namespace', 'default')} describe "
                    f"{manifest['kind'].lower()} {manifest['metadata']['name']}"
                )
            try:
                async with asyncio.timeout(left):
                    obj = await self._object(manifest)
                    try:
                        await obj.async_refresh()
                    except NotFoundError:
                        raise ClusterError(f"{name} disappeared while waiting for {what}") from None
                    if check(dict(obj.raw)):
                        return
                    if await self._watch(obj, check, min(left, self.watch_window)):
                        return
                delay = self.backoff
            except TimeoutError:
                continue  # the deadline: reported above
            except Exception as exc:
                if not _transient(exc):
                    raise
                state["error"] = str(exc) or type(exc).__name__
                logger.warning("waiting for %s: %s; retrying in %.1f s", name, exc, delay)
                await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(2 * delay, 10.0)

    async def _watch(self, obj, check: Callable[[dict], bool], window: float) -> bool:
        """Watch ``obj`` from its resourceVersion for ``window`` s; True once ``check`` passes,
        False when the watch ended (or its version expired: the caller lists again)."""
        params = {
            "resourceVersion": obj.metadata.get("resourceVersion", ""),
            "timeoutSeconds": str(max(1, int(window))),
            "allowWatchBookmarks": "true",
        }
        async with obj.api.async_get_kind(
            type(obj),
            namespace=obj.namespace,
            field_selector=f"metadata.name={obj.name}",
            params=params,
            watch=True,
            timeout=None,
        ) as (_, response):
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, raw = event.get("type"), event.get("object", {})
                if kind == "ERROR":
                    if raw.get("code") == 410:  # compacted: list again
                        return False
                    raise _WatchError(raw.get("message", "watch error"))
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    raise ClusterError(f"{obj.kind} {obj.namespace}/{obj.name} was deleted")
                if check(raw):
                    return True
        return False
