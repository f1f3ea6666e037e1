"""Ray-on-Kubernetes manifests (validated offline) and the create/wait/delete lifecycle.

Every manifest is checked with kubernetes-validate (strict: unknown fields fail) against the
Kubernetes 1.30 schema. The KubeRay ``RayCluster`` is a custom resource that schema lacks, so its
head and worker pod templates are validated as core/v1 ``PodTemplate``s and its top level against
the fields of the KubeRay v1 CRD that we use (below). No cluster runs here: the lifecycle runs
against :class:`RecordingClient`, a fake API that records calls (the one fake in these tests).
"""

from __future__ import annotations

import base64
import json

import jsonschema
import kubernetes_validate
import pytest

from aframe_flow.clusters import (
    ClusterSpec,
    RayCluster,
    deployments,
    internal_endpoint,
    ray_cluster,
    secret_from_env,
)

K8S = "1.30.0"
SECRETS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY": "sup3r-s3cret/key",
           "WANDB_API_KEY": "0123456789abcdef-wandb"}  # fmt: skip

# the KubeRay ray.io/v1 RayCluster fields this project emits (from the CRD's openAPIV3Schema)
RAYCLUSTER_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["headGroupSpec"],
            "additionalProperties": False,
            "properties": {
                "rayVersion": {"type": "string"},
                "headGroupSpec": {
                    "type": "object",
                    "required": ["template"],
                    "additionalProperties": False,
                    "properties": {
                        "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                        "rayStartParams": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "template": {"type": "object"},
                    },
                },
                "workerGroupSpecs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["groupName", "template"],
                        "additionalProperties": False,
                        "properties": {
                            "groupName": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 0},
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 0},
                            "rayStartParams": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "template": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}


def spec(**kwargs) -> ClusterSpec:
    defaults = dict(
        name="aframe-tune",
        namespace="bbhnet",
        image="ghcr.io/ml4gw/aframe/train:0.1.0",
        workers=3,
        worker_cpus=12,
        worker_gpus=2,
        worker_memory="90Gi",
        min_gpu_memory=15000,
        secrets=["s3-credentials", "wandb-credentials"],
        s3_endpoint=internal_endpoint(
            "https://s3-west.nrp-nautilus.io/",
            {"https://s3-west.nrp-nautilus.io": "http://rook-ceph-rgw-nautiluss3.rook"},
        ),
        env={"WANDB_PROJECT": "aframe"},
    )
    return ClusterSpec(**{**defaults, **kwargs})


def validate(manifest):
    if manifest["kind"] == "RayCluster":
        jsonschema.validate(manifest, RAYCLUSTER_SCHEMA)
        groups = [manifest["spec"]["headGroupSpec"], *manifest["spec"]["workerGroupSpecs"]]
        for i, group in enumerate(groups):
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "PodTemplate",
                 "metadata": {"name": f"group-{i}"}, "template": group["template"]},
                K8S, strict=True,
            )  # fmt: skip
    else:
        kubernetes_validate.validate(manifest, K8S, strict=True)


def all_manifests():
    s = spec()
    secrets = [secret_from_env("s3-credentials", list(SECRETS)[:2], s.namespace, SECRETS)]
    return [
        *deployments(s),
        *deployments(s, external=True),
        ray_cluster(s),
        ray_cluster(s, external=True),
        *secrets,
    ]


@pytest.mark.parametrize("manifest", all_manifests(), ids=lambda m: m["kind"])
def test_every_manifest_validates_against_the_kubernetes_schema(manifest):
    validate(manifest)


def test_an_invalid_manifest_is_caught():
    bad = deployments(spec())[0]
    bad["spec"]["template"]["spec"]["containers"][0]["resources"]["request"] = {"cpu": "1"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)


def test_no_secret_value_appears_in_any_workload_manifest():
    workloads = [m for m in all_manifests() if m["kind"] != "Secret"]
    text = json.dumps(workloads)
    assert not any(v in text for v in SECRETS.values())
    for m in workloads:
        pods = (
            [m["spec"]["headGroupSpec"], *m["spec"]["workerGroupSpecs"]]
            if m["kind"] == "RayCluster"
            else [m["spec"]]
            if m["kind"] == "Deployment"
            else []
        )
        for pod in pods:
            for c in pod["template"]["spec"]["containers"]:
                names = {e["name"] for e in c["env"]}
                assert not names & set(SECRETS), "credentials must come from secretRef"
                assert c["envFrom"] == [
                    {"secretRef": {"name": "s3-credentials"}},
                    {"secretRef": {"name": "wandb-credentials"}},
                ]
    # the Secret itself holds them base64-encoded, never as plain strings
    secret = secret_from_env("s3-credentials", list(SECRETS)[:2], "bbhnet", SECRETS)
    assert "stringData" not in secret and SECRETS["AWS_SECRET_ACCESS_KEY"] not in json.dumps(secret)
    assert (
        base64.b64decode(secret["data"]["AWS_SECRET_ACCESS_KEY"]).decode()
        == (SECRETS["AWS_SECRET_ACCESS_KEY"])
    )


