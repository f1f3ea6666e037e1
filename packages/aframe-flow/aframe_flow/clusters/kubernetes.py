"""The lifecycle of a Ray cluster on Kubernetes: create, wait until ready, address, delete.

:class:`RayCluster` works through a :class:`Kr8sClient`, the only code that talks to a cluster
(kr8s, imported when one is made). Anything with the same four methods can stand in for it.

    cluster = RayCluster(spec, backend="deployments")
    with cluster:                      # create + wait; delete on exit, also after an error
        tune(address=cluster.address)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from . import manifests as m

logger = logging.getLogger(__name__)


class ClusterClient(Protocol):
    """What :class:`RayCluster` needs from a Kubernetes API."""

    def create(self, manifest: dict[str, Any]) -> None: ...
    def wait(self, manifest: dict[str, Any], condition: str, timeout: float) -> None: ...
    def get(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    def delete(self, manifest: dict[str, Any]) -> None: ...


class Kr8sClient:
    """:class:`ClusterClient` over kr8s (kubeconfig or in-cluster service account).

    Args:
        namespace: default namespace of the API.
        api: a ``kr8s.Api``; ``None`` makes one.
    """

    def __init__(self, namespace: str = "default", api: Any = None):
        try:
            import kr8s
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("Ray clusters on Kubernetes need kr8s: pip install kr8s") from exc
        self.api = api or kr8s.api(namespace=namespace)

    def _object(self, manifest):
        from kr8s.objects import object_from_spec

        return object_from_spec(manifest, api=self.api, allow_unknown_type=True)

    def create(self, manifest):
        self._object(manifest).create()

    def wait(self, manifest, condition, timeout):
        self._object(manifest).wait(condition, timeout=timeout)

    def get(self, manifest):
        obj = self._object(manifest)
        obj.refresh()
        return dict(obj.raw)

    def delete(self, manifest):
        from kr8s import NotFoundError

        try:
            self._object(manifest).delete(propagation_policy="Foreground")
        except NotFoundError:
            pass


class RayCluster:
    """A Ray head and GPU workers on Kubernetes, deleted again however the work ends.

    Args:
        spec: what the cluster is made of.
        backend: ``kuberay`` (a RayCluster resource) or ``deployments`` (plain objects).
        external: reach the head from outside the cluster through a LoadBalancer.
        secrets: Secret manifests to create first (e.g. :func:`~.manifests.secret_from_env`)
            and delete last; Secrets that already exist are only referenced by ``spec.secrets``.
        client: the Kubernetes API; ``None``: :class:`Kr8sClient` in ``spec.namespace``.
        poll: seconds between checks for a LoadBalancer address.
    """

    def __init__(
        self,
        spec: m.ClusterSpec,
        backend: str = "kuberay",
        external: bool = False,
        secrets: list[dict[str, Any]] | None = None,
        client: ClusterClient | None = None,
        poll: float = 2.0,
    ):
        if backend not in ("kuberay", "deployments"):
            raise ValueError(f"backend={backend!r}: use 'kuberay' or 'deployments'")
        self.spec, self.backend, self.external = spec, backend, external
        self.secrets = list(secrets or [])
        self._client = client
        self.poll = poll
        self.created: list[dict[str, Any]] = []

    @property
    def client(self) -> ClusterClient:
        if self._client is None:
            self._client = Kr8sClient(self.spec.namespace)
        return self._client

    def manifests(self) -> list[dict[str, Any]]:
        """Every object, in creation order (Secrets first)."""
        if self.backend == "kuberay":
            workload = [m.ray_cluster(self.spec, self.external)]
        else:
            workload = m.deployments(self.spec, self.external)
        return [*self.secrets, *workload]

    def create(self) -> None:
        for manifest in self.manifests():
            logger.info("creating %s %s", manifest["kind"], manifest["metadata"]["name"])
            self.client.create(manifest)
            self.created.append(manifest)

    def _service(self) -> dict[str, Any]:
        name = f"{self.spec.name}-head-svc" if self.backend == "kuberay" else self.spec.head_service
        if self.external and self.backend == "deployments":
            name = f"{self.spec.name}-client"
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": self.spec.namespace},
        }

    def wait(self, timeout: float = 900.0) -> None:
        """Block until the head and every worker are ready (and the LoadBalancer has an IP)."""
        deadline = time.monotonic() + timeout
        for manifest in self.created:
            left = max(1.0, deadline - time.monotonic())
            if manifest["kind"] == "Deployment":
                self.client.wait(manifest, "condition=Available", left)
            elif manifest["kind"] == "RayCluster":
                self.client.wait(manifest, "jsonpath='{.status.state}'=ready", left)
        if self.external:
            while not self._ingress():
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self._service()['metadata']['name']}: no LoadBalancer address after "
                        f"{timeout:.0f} s; does this cluster provide LoadBalancers?"
                    )
                time.sleep(self.poll)

    def _ingress(self) -> str:
        status = self.client.get(self._service()).get("status", {})
        for ingress in status.get("loadBalancer", {}).get("ingress", []) or []:
            if ip := ingress.get("ip") or ingress.get("hostname"):
                return ip
        return ""

    @property
    def address(self) -> str:
        """The Ray client address (``ray://host:10001``) to give ``ray.init`` / the tuner."""
        if self.external:
            host = self._ingress()
            if not host:
                raise RuntimeError("the cluster has no LoadBalancer address yet: call wait()")
        else:
            host = f"{self._service()['metadata']['name']}.{self.spec.namespace}.svc.cluster.local"
        return f"ray://{host}:{m.CLIENT_PORT}"

    def delete(self) -> None:
        """Delete everything this object created, newest first; every deletion is attempted."""
        errors = []
        while self.created:
            manifest = self.created.pop()
            try:
                self.client.delete(manifest)
            except Exception as exc:  # keep deleting the rest, then report
                errors.append(f"{manifest['kind']} {manifest['metadata']['name']}: {exc}")
        if errors:
            raise RuntimeError("could not delete " + "; ".join(errors))

    def __enter__(self) -> RayCluster:
        try:
            self.create()
            self.wait()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.delete()
