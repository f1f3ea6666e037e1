"""Kubernetes manifests of a Ray cluster: a head and N GPU workers, as plain dicts.

Two forms of the same cluster (:class:`ClusterSpec`):

- :func:`ray_cluster`: one KubeRay ``RayCluster`` (``ray.io/v1``), where the operator exists;
- :func:`deployments`: head and worker ``Deployment``s, the head's ``Service`` (GCS, dashboard,
  client) and, with ``external=True``, a ``LoadBalancer`` Service for the Ray client, for clusters
  that forbid custom resources (what ray-kube did).

Credentials never appear as values: pods get them through ``envFrom: secretRef`` naming
Kubernetes Secrets (:func:`secret_from_env` builds such a Secret from this process's environment,
base64 in ``data``). The in-cluster S3 endpoint is derived from the external one through a
configured mapping (:func:`internal_endpoint`).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The one Ray pin: the cluster's images and the client (the search's driver) must run this exact
# version (Ray Client refuses a mismatch). constraints.txt pins ray to it and the images install
# with that pin; tests/flow/clusters/test_ray_version.py checks every place agrees.
RAY_VERSION = "2.60.0"
# where the training image (projects/images/train.Containerfile) is pushed: `nox -s image --
# --push ghcr.io/ml4gw/aframe` and .github/workflows/image.yml push REGISTRY/train:<version>
IMAGE_REPOSITORY = "ghcr.io/ml4gw/aframe/train"
_RAY_IMAGE = re.compile(r"^(?:docker\.io/)?rayproject/ray(?:-ml)?:(?P<tag>.+)$")
GCS_PORT, DASHBOARD_PORT, CLIENT_PORT = 6379, 8265, 10001
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MB, set by NVIDIA GPU feature discovery
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def default_image() -> str:
    """The training image of this aframe-flow's version, ``IMAGE_REPOSITORY:<version>``: the tag
    ``nox -s image`` gives the image it builds from the same checkout (the launcher and the
    image's ``aframe-train`` and Ray are of one release)."""
    from .. import __version__

    return f"{IMAGE_REPOSITORY}:{__version__}"


@dataclass
class ClusterSpec:
    """What a Ray cluster is made of.

    Args:
        name: prefix of every object (DNS-1035: lower case, digits, ``-``; at most 40 chars).
        namespace: Kubernetes namespace.
        image: container image of head and workers (it must hold ray and aframe-train);
            default :func:`default_image`.
        workers: number of worker pods.
        worker_cpus: CPUs per worker.
        worker_gpus: GPUs per worker (``nvidia.com/gpu``).
        worker_memory: memory per worker, Kubernetes units (``64Gi``).
        min_gpu_memory: minimum memory per GPU (MB) of a worker's node; 0: any node.
        head_cpus: CPUs of the head (no GPU; it schedules no trials: ``--num-cpus=0``).
        head_memory: memory of the head.
        env: plain (non-secret) environment variables of every pod.
        secrets: names of Secrets whose keys become environment variables of every pod.
        s3_endpoint: the in-cluster S3 endpoint (``AWS_ENDPOINT_URL`` of the pods); empty: none.
        volumes: extra pod volumes; ``volume_mounts`` the matching container mounts.
        shm_size: size of the memory-backed ``/dev/shm`` (dataloaders, Ray's object store).
        labels: extra labels of every object.
    """

    name: str
    namespace: str = "default"
    image: str = field(default_factory=default_image)
    workers: int = 1
    worker_cpus: int = 8
    worker_gpus: int = 1
    worker_memory: str = "32Gi"
    min_gpu_memory: int = 0
    head_cpus: int = 4
    head_memory: str = "16Gi"
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    s3_endpoint: str = ""
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    shm_size: str = "16Gi"
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or len(self.name) > 40:
            raise ValueError(
                f"cluster name {self.name!r}: use at most 40 lower-case letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        if (match := _RAY_IMAGE.match(self.image)) and not match["tag"].startswith(RAY_VERSION):
            raise ValueError(
                f"image {self.image!r} runs Ray {match['tag'].split('-')[0]}, but this aframe "
                f"pins Ray {RAY_VERSION} (the client must match the cluster): use "
                f"rayproject/ray:{RAY_VERSION}-... or an aframe image built with the pin"
            )
        if self.workers < 0 or self.worker_gpus < 0 or self.worker_cpus < 1:
            raise ValueError(
                f"workers={self.workers}, worker_gpus={self.worker_gpus}, "
                f"worker_cpus={self.worker_cpus}: counts must be >= 0 (CPUs >= 1)"
            )

    @property
    def head_service(self) -> str:
        return f"{self.name}-head"

    def object_labels(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "aframe-ray",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
            **self.labels,
        }


def internal_endpoint(external: str, mapping: Mapping[str, str]) -> str:
    """The in-cluster S3 endpoint for ``external`` (trailing ``/`` ignored), else ``external``."""
    table = {k.rstrip("/"): v for k, v in mapping.items()}
    return table.get(external.rstrip("/"), external)


def secret_from_env(
    name: str, keys: Sequence[str], namespace: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Secret holding ``keys`` from the environment (base64 ``data``; missing keys skipped)."""
    environ = os.environ if environ is None else environ
    data = {k: base64.b64encode(environ[k].encode()).decode() for k in keys if environ.get(k)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": data,
    }


def _container(spec: ClusterSpec, name: str, command: list[str], resources: dict) -> dict:
    env = dict(spec.env)
    if spec.s3_endpoint:
        env["AWS_ENDPOINT_URL"] = spec.s3_endpoint
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/bash", "-c"],
        "args": [" ".join(command)],
        "env": [{"name": k, "value": str(v)} for k, v in sorted(env.items())],
        "envFrom": [{"secretRef": {"name": s}} for s in spec.secrets],
        "resources": {"requests": resources, "limits": resources},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, *spec.volume_mounts],
    }


def _pod_template(spec: ClusterSpec, component: str, container: dict, gpu: bool) -> dict:
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}},
            *spec.volumes,
        ],
    }
    if gpu and spec.min_gpu_memory > 0:
        term = {"key": GPU_MEMORY_LABEL, "operator": "Gt", "values": [str(spec.min_gpu_memory - 1)]}
        pod["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [term]}]
                }
            }
        }
    return {"metadata": {"labels": spec.object_labels(component)}, "spec": pod}


def _head_resources(spec: ClusterSpec) -> dict:
    return {"cpu": str(spec.head_cpus), "memory": spec.head_memory}


def _worker_resources(spec: ClusterSpec) -> dict:
    res = {"cpu": str(spec.worker_cpus), "memory": spec.worker_memory}
    if spec.worker_gpus:
        res["nvidia.com/gpu"] = str(spec.worker_gpus)
    return res


def head_command(spec: ClusterSpec) -> list[str]:
    return [
        "ray", "start", "--head", f"--port={GCS_PORT}",
        f"--ray-client-server-port={CLIENT_PORT}", f"--dashboard-port={DASHBOARD_PORT}",
        "--dashboard-host=0.0.0.0", "--num-cpus=0", "--block",
    ]  # fmt: skip


def worker_command(spec: ClusterSpec) -> list[str]:
    return [
        "ray", "start", f"--address={spec.head_service}:{GCS_PORT}",
        f"--num-cpus={spec.worker_cpus}", f"--num-gpus={spec.worker_gpus}", "--block",
    ]  # fmt: skip


def deployments(spec: ClusterSpec, external: bool = False) -> list[dict[str, Any]]:
    """Head Deployment + Service, worker Deployment (and a LoadBalancer if ``external``)."""
    meta = lambda name, component: {
        "name": name,
        "namespace": spec.namespace,
        "labels": spec.object_labels(component),
    }

    def deployment(name: str, component: str, replicas: int, container: dict, gpu: bool):
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(name, component),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": spec.object_labels(component)},
                "template": _pod_template(spec, component, container, gpu),
            },
        }

    ports = [
        {"name": "gcs", "port": GCS_PORT, "targetPort": GCS_PORT},
        {"name": "dashboard", "port": DASHBOARD_PORT, "targetPort": DASHBOARD_PORT},
        {"name": "client", "port": CLIENT_PORT, "targetPort": CLIENT_PORT},
    ]
    head = _container(spec, "ray-head", head_command(spec), _head_resources(spec))
    head["ports"] = [{"name": p["name"], "containerPort": p["port"]} for p in ports]
    worker = _container(spec, "ray-worker", worker_command(spec), _worker_resources(spec))
    out = [
        deployment(f"{spec.name}-head", "head", 1, head, gpu=False),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(spec.head_service, "head"),
            "spec": {"selector": spec.object_labels("head"), "ports": ports},
        },
        deployment(f"{spec.name}-worker", "worker", spec.workers, worker, gpu=True),
    ]
    if external:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(f"{spec.name}-client", "head"),
                "spec": {
                    "type": "LoadBalancer",
                    "selector": spec.object_labels("head"),
                    # the dashboard: how the launcher sees the workers and the Ray version
                    "ports": [p for p in ports if p["name"] in ("client", "dashboard")],
                },
            }
        )
    return out


def _start_params(command: list[str]) -> dict[str, str]:
    """KubeRay's rayStartParams from a ``ray start`` command (flags without values -> "true")."""
    params = {}
    for arg in command[2:]:
        if arg in ("--head", "--block") or arg.startswith("--address"):
            continue
        key, _, value = arg[2:].partition("=")
        params[key] = value or "true"
    return params


def ray_cluster(spec: ClusterSpec, external: bool = False) -> dict[str, Any]:
    """One KubeRay ``RayCluster``: the operator makes the pods and the head Service."""
    head = _container(spec, "ray-head", [], _head_resources(spec))
    worker = _container(spec, "ray-worker", [], _worker_resources(spec))
    for c in (head, worker):  # KubeRay writes the ray start command itself
        del c["command"], c["args"]
    head["ports"] = [
        {"name": "gcs", "containerPort": GCS_PORT},
        {"name": "dashboard", "containerPort": DASHBOARD_PORT},
        {"name": "client", "containerPort": CLIENT_PORT},
    ]
    head_params = _start_params(head_command(spec))
    head_params.pop("port", None)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": spec.object_labels("cluster"),
        },
        "spec": {
            "rayVersion": RAY_VERSION,
            "headGroupSpec": {
                "serviceType": "LoadBalancer" if external else "ClusterIP",
                "rayStartParams": head_params,
                "template": _pod_template(spec, "head", head, gpu=False),
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu-workers",
                    "replicas": spec.workers,
                    "minReplicas": spec.workers,
                    "maxReplicas": spec.workers,
                    "rayStartParams": {
                        "num-cpus": str(spec.worker_cpus),
                        "num-gpus": str(spec.worker_gpus),
                    },
                    "template": _pod_template(spec, "worker", worker, gpu=True),
                }
            ],
        },
    }