def test_resources_gpu_memory_affinity_and_internal_s3_endpoint():
    head, service, worker = deployments(spec())
    pod = worker["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"] == {"cpu": "12", "memory": "90Gi", "nvidia.com/gpu": "2"}
    assert "--num-gpus=2" in c["args"][0] and "--address=aframe-tune-head:6379" in c["args"][0]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expr = term["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert expr == {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["14999"]}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://rook-ceph-rgw-nautiluss3.rook"
    assert worker["spec"]["replicas"] == 3
    assert "affinity" not in head["spec"]["template"]["spec"]
    assert {p["port"] for p in service["spec"]["ports"]} == {6379, 8265, 10001}
    rc = ray_cluster(spec())["spec"]["workerGroupSpecs"][0]
    assert rc["replicas"] == 3 and rc["rayStartParams"] == {"num-cpus": "12", "num-gpus": "2"}
    assert internal_endpoint("https://elsewhere", {"https://a": "http://b"}) == "https://elsewhere"


def test_bad_cluster_names_are_refused():
    with pytest.raises(ValueError, match="cluster name 'Aframe_Tune'"):
        spec(name="Aframe_Tune")


class RecordingClient:
    """A fake Kubernetes API: records every call; LoadBalancer IPs appear after some polls."""

    def __init__(self, fail_wait: bool = False, ip_after: int = 2):
        self.calls: list[tuple[str, str, str]] = []
        self.fail_wait, self.ip_after, self.gets = fail_wait, ip_after, 0

    def create(self, manifest):
        self.calls.append(("create", manifest["kind"], manifest["metadata"]["name"]))

    def wait(self, manifest, condition, timeout):
        self.calls.append(("wait", manifest["kind"], condition))
        if self.fail_wait:
            raise TimeoutError("pods never became ready")

    def get(self, manifest):
        self.calls.append(("get", manifest["kind"], manifest["metadata"]["name"]))
        self.gets += 1
        ingress = [{"ip": "203.0.113.7"}] if self.gets > self.ip_after else []
        return {"status": {"loadBalancer": {"ingress": ingress}}}

    def delete(self, manifest):
        self.calls.append(("delete", manifest["kind"], manifest["metadata"]["name"]))


def test_deployments_lifecycle_create_wait_address_delete():
    client = RecordingClient()
    secret = secret_from_env("s3-credentials", list(SECRETS)[:2], "bbhnet", SECRETS)
    cluster = RayCluster(spec(), backend="deployments", external=True, secrets=[secret],
                         client=client, poll=0.0)  # fmt: skip
    with cluster:
        assert cluster.address == "ray://203.0.113.7:10001"
        created = [c for c in client.calls if c[0] == "create"]
        assert created == [
            ("create", "Secret", "s3-credentials"),
            ("create", "Deployment", "aframe-tune-head"),
            ("create", "Service", "aframe-tune-head"),
            ("create", "Deployment", "aframe-tune-worker"),
            ("create", "Service", "aframe-tune-client"),
        ]
        waits = [c for c in client.calls if c[0] == "wait"]
        assert waits == [("wait", "Deployment", "condition=Available")] * 2
    deleted = [c[1:] for c in client.calls if c[0] == "delete"]
    assert deleted == [c[1:] for c in reversed(created)]
    assert cluster.created == []


def test_kuberay_lifecycle_and_in_cluster_address():
    client = RecordingClient()
    cluster = RayCluster(spec(), backend="kuberay", client=client)
    with cluster:
        assert cluster.address == "ray://aframe-tune-head-svc.bbhnet.svc.cluster.local:10001"
    assert client.calls == [
        ("create", "RayCluster", "aframe-tune"),
        ("wait", "RayCluster", "jsonpath='{.status.state}'=ready"),
        ("delete", "RayCluster", "aframe-tune"),
    ]


def test_everything_is_deleted_when_waiting_fails_or_the_work_fails():
    client = RecordingClient(fail_wait=True)
    cluster = RayCluster(spec(), backend="deployments", client=client)
    with pytest.raises(TimeoutError):
        with cluster:
            pass
    assert sum(c[0] == "delete" for c in client.calls) == 3 and cluster.created == []

    client = RecordingClient()
    cluster = RayCluster(spec(), backend="kuberay", client=client)
    with pytest.raises(RuntimeError, match="trial crashed"):
        with cluster:
            raise RuntimeError("trial crashed")
    assert client.calls[-1] == ("delete", "RayCluster", "aframe-tune")


def test_cluster_task_reads_config_applies_the_hook_and_cleans_up_on_failure(monkeypatch):
    import luigi

    from aframe_flow.base import RayClusterTask

    class Configured(RayClusterTask):
        def configure_cluster(self, spec):
            spec.env["EXTRA"] = "1"
            spec.volumes.append({"name": "cache", "emptyDir": {}})
            return spec

        def run(self):  # what Tune will do: work inside `with self.ray_cluster():`
            pass

    cfg = luigi.configuration.get_config()
    cfg.set("ray_worker", "replicas", "5")
    cfg.set("kubernetes", "backend", "deployments")
    try:
        for key, value in SECRETS.items():
            monkeypatch.setenv(key, value)
        task = Configured(cluster_name="flow-test", create_secrets=True)
        client = RecordingClient()
        cluster = task.ray_cluster(client=client)
    finally:
        cfg.remove_option("ray_worker", "replicas")
        cfg.remove_option("kubernetes", "backend")
    assert cluster.spec.workers == 5 and cluster.spec.env == {"EXTRA": "1"}
    manifests = cluster.manifests()
    for manifest in manifests:
        validate(manifest)
    workloads = json.dumps([m for m in manifests if m["kind"] != "Secret"])
    assert not any(v in workloads for v in SECRETS.values())
    cluster.create()
    task.on_failure(RuntimeError("boom"))
    assert cluster.created == [] and client.calls[-1][0] == "delete"
