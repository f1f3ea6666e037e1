"""Ray-on-Kubernetes manifests (validated offline) and the create/wait/delete lifecycle.

Every manifest is checked with kubernetes-validate (strict: unknown fields fail) against the
Kubernetes 1.30 schema. The KubeRay ``RayCluster`` is a custom resource that schema lacks, so its
head and worker pod templates are validated as core/v1 ``PodTemplate``s and its top level against
the fields of the KubeRay v1 CRD that we use (below). No cluster runs here: the lifecycle runs the
real kr8s client against a Kubernetes API server of the tests' own (k8s_api.py) that plays a
cluster's state changes, API errors and slow deletions.
"""

from __future__ import annotations

import base64
import json
import threading
import time

import jsonschema
import kubernetes_validate
import pytest
from helpers.k8s_api import RUNNING, Step, deployment_up
from helpers.k8s_api import pod as make_pod

from aframe_flow.clusters import (
    ClusterError,
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


HEAD_NOT_READY = {"type": "HeadPodReady", "status": "False", "reason": "ContainersNotReady",
                  "message": "pulling image"}  # fmt: skip
PENDING = {"status": {"state": "pending", "desiredWorkerReplicas": 3, "readyWorkerReplicas": 0,
                      "conditions": [HEAD_NOT_READY]}}  # fmt: skip


def kuberay(kube, **kwargs) -> RayCluster:
    server, client = kube
    server.finalizers["RayCluster"] = ["ray.io/gcs-ft-redis-cleanup-finalizer"]
    kwargs.setdefault("ray_wait", None)  # no Ray behind the tests' API server
    return RayCluster(spec(), backend="kuberay", client=client, **kwargs)


def test_kuberay_slow_start_no_status_then_pending_then_ready(kube):
    """The real kr8s client creates, lists, watches and deletes through the REST protocol."""
    server, _ = kube
    server.delete_delay = 0.5  # the operator's finalizer takes its time
    server.timeline("RayCluster", "aframe-tune",
                    [Step(0.4, PENDING), Step(0.6, {"status": RUNNING})])  # fmt: skip
    cluster = kuberay(kube)
    start = time.monotonic()
    with cluster:
        assert time.monotonic() - start >= 1.0  # it waited through "no status" and "pending"
        assert cluster.address == "ray://aframe-tune-head-svc.bbhnet.svc.cluster.local:10001"
        obj = server.objects["ray.io/v1", "rayclusters", "bbhnet", "aframe-tune"]
        assert (
            obj["status"]["state"] == "ready"
            and obj["spec"]["workerGroupSpecs"][0]["replicas"] == 3
        )
    # discovery found the CRD; the object was created once, then listed and watched from the
    # resourceVersion of that read
    assert server.calls("GET", "/apis/ray.io/v1")
    assert len(server.calls("POST", "/rayclusters")) == 1
    watches = [q for _, _, q in server.calls("GET", "/namespaces/bbhnet/rayclusters")
               if q.get("watch") == ["true"]]  # fmt: skip
    assert watches and all(q["resourceVersion"][0].isdigit() for q in watches)
    assert watches[0]["fieldSelector"] == ["metadata.name=aframe-tune"]
    # deleted in the foreground, and waited for until the finalizer let it go
    ((_, path, _, body),) = [r for r in server.requests if r[0] == "DELETE"]
    assert path.endswith("/rayclusters/aframe-tune") and body == {"propagationPolicy": "Foreground"}
    assert not server.objects and cluster.created == []


def test_kuberay_never_ready_times_out_naming_the_cluster_and_what_it_waited_for(kube):
    server, _ = kube
    server.timeline("RayCluster", "aframe-tune", [Step(0.2, PENDING)])
    cluster = kuberay(kube)
    cluster.create()
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        cluster.wait(timeout=1.5)
    assert time.monotonic() - start < 5
    text = str(info.value)
    for words in ("RayCluster bbhnet/aframe-tune", "not ready after 1.5 s", "status.state=ready",
                  "state=pending", "HeadPodReady=False (ContainersNotReady: pulling image)",
                  "kubectl -n bbhnet describe raycluster aframe-tune"):  # fmt: skip
        assert words in text, text
    cluster.delete()
    assert not server.objects


def test_a_new_object_without_status_is_not_ready_and_does_not_crash_the_wait(kube):
    """kr8s's ``jsonpath='{.status.state}'=ready`` raised ValueError here (no status yet)."""
    server, _ = kube
    cluster = kuberay(kube, timeout=1.0)
    with pytest.raises(TimeoutError, match="no status yet"):
        with cluster:
            pass
    assert not server.objects


def test_api_errors_and_an_expired_watch_mid_wait_are_retried(kube):
    server, _ = kube
    server.timeline("RayCluster", "aframe-tune",
                    [Step(0.3, PENDING), Step(0.8, {"status": RUNNING})])  # fmt: skip
    server.fail("POST", "/rayclusters$", 500, times=1)  # the first create: an internal error
    server.fail("GET", "/rayclusters/aframe-tune$", 500, times=2)
    server.fail("GET", "/rayclusters$", 503, times=1, query="watch=true")
    server.expire_watches = 1  # then a watch whose version was compacted: 410 Gone
    with kuberay(kube):
        pass
    assert all(f.times == 0 for f in server.faults) and server.expire_watches == 0
    assert len(server.calls("POST", "/rayclusters")) == 2  # retried once
    assert len(server.calls("GET", "/rayclusters/aframe-tune")) >= 3  # listed again after each
    assert not server.objects


def test_kuberay_failed_state_ends_the_wait_at_once_and_deletes(kube):
    server, _ = kube
    failed = {"status": {"state": "failed", "reason": "head pod crash-looping: ImportError"}}
    server.timeline("RayCluster", "aframe-tune", [Step(0.2, PENDING), Step(0.2, failed)])
    start = time.monotonic()
    with pytest.raises(ClusterError, match="failed while waiting.*head pod crash-looping"):
        with kuberay(kube):
            pass
    assert time.monotonic() - start < 5 and not server.objects


def test_missing_kuberay_crd_and_leftover_objects_are_clear_errors(kube):
    server, client = kube
    server.kuberay = False
    with pytest.raises(ClusterError, match="does not serve rayclusters.*install the KubeRay"):
        with RayCluster(spec(), backend="kuberay", client=client):
            pass
    assert not server.calls("POST")
    # an object of the same name is already there: not ours, so it is left alone
    server.kuberay = True
    server.create(("ray.io/v1", "rayclusters", "bbhnet", "aframe-tune"), ray_cluster(spec()))
    with pytest.raises(ClusterError, match="already exists.*kubectl -n bbhnet delete raycluster"):
        with RayCluster(spec(), backend="kuberay", client=client):
            pass
    assert list(server.objects) == [("ray.io/v1", "rayclusters", "bbhnet", "aframe-tune")]


def test_deployments_lifecycle_waits_for_pods_the_loadbalancer_and_ray(kube):
    server, client = kube
    for name in ("aframe-tune-head", "aframe-tune-worker"):
        server.timeline("Deployment", name, [Step(0.1, {"status": {"observedGeneration": 1}}),
                                             Step(0.3, deployment_up)])  # fmt: skip
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}
    server.timeline("Service", "aframe-tune-client", [Step(0.5, ingress)])
    asked = []
    secret = secret_from_env("s3-credentials", list(SECRETS)[:2], "bbhnet", SECRETS)
    cluster = RayCluster(spec(), backend="deployments", external=True, secrets=[secret],
                         client=client, poll=0.1,
                         ray_wait=lambda *args: asked.append(args))  # fmt: skip
    with cluster:
        assert cluster.address == "ray://203.0.113.7:10001"
        created = [(p.split("/")[-1], b["metadata"]["name"]) for m, p, _, b in server.requests
                   if m == "POST"]  # fmt: skip
        assert created == [("secrets", "s3-credentials"), ("deployments", "aframe-tune-head"),
                           ("services", "aframe-tune-head"), ("deployments", "aframe-tune-worker"),
                           ("services", "aframe-tune-client")]  # fmt: skip
        # Ray was asked last, at the LoadBalancer's address, for the 3 workers
        ((address, workers, timeout),) = asked
        assert address == "ray://203.0.113.7:10001" and workers == 3 and timeout > 0
        stored = server.objects["v1", "secrets", "bbhnet", "s3-credentials"]
        assert stored["data"] == secret["data"]
    deleted = [p.split("/")[-1] for m, p, _, _ in server.requests if m == "DELETE"]
    assert deleted == [name for _, name in reversed(created)]
    assert not server.objects and cluster.created == []


