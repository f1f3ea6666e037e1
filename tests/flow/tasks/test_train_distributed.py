"""``Train --num-workers N``: the ``aframe-train fit ... --distributed.*`` command line, its checks,
the Kubernetes cluster's lifecycle around it (kr8s against the tests' API server, k8s_api.py),
and (slow) a real 2-worker training through ``law run`` on a real Ray head."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers.flow import QUICKSTART, law_env_for, law_run
from helpers.k8s_api import Step

from aframe_flow import Train
from aframe_flow.base import RayClusterTask
from aframe_flow.parameters import ParameterError
from aframe_flow.sandbox import Sandbox
from aframe_flow.targets import file_target

CONFIG = str(QUICKSTART / "train.yaml")
# a KubeRay RayCluster's status once it is up
RUNNING = {"state": "ready", "desiredWorkerReplicas": 2, "readyWorkerReplicas": 2,
           "conditions": [{"type": "HeadPodReady", "status": "True"},
                          {"type": "RayClusterProvisioned", "status": "True"}]}  # fmt: skip


def make(**kwargs) -> Train:
    return Train(**{"config": CONFIG, "data_dir": "/d", "run_dir": "/r", **kwargs})


def test_workers_on_a_local_ray_instance():
    args = make(num_workers=2, distributed_args=["--distributed.max_failures=5"]).command()
    assert args[1] == "fit" and args[2:4] == ["--config", CONFIG]
    assert "--trainer.default_root_dir=/r" in args and "--data.init_args.data_dir=/d" in args
    tail = args[args.index("--distributed.num_workers=2") :]
    assert tail == ["--distributed.num_workers=2", "--distributed.num_gpus=0",
                    "--distributed.max_failures=5"]  # fmt: skip
    # Ray Train sets each worker's devices and strategy
    assert not any(a.startswith(("--trainer.devices", "--trainer.strategy")) for a in args)


def test_local_gpus_are_one_per_worker_and_a_cluster_gets_gpus_per_worker():
    args = make(num_workers=2, gpus="0,1").command()
    assert {"--distributed.num_gpus=2", "--distributed.gpus_per_worker=1"} <= set(args)
    assert not any(a.startswith(("--trainer.devices", "--trainer.accelerator")) for a in args)
    remote = make(num_workers=4, address="ray://h:10001", gpus_per_worker=1).command()
    assert {"--distributed.num_workers=4", "--distributed.address=ray://h:10001",
            "--distributed.gpus_per_worker=1"} <= set(remote)  # fmt: skip
    assert not any(a.startswith("--distributed.num_gpus") for a in remote)


def test_without_workers_it_is_the_one_node_fit():
    args = make(gpus="0,1").command()
    assert not any(a.startswith("--distributed.") for a in args)
    assert {"--trainer.devices=2", "--trainer.strategy=ddp"} <= set(args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_workers": -1}, r"--num-workers=-1: give 0"),
        ({"address": "ray://h:10001"}, r"--address applies to a Ray Train run: add --num-workers"),
        ({"kubernetes": True}, r"--kubernetes applies to a Ray Train run"),
        ({"num_workers": 2, "address": "h:10001"}, r"--address=h:10001: expected a Ray client"),
        ({"num_workers": 2, "address": "ray://h:1", "kubernetes": True}, r"exclude each other"),
        ({"num_workers": 2, "external": True}, r"--external only applies with --kubernetes"),
        ({"num_workers": 2, "kubernetes": True}, r"--kubernetes: the run directory /r must be s3"),
        ({"num_workers": 2, "gpus": "0", "address": "ray://h:1"}, r"--gpus=0: selects GPUs of the"),
        ({"num_workers": 2, "gpus": "0"}, r"--num-workers=2 on a local Ray instance with --gpus=0"),
        ({"num_workers": 2, "gpus_per_worker": -1.0}, r"--gpus-per-worker=-1: must be >= 0"),
    ],
)
def test_bad_parameters_fail_when_the_task_is_built(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        make(**kwargs)


@pytest.fixture
def fake_kubernetes(monkeypatch, tmp_path, kube):
    """Train on Kubernetes against the tests' API server, the training command recorded
    instead of run (``fail=True``: it fails like a crashed training)."""
    import luigi

    server, client = kube
    server.timeline("RayCluster", "aframe-train", [Step(0.2, {"status": RUNNING})])
    state = {"server": server, "commands": [], "fail": False, "ray_wait": []}

    def ray_cluster(self, client=None):
        cluster = RayClusterTask.ray_cluster(self, client=kube[1])
        cluster.poll = 0.1
        cluster.ray_wait = lambda *args: state["ray_wait"].append(args)  # no Ray behind it
        return cluster

    monkeypatch.setattr(Train, "ray_cluster", ray_cluster)
    monkeypatch.setattr(Train, "output", lambda self: {
        "model": file_target(tmp_path / "run" / "model.pt")})  # fmt: skip

    def run(box, argv, cwd=None):
        calls = [(m, p) for m, p, _, _ in server.requests if m != "GET"]
        state["commands"].append((list(argv), calls, dict(box.env)))
        if state["fail"]:
            raise subprocess.CalledProcessError(1, list(argv))

    monkeypatch.setattr(Sandbox, "run", run)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cfg = luigi.configuration.get_config()
    cfg.set("kubernetes", "namespace", "bbhnet")
    yield state
    cfg.remove_option("kubernetes", "namespace")


def k8s_task() -> Train:
    return make(num_workers=4, gpus_per_worker=1, kubernetes=True, run_dir="s3://bucket/run",
                data_dir="s3://bucket/data", cluster_name="aframe-train")  # fmt: skip


def test_kubernetes_cluster_is_created_handed_to_the_training_and_deleted(fake_kubernetes):
    task = k8s_task()
    task.run()
    server = fake_kubernetes["server"]
    ((argv, calls_before, env),) = fake_kubernetes["commands"]
    assert calls_before == [("POST", "/apis/ray.io/v1/namespaces/bbhnet/rayclusters")]
    address = "ray://aframe-train-head-svc.bbhnet.svc.cluster.local:10001"
    assert argv[1] == "fit" and f"--distributed.address={address}" in argv
    assert {"--distributed.num_workers=4", "--distributed.gpus_per_worker=1",
            "--trainer.default_root_dir=s3://bucket/run"} <= set(argv)  # fmt: skip
    assert env["RAY_AUTH_MODE"] == "disabled"
    deletes = [p for m, p, _, _ in server.requests if m == "DELETE"]
    assert deletes == ["/apis/ray.io/v1/namespaces/bbhnet/rayclusters/aframe-train"]
    assert not server.objects


def test_kubernetes_cluster_is_deleted_when_the_training_fails(fake_kubernetes):
    fake_kubernetes["fail"] = True
    with pytest.raises(subprocess.CalledProcessError):
        k8s_task().run()
    server = fake_kubernetes["server"]
    assert [(m, p.rsplit("/", 1)[-1]) for m, p, _, _ in server.requests if m != "GET"] == [
        ("POST", "rayclusters"), ("DELETE", "aframe-train")]  # fmt: skip
    assert not server.objects


def test_bad_parameters_fail_before_anything_runs_under_law(tmp_path):
    env = law_env_for(tmp_path)
    proc = law_run(env, "aframe_flow.Train", "--address", "ray://h:10001", timeout=120)
    assert proc.returncode != 0
    assert "--address applies to a Ray Train run: add --num-workers" in proc.stdout + proc.stderr
    assert not Path(env["AFRAME_BASE_DIR"]).exists()


@pytest.mark.slow
def test_law_run_train_on_two_ray_workers(tmp_path, ray_head):
    """The tiny pipeline's data, then 2 Ray Train workers on a real head: the exported model."""
    from helpers.fixtures_ray import RAY_ENV

    env = {**law_env_for(tmp_path), **RAY_ENV}
    proc = law_run(env, "aframe_flow.Train", "--num-workers", "2", "--address", ray_head,
                   "--run-dir", str(tmp_path / "run"), timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "run" / "model.pt").is_file()
    assert (tmp_path / "run" / "model.json").is_file()
    assert list((tmp_path / "run" / "ray_train" / "fit").glob("checkpoint_*"))
