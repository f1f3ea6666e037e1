"""Ray clusters on Kubernetes: manifest builders (:mod:`.manifests`), the lifecycle
(:mod:`.kubernetes`), the API client (:mod:`.kr8s_client`) and the wait for Ray itself
(:mod:`.ray_wait`). Nothing here talks to a cluster until a :class:`RayCluster` is created."""

from .kr8s_client import ClusterError, Kr8sClient, Readiness
from .kubernetes import (
    ClusterClient,
    RayCluster,
    deployment_readiness,
    raycluster_readiness,
)
from .manifests import (
    ClusterSpec,
    default_image,
    deployments,
    internal_endpoint,
    ray_cluster,
    secret_from_env,
)
from .ray_wait import RayVersionError, wait_for_ray

__all__ = [
    "ClusterClient",
    "ClusterError",
    "ClusterSpec",
    "Kr8sClient",
    "RayCluster",
    "RayVersionError",
    "Readiness",
    "default_image",
    "deployment_readiness",
    "deployments",
    "internal_endpoint",
    "ray_cluster",
    "raycluster_readiness",
    "secret_from_env",
    "wait_for_ray",
]
