"""The lifecycle of a Ray cluster on Kubernetes: create, wait until Ray answers, address, delete.

:class:`RayCluster` works through a client (:class:`~.kr8s_client.Kr8sClient` by default, the
only code that talks to a cluster). How it waits:

- ``kuberay``: the RayCluster's ``status.state`` is ``ready`` (or its ``HeadPodReady`` and
  ``RayClusterProvisioned`` conditions are ``True``, KubeRay >= 1.2); a new object has no
  ``status`` yet, which counts as not ready. ``state: failed`` ends the wait at once.
- ``deployments``: every Deployment has all its replicas ready (``readyReplicas`` of the current
  generation; ``ReplicaFailure`` or ``ProgressDeadlineExceeded`` end the wait).
- ``external``: the LoadBalancer Service has an address.
- both: meanwhile the cluster's pods are listed; a container that cannot pull its image
  (``ErrImagePull``, ``ImagePullBackOff``, ``InvalidImageName``) ends the wait with one message
  naming the image (for the default image: how to build and push it). Then Ray itself answers:
  the client port accepts connections, and the head's dashboard reports the Ray pin and the
  expected number of workers (:func:`~.ray_wait.wait_for_ray`; a cluster of another Ray version
  is refused).

    cluster = RayCluster(spec, backend="deployments")
    with cluster:                      # create + wait; delete on exit, also after an error
        tune(address=cluster.address)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from . import manifests as m
from .kr8s_client import ClusterError, Kr8sClient, Readiness
from .ray_wait import wait_for_ray

logger = logging.getLogger(__name__)

__all__ = [
    "ClusterClient",
    "ClusterError",
    "Kr8sClient",
    "RayCluster",
    "Readiness",
    "deployment_readiness",
    "raycluster_readiness",
]


class ClusterClient(Protocol):
    """What :class:`RayCluster` needs from a Kubernetes API."""

    def create(self, manifest: dict[str, Any]) -> None: ...
    def wait(
        self,
        manifest: dict[str, Any],
        test: Callable[[dict], Readiness],
        what: str,
        timeout: float,
        pods: tuple[str, Callable[[list[dict]], str]] | None = None,
    ) -> None: ...
    def get(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    def delete(self, manifest: dict[str, Any]) -> None: ...


def _conditions(raw: dict) -> dict[str, dict]:
    return {c.get("type"): c for c in (raw.get("status") or {}).get("conditions") or []}


def raycluster_readiness(raw: dict) -> Readiness:
    """KubeRay's RayCluster status: ``state`` (v1.0+) and conditions (v1.2+)."""
    status = raw.get("status") or {}
    if not status:
        return Readiness(False, "no status yet (the KubeRay operator has not reconciled it)")
    cond = _conditions(raw)
    state = status.get("state", "")
    parts = [f"state={state or '(none)'}"]
    if "readyWorkerReplicas" in status or "desiredWorkerReplicas" in status:
        parts.append(f"workers ready {status.get('readyWorkerReplicas', 0)}/"
                     f"{status.get('desiredWorkerReplicas', '?')}")  # fmt: skip
    parts += [f"{t}={c.get('status')}" + (f" ({c['reason']}: {c.get('message', '')})"
              if c.get("reason") and c.get("status") != "True" else "")
              for t, c in sorted(cond.items())]  # fmt: skip
    seen = ", ".join(parts)
    if state == "failed":
        return Readiness(False, seen, failed=status.get("reason") or seen)
    up = all(cond.get(t, {}).get("status") == "True"
             for t in ("HeadPodReady", "RayClusterProvisioned"))  # fmt: skip
    return Readiness(state == "ready" or up, seen)


def deployment_readiness(raw: dict) -> Readiness:
    """All replicas of the current generation ready; a failure the controller reports ends it."""
    want = (raw.get("spec") or {}).get("replicas", 1)
    status = raw.get("status") or {}
    cond = _conditions(raw)
    fresh = status.get("observedGeneration", 0) >= raw["metadata"].get("generation", 1)
    ready = status.get("readyReplicas", 0) if fresh else 0
    seen = f"{ready}/{want} replicas ready" + ("" if fresh else " (not yet observed)")
    for kind in ("ReplicaFailure", "Progressing"):
        c = cond.get(kind, {})
        bad = (kind == "ReplicaFailure" and c.get("status") == "True") or (
            kind == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        )
        if bad:
            return Readiness(False, seen, failed=f"{c.get('reason')}: {c.get('message', '')}")
    return Readiness(fresh and ready >= want, seen)


PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def pull_failure(pods: list[dict]) -> tuple[str, str, str] | None:
    """``(pod, image, "REASON: message")`` of the first container of ``pods`` that waits because
    its image cannot be pulled; ``None`` when there is none."""
    for pod in pods:
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in PULL_FAILURES:
                text = f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
                return pod["metadata"]["name"], cs.get("image", ""), text
    return None


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
        timeout: seconds :meth:`wait` (and ``with``) waits for the cluster to be ready.
        ray_wait: called as ``ray_wait(address, workers, timeout)`` once the Kubernetes objects
            are ready, to wait until Ray answers (and check its version); ``None``: skip that.
    """

    def __init__(
        self,
        spec: m.ClusterSpec,
        backend: str = "kuberay",
        external: bool = False,
        secrets: list[dict[str, Any]] | None = None,
        client: ClusterClient | None = None,
        poll: float = 2.0,
        timeout: float = 900.0,
        ray_wait: Callable[[str, int, float], Any] | None = wait_for_ray,
    ):
        if backend not in ("kuberay", "deployments"):
            raise ValueError(f"backend={backend!r}: use 'kuberay' or 'deployments'")
        self.spec, self.backend, self.external = spec, backend, external
        self.secrets = list(secrets or [])
        self._client = client
        self.poll = poll
        self.ray_wait = ray_wait
        self.timeout = timeout
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
        if self.backend == "kuberay" and hasattr(self.client, "require_kind"):
            self.client.require_kind(
                "ray.io/v1", "rayclusters",
                "install the KubeRay operator, or use [luigi_kubernetes] backend = deployments",
            )  # fmt: skip
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

    def wait(self, timeout: float | None = None) -> None:
        """Block until the head and every worker are ready (see the module's docstring).

        Raises:
            TimeoutError: naming the object, what was waited for and what was seen last.
            ClusterError: when the cluster reports a failure that waiting will not heal.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        left = lambda: max(1.0, deadline - time.monotonic())  # noqa: E731
        pods = (f"app.kubernetes.io/instance={self.spec.name}", self.image_problem)
        for manifest in self.created:
            if manifest["kind"] == "Deployment":
                replicas = manifest["spec"]["replicas"]
                what = f"{replicas}/{replicas} replicas ready"
                self.client.wait(manifest, deployment_readiness, what, left(), pods=pods)
            elif manifest["kind"] == "RayCluster":
                what = "status.state=ready (head and workers running)"
                self.client.wait(manifest, raycluster_readiness, what, left(), pods=pods)
        if self.external:
            while not self._ingress():
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self._service()['metadata']['name']}: no LoadBalancer address after "
                        f"{timeout:.0f} s; does this cluster provide LoadBalancers?"
                    )
                time.sleep(self.poll)
        if self.ray_wait is not None:
            self.ray_wait(self.address, self.spec.workers, left())

    def image_problem(self, pods: list[dict]) -> str:
        """One message when a pod of this cluster cannot pull its image, else ``""``."""
        found = pull_failure(pods)
        if found is None:
            return ""
        pod, image, reason = found
        image = image or self.spec.image
        text = f"the cluster's pods cannot pull the image {image} (pod {pod}: {reason}); "
        if image == m.default_image():
            return text + (
                "it is this aframe-flow's default image, which has to be built and pushed before "
                "a cluster can use it: `nox -s image -- --push REGISTRY` (e.g. ghcr.io/ml4gw/"
                "aframe), then set [luigi_kubernetes] image (or AFRAME_RAY_IMAGE) to the image "
                "it pushed; see docs/howto/container-image.md"
            )
        return text + (
            "check the name ([luigi_kubernetes] image / AFRAME_RAY_IMAGE) and that the cluster "
            "may read the registry (an imagePullSecret for a private one)"
        )

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
        """Delete everything this object created, newest first, each until it is gone; every
        deletion is attempted."""
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
            try:
                self.delete()
            except Exception as exc:  # the first error is the one to report
                logger.error("%s", exc)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.delete()