def test_failing_pods_end_the_wait_and_everything_is_deleted(kube):
    server, client = kube
    server.timeline("Deployment", "aframe-tune-head", [Step(0.1, deployment_up)])
    quota = {"status": {"observedGeneration": 1, "readyReplicas": 0, "conditions": [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": 'pods "aframe-tune-worker-x" is forbidden: exceeded quota'}]}}  # fmt: skip
    server.timeline("Deployment", "aframe-tune-worker", [Step(0.3, quota)])
    server.delete_delay = 0.3
    server.finalizers["Deployment"] = ["example.com/cleanup"]
    cluster = RayCluster(spec(), backend="deployments", client=client, ray_wait=None)
    with pytest.raises(ClusterError, match="aframe-tune-worker failed.*exceeded quota"):
        with cluster:
            pass
    assert not server.objects and cluster.created == []


PULL = {"reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "ghcr.io/ml4gw/aframe/train:0.1.0"'}  # fmt: skip


def test_the_default_image_not_pushed_yet_is_one_message_saying_how_to_build_and_push_it(kube):
    """Neither a Deployment's nor a RayCluster's status says that an image cannot be pulled:
    the pods' container statuses do (the kubelet's ErrImagePull, then ImagePullBackOff)."""
    from aframe_flow.clusters.manifests import default_image

    server, client = kube
    client.pod_poll = 0.1
    image = default_image()
    assert image == spec().image  # the tests' spec names this aframe-flow's default image
    server.timeline("Deployment", "aframe-tune-head", [Step(0.1, {"status": {
        "observedGeneration": 1, "replicas": 1, "readyReplicas": 0}})])  # fmt: skip
    threading.Timer(0.4, server.add_pod, args=("bbhnet", make_pod(
        "aframe-tune-head-7d9c-x2x4p", "aframe-tune", image, PULL))).start()  # fmt: skip
    cluster = RayCluster(spec(), backend="deployments", client=client, ray_wait=None)
    start = time.monotonic()
    with pytest.raises(ClusterError) as info:
        with cluster:
            pass
    assert time.monotonic() - start < 5  # not the 900 s of the wait's timeout
    text = str(info.value)
    for words in (f"cannot pull the image {image}", "pod aframe-tune-head-7d9c-x2x4p",
                  "ImagePullBackOff: Back-off pulling image", "nox -s image -- --push REGISTRY",
                  "AFRAME_RAY_IMAGE", "docs/howto/container-image.md"):  # fmt: skip
        assert words in text, text
    # the pods were listed by the cluster's label, and everything was deleted
    lists = [q for _, _, q in server.calls("GET", "/api/v1/namespaces/bbhnet/pods")]
    assert lists and lists[0]["labelSelector"] == ["app.kubernetes.io/instance=aframe-tune"]
    assert not [k for k in server.objects if k[1] != "pods"] and cluster.created == []


def test_a_pull_failure_of_a_chosen_image_names_it_and_kuberay_waits_for_the_pods_too(kube):
    server, client = kube
    client.pod_poll = 0.1
    image = "registry.example.org/me/aframe:dev"
    server.timeline("RayCluster", "aframe-tune", [Step(0.1, PENDING)])
    # a healthy head and a worker whose image name does not resolve
    threading.Timer(0.2, server.add_pod, args=("bbhnet", make_pod(
        "aframe-tune-head-abc", "aframe-tune", image))).start()  # fmt: skip
    threading.Timer(0.3, server.add_pod, args=("bbhnet", make_pod(
        "aframe-tune-gpu-workers-xyz", "aframe-tune", image,
        {"reason": "ErrImagePull", "message": "manifest unknown"}))).start()  # fmt: skip
    cluster = RayCluster(spec(image=image), backend="kuberay", client=client, ray_wait=None)
    with pytest.raises(ClusterError) as info:
        with cluster:
            pass
    text = str(info.value)
    assert f"cannot pull the image {image}" in text and "aframe-tune-gpu-workers-xyz" in text
    assert "ErrImagePull: manifest unknown" in text and "imagePullSecret" in text
    assert "nox -s image" not in text  # not the default image: no build instructions


def test_ray_is_asked_once_the_kuberay_cluster_is_ready_and_running_pods_are_no_failure(kube):
    """Both backends end the wait with Ray's own answer (the Ray version check among it)."""
    server, client = kube
    client.pod_poll = 0.05
    server.timeline("RayCluster", "aframe-tune", [Step(0.5, {"status": RUNNING})])
    server.add_pod("bbhnet", make_pod("aframe-tune-head-abc", "aframe-tune", spec().image))
    asked = []
    with kuberay(kube, ray_wait=lambda *args: asked.append(args)):
        pass
    ((address, workers, timeout),) = asked
    assert address == "ray://aframe-tune-head-svc.bbhnet.svc.cluster.local:10001"
    assert workers == 3 and timeout > 0
    assert len(server.calls("GET", "/api/v1/namespaces/bbhnet/pods")) >= 3


def test_the_external_load_balancer_exposes_the_client_and_the_dashboard():
    (service,) = [m for m in deployments(spec(), external=True)
                  if m["metadata"]["name"] == "aframe-tune-client"]  # fmt: skip
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "client": 10001, "dashboard": 8265}  # fmt: skip


def test_the_default_image_is_tagged_by_this_aframe_flows_version():
    import aframe_flow
    from aframe_flow.clusters.manifests import IMAGE_REPOSITORY, default_image

    assert default_image() == f"{IMAGE_REPOSITORY}:{aframe_flow.__version__}"
    assert ClusterSpec(name="x").image == default_image()
    assert not default_image().endswith(":main")


def test_objects_deleted_by_someone_else_are_reported_or_skipped(kube):
    server, _ = kube
    key = ("ray.io/v1", "rayclusters", "bbhnet", "aframe-tune")
    cluster = kuberay(kube, timeout=5.0)
    cluster.create()
    threading.Timer(0.3, server.delete, args=(key, {})).start()  # kubectl delete, meanwhile
    server.finalizers.clear()
    server.objects[key]["metadata"]["finalizers"] = []
    with pytest.raises(ClusterError, match="RayCluster bbhnet/aframe-tune was deleted"):
        cluster.wait()
    cluster.delete()  # already gone: the API's 404 is no error
    assert [r[1:3] for r in server.requests if r[0] == "DELETE"] == [
        ("/apis/ray.io/v1/namespaces/bbhnet/rayclusters/aframe-tune", {})]  # fmt: skip
    assert cluster.created == []


def test_deletion_after_the_work_failed_waits_for_finalizers(kube):
    server, _ = kube
    server.delete_delay = 0.8
    server.timeline("RayCluster", "aframe-tune", [Step(0.1, {"status": RUNNING})])
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="trial crashed"):
        with kuberay(kube):
            raise RuntimeError("trial crashed")
    assert time.monotonic() - start >= 0.8 and not server.objects


def test_cluster_task_reads_config_applies_the_hook_and_cleans_up_on_failure(monkeypatch, kube):
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
        server, client = kube
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
    assert len(server.objects) == len(manifests) == 5  # 2 Secrets, 2 Deployments, 1 Service
    task.on_failure(RuntimeError("boom"))
    assert cluster.created == [] and not server.objects
