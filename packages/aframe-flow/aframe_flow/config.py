"""Settings shared by every task, as ``luigi.Config`` sections with environment defaults.

Each class is a section of the luigi configuration: in a law config file it is written
``[luigi_<name>]`` (e.g. ``[luigi_wandb] project: aframe``); an environment variable gives the
default where one is named. Values are read when a task runs, never at import.
"""

from __future__ import annotations

import os

import luigi

from .parameters import PathParameter


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


class paths(luigi.Config):  # noqa: N801 - luigi config sections are named by their class
    """Where data, runs, exported models and container images live."""

    base_dir = PathParameter(
        default=_env("AFRAME_BASE_DIR", "aframe-runs"),
        description="root of data/, run/, export/, tune/ and eval/ when a task's own directory "
        "is not given (env AFRAME_BASE_DIR; default ./aframe-runs); local path or "
        "s3://bucket/prefix; the tasks' outputs below it are keyed by their parameters",
    )
    container_root = PathParameter(
        default=_env("AFRAME_CONTAINER_ROOT"),
        description="directory holding data.sif and train.sif; an --image given as a bare name is "
        "looked up there (env AFRAME_CONTAINER_ROOT)",
    )


class wandb_settings(luigi.Config):  # noqa: N801
    """Weights & Biases defaults for ``--use-wandb`` (the API key stays in the environment)."""

    project = luigi.Parameter(
        default=_env("WANDB_PROJECT", "aframe"), description="W&B project (env WANDB_PROJECT)"
    )
    entity = luigi.Parameter(
        default=_env("WANDB_ENTITY"), description="W&B entity/team; empty: the user's default"
    )
    group = luigi.Parameter(
        default=_env("WANDB_RUN_GROUP"), description="W&B group of runs (env WANDB_RUN_GROUP)"
    )
    tags = luigi.Parameter(
        default=_env("WANDB_TAGS"), description="comma-separated W&B tags (env WANDB_TAGS)"
    )
    api_key_secret = luigi.Parameter(
        default=_env("AFRAME_WANDB_SECRET", "wandb-credentials"),
        description="name of the Kubernetes Secret holding WANDB_API_KEY",
    )


class s3(luigi.Config):  # noqa: N801
    """S3 endpoint and the credentials' Kubernetes Secret (never the keys themselves)."""

    endpoint_url = luigi.Parameter(
        default=_env("AWS_ENDPOINT_URL"), description="external S3 endpoint (env AWS_ENDPOINT_URL)"
    )
    internal_endpoints = luigi.DictParameter(
        default={},
        description='JSON map external endpoint -> in-cluster endpoint, e.g. {"https://s3-west.'
        'nrp-nautilus.io": "http://rook-ceph-rgw-centrals3.rook-central"}',
    )
    credentials_secret = luigi.Parameter(
        default=_env("AFRAME_S3_SECRET", "s3-credentials"),
        description="name of the Kubernetes Secret holding AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
    )


class k8s(luigi.Config):  # noqa: N801
    """Where Ray clusters are started: the ``[kubernetes]`` section of the law config.

    The class is not named ``kubernetes``: luigi makes a ``--<class>-<param>`` flag of every
    config parameter, and ``--kubernetes-namespace`` & co. made the tasks' own ``--kubernetes``
    flag an ambiguous abbreviation on the command line. Its flags are ``--k8s-namespace`` etc.;
    its settings are read from ``[k8s]`` or, as documented, ``[kubernetes]``.
    """

    namespace = luigi.Parameter(
        config_path=dict(section="kubernetes", name="namespace"),
        default=_env("AFRAME_K8S_NAMESPACE", "default"),
        description="Kubernetes namespace (env AFRAME_K8S_NAMESPACE)",
    )
    backend = luigi.ChoiceParameter(
        config_path=dict(section="kubernetes", name="backend"),
        default="kuberay",
        choices=["kuberay", "deployments"],
        description="kuberay: a RayCluster custom resource; deployments: plain Deployments + "
        "Services, for clusters that forbid custom resources",
    )
    image = luigi.Parameter(
        config_path=dict(section="kubernetes", name="image"),
        default=_env("AFRAME_RAY_IMAGE"),
        description="container image of head and workers (env AFRAME_RAY_IMAGE); empty: "
        "ghcr.io/ml4gw/aframe/train:<this aframe-flow's version>, which `nox -s image -- --push "
        "REGISTRY` builds and pushes (see docs/howto/container-image.md)",
    )


class ray_head(luigi.Config):  # noqa: N801
    """Resources of the Ray head pod."""

    cpus = luigi.IntParameter(default=8, description="CPUs of the head")
    memory = luigi.Parameter(default="32Gi", description="memory of the head (Kubernetes units)")


class ray_worker(luigi.Config):  # noqa: N801
    """Resources of each Ray worker pod."""

    replicas = luigi.IntParameter(default=2, description="number of GPU workers")
    cpus = luigi.IntParameter(default=16, description="CPUs per worker")
    gpus = luigi.IntParameter(default=2, description="GPUs per worker")
    memory = luigi.Parameter(default="64Gi", description="memory per worker (Kubernetes units)")
    min_gpu_memory = luigi.IntParameter(
        default=15000,
        description="minimum memory per GPU (MB) of the nodes workers may run on "
        "(node label nvidia.com/gpu.memory); 0: any",
    )
