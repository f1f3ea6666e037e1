"""Ray clusters on Kubernetes: manifest builders (:mod:`.manifests`) and the lifecycle
(:mod:`.kubernetes`). Nothing here talks to a cluster until a :class:`RayCluster` is created."""

from .kubernetes import ClusterClient, Kr8sClient, RayCluster
from .manifests import (
    ClusterSpec,
    deployments,
    internal_endpoint,
    ray_cluster,
    secret_from_env,
)

__all__ = [
    "ClusterClient",
    "ClusterSpec",
    "Kr8sClient",
    "RayCluster",
    "deployments",
    "internal_endpoint",
    "ray_cluster",
    "secret_from_env",
]
