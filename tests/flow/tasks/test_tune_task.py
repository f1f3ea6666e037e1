"""``aframe_flow.Tune``: its command line, its checks, the Kubernetes cluster's lifecycle around
the search (kr8s against the tests' Kubernetes API server, k8s_api.py), and (slow) a real tiny
search through ``law run`` on a real Ray head."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers.fixtures_ray import RAY_ENV
from helpers.flow import QUICKSTART, TINY_EVAL, TINY_SEARCH, law_env_for, law_run
from helpers.k8s_api import RUNNING, Step, deployment_up

from aframe_flow import Tune, TunePipeline
from aframe_flow.base import RayClusterTask
from aframe_flow.parameters import ParameterError
from aframe_flow.sandbox import Sandbox
from aframe_flow.targets import file_target

CONFIG = str(QUICKSTART / "train.yaml")
TUNE_CONFIG = str(QUICKSTART / "tune.yaml")


def make(**kwargs) -> Tune:
    return Tune(**{"config": CONFIG, "tune_config": TUNE_CONFIG, "data_dir": "/d", **kwargs})


def test_command_on_a_local_ray_instance(tmp_path):
    task = make(storage_dir=str(tmp_path / "tune"), name="s1", num_samples=3, seed=5,
                train_args=["--trainer.max_epochs=2"], tune_args=["--tune.num_cpus=2"])  # fmt: skip
    cmd = task.command()
    assert cmd[0].endswith("aframe-train") and cmd[1] == "tune"
    args = cmd[2:]
    assert args[:2] == ["--config", CONFIG]
    for expected in (
        "--seed_everything=5",
        "--data.init_args.data_dir=/d",
        "--data.init_args.synthetic=null",
        "--trainer.max_epochs=2",
        f"--tune.storage_dir={tmp_path / 'tune'}",
        "--tune.name=s1",
        "--tune.num_samples=3",
        "--tune.num_gpus=0",  # like Train: no --gpus, no GPU
        "--tune.num_cpus=2",
    ):
        assert expected in args
    # the settings given to the task come after the tune config, so they win
    assert args.index("--tune_config") < args.index("--tune.name=s1")
    assert args[args.index("--tune_config") + 1] == TUNE_CONFIG
    # the search sets every trial's directories, logger and devices itself
    assert not any(a.startswith(("--trainer.default_root_dir", "--trainer.logger", "--tune.address",
                                 "--trainer.devices")) for a in args)  # fmt: skip
    out = task.output()
    assert out["summary"].path == str(tmp_path / "tune" / "s1" / "summary.json")
    assert out["model"].path == str(tmp_path / "tune" / "s1" / "model.pt")


def test_the_best_trials_model_records_the_code_that_trained_it(tmp_path, monkeypatch):
    """Issue 21, item 6: like Train's run directory, the search directory's best model gets
    ``code.json`` (the hash of the code that ran the search) once the search has written it."""
    from aframe_flow.code import source_digest

    task = make(storage_dir=str(tmp_path / "tune"), name="s1")
    search = Path(task.search_dir)

    def searched(address=""):  # what `aframe-train tune` leaves: the best trial's model
        search.mkdir(parents=True)
        for name in ("model.pt", "model.json", "summary.json"):
            (search / name).write_text("{}")

    monkeypatch.setattr(task, "run_tune", searched)
    task.run()
    assert json.loads((search / "code.json").read_text()) == {"code_hash": source_digest()}


def test_gpus_are_the_local_instances_and_an_address_is_passed_on():
    task = make(gpus="2,3", space=str(QUICKSTART / "search_space.yaml"))
    args = task.command()
    assert {"--tune.num_gpus=2", "--tune.gpus_per_worker=1"} <= set(args)
    assert f"--tune.space={QUICKSTART / 'search_space.yaml'}" in args
    assert task.sandbox().environment({})["CUDA_VISIBLE_DEVICES"] == "2,3"
    remote = make(address="ray://10.1.2.3:10001", storage_dir="s3://bucket/tune")
    args = remote.command("ray://10.1.2.3:10001")
    assert (
        "--tune.address=ray://10.1.2.3:10001" in args
        and "--tune.storage_dir=s3://bucket/tune" in args
    )
    assert not any(a.startswith("--tune.num_gpus") for a in args)
    assert remote.output()["summary"].path == "s3://bucket/tune/search/summary.json"
    wandb = make(use_wandb=True, wandb_project="p").command()
    assert "--trainer.logger=WandbLogger" in wandb and "--trainer.logger.project=p" in wandb


def test_in_an_image_the_search_runs_in_train_image(tmp_path):
    sif = tmp_path / "train.sif"
    sif.write_bytes(b"")
    task = make(image=str(sif), data_dir=str(tmp_path / "d"), storage_dir=str(tmp_path / "t"))
    cmd = task.sandbox().command(task.command())
    i = cmd.index(str(sif))
    assert cmd[:3] == ["apptainer", "exec", "--cleanenv"] and cmd[i + 1 : i + 3] == [
        "aframe-train",
        "tune",
    ]
    binds = [cmd[j + 1] for j in range(i) if cmd[j] == "--bind"]
    for path in (tmp_path / "d", tmp_path / "t", QUICKSTART):
        assert f"{path}:{path}" in binds


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 0}, r"--num-samples=0: a search needs at least one trial"),
        ({"address": "10.0.0.5:10001"}, r"--address=10.0.0.5:10001: expected a Ray client address"),
        ({"address": "http://head:10001"}, r"expected a Ray client address ray://HOST:PORT"),
        ({"address": "ray://h:10001", "kubernetes": True}, r"--address and --kubernetes exclude"),
        ({"address": "ray://h:10001", "gpus": "0"}, r"--gpus=0: selects GPUs of the local Ray"),
        ({"kubernetes": True}, r"--kubernetes: the search directory .* must be s3://"),
        ({"external": True}, r"--external only applies with --kubernetes"),
        ({"name": "a/b"}, r"--name='a/b': give a plain directory name"),
        ({"tune_config": ""}, r"Tune needs a search space: give --space FILE"),
        ({"tune_config": "/nowhere/tune.yaml"}, r"--tune-config=/nowhere/tune.yaml: no such file"),
        ({"space": "nowhere.yaml"}, r"--space=\S*/nowhere.yaml: no such file"),
        ({"ifos": "H1,X1"}, r"--ifos=H1,X1: unknown"),
        ({"image": "/nowhere/train.sif"}, r"--image=/nowhere/train.sif: no such Apptainer image"),
    ],
)
def test_bad_parameters_fail_when_the_task_is_built(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        make(**kwargs)
    with pytest.raises(ParameterError, match=match):
        TunePipeline(**{"config": CONFIG, "tune_config": TUNE_CONFIG, **kwargs}).requires()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-samples", "0"], "--num-samples=0: a search needs at least one trial"),
        (["--address", "head:10001"], "--address=head:10001: expected a Ray client address"),
    ],
)
def test_bad_parameters_fail_before_anything_runs_under_law(tmp_path, args, message):
    env = law_env_for(tmp_path)
    proc = law_run(env, "aframe_flow.Tune", "--tune-config", TUNE_CONFIG, *args, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not Path(env["AFRAME_BASE_DIR"]).exists()


@pytest.fixture
def fake_kubernetes(monkeypatch, tmp_path, kube):
    """Tune on Kubernetes against the tests' API server (whose objects become ready after a
    moment) with the search command recorded instead of run (``fail=True`` in the returned dict
    makes the command fail like a crashed search). ``commands``: (argv, the API requests made
    before it as (method, path), the sandbox's env)."""
    import luigi

    server, client = kube
    server.timeline("RayCluster", "aframe-tune", [Step(0.2, {"status": RUNNING})])
    for name in ("aframe-tune-head", "aframe-tune-worker"):
        server.timeline("Deployment", name, [Step(0.2, deployment_up)])
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}
    server.timeline("Service", "aframe-tune-client", [Step(0.3, ingress)])
    state = {"server": server, "commands": [], "fail": False, "ray_wait": []}

    def ray_cluster(self, client=None):
        cluster = RayClusterTask.ray_cluster(self, client=kube[1])
        cluster.poll = 0.1
        cluster.ray_wait = lambda *args: state["ray_wait"].append(args)
        return cluster

    monkeypatch.setattr(Tune, "ray_cluster", ray_cluster)
    # the outputs live on S3 in real use; here in tmp_path, written by the "search"
    monkeypatch.setattr(Tune, "output", lambda self: {
        "summary": file_target(tmp_path / "search" / "summary.json"),
        "model": file_target(tmp_path / "search" / "model.pt")})  # fmt: skip

    def run(box, argv, cwd=None):
        calls = [(m, p) for m, p, _, _ in server.requests if m != "GET"]
        state["commands"].append((list(argv), calls, dict(box.env)))
        if state["fail"]:
            raise subprocess.CalledProcessError(1, list(argv))
        (tmp_path / "search").mkdir(exist_ok=True)
        for name in ("summary.json", "model.pt"):
            (tmp_path / "search" / name).write_text("{}")

    monkeypatch.setattr(Sandbox, "run", run)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cfg = luigi.configuration.get_config()
    cfg.set("kubernetes", "namespace", "bbhnet")
    yield state
    cfg.remove_option("kubernetes", "namespace")


def k8s_task(**kwargs) -> Tune:
    return make(kubernetes=True, storage_dir="s3://bucket/tune", data_dir="s3://bucket/data",
                cluster_name="aframe-tune", **kwargs)  # fmt: skip


def test_kubernetes_cluster_is_created_handed_to_the_search_and_deleted(fake_kubernetes):
    task = k8s_task()
    task.run()
    server = fake_kubernetes["server"]
    ((argv, calls_before, env),) = fake_kubernetes["commands"]
    # the search ran once the cluster existed and was ready, with the cluster's address
    assert calls_before == [("POST", "/apis/ray.io/v1/namespaces/bbhnet/rayclusters")]
    watched = [e for e in server.events if e[1] == "MODIFIED"]
    assert watched[0][3]["status"]["state"] == "ready"
    address = "ray://aframe-tune-head-svc.bbhnet.svc.cluster.local:10001"
    assert f"--tune.address={address}" in argv and argv[1] == "tune"
    assert "--tune.storage_dir=s3://bucket/tune" in argv
    assert not any(a.startswith("--tune.num_gpus") for a in argv)
    assert env["RAY_AUTH_MODE"] == "disabled"
    # ... and the cluster is gone afterwards
    deletes = [p for m, p, _, _ in server.requests if m == "DELETE"]
    assert deletes == ["/apis/ray.io/v1/namespaces/bbhnet/rayclusters/aframe-tune"]
    assert task._cluster.created == [] and not server.objects


def test_kubernetes_cluster_is_deleted_when_the_search_fails(fake_kubernetes):
    fake_kubernetes["fail"] = True
    task = k8s_task()
    with pytest.raises(subprocess.CalledProcessError):
        task.run()
    server = fake_kubernetes["server"]
    assert len(fake_kubernetes["commands"]) == 1
    assert [(m, p.rsplit("/", 1)[-1]) for m, p, _, _ in server.requests if m != "GET"] == [
        ("POST", "rayclusters"), ("DELETE", "aframe-tune")]  # fmt: skip
    assert task._cluster.created == [] and not server.objects


def test_kubernetes_external_address_with_deployments(fake_kubernetes):
    import luigi

    cfg = luigi.configuration.get_config()
    cfg.set("kubernetes", "backend", "deployments")
    try:
        task = k8s_task(external=True)
        task.run()
    finally:
        cfg.remove_option("kubernetes", "backend")
    ((argv, calls_before, _),) = fake_kubernetes["commands"]
    assert "--tune.address=ray://203.0.113.7:10001" in argv  # the LoadBalancer's
    # Ray itself was waited for (the 2 workers of [ray_worker] replicas) before the search
    assert [a[:2] for a in fake_kubernetes["ray_wait"]] == [("ray://203.0.113.7:10001", 2)]
    server = fake_kubernetes["server"]
    created = [b["metadata"]["name"] for m, _, _, b in server.requests if m == "POST"]
    deleted = [p.rsplit("/", 1)[-1] for m, p, _, _ in server.requests if m == "DELETE"]
    assert deleted == list(reversed(created)) and len(created) == 4 and not server.objects


@pytest.mark.slow
def test_law_run_tune_pipeline_on_a_real_ray_head(tmp_path, ray_head):
    """TunePipeline: data -> a 2-trial, 1-epoch search on a `ray start --head` cluster reached by
    ray:// -> the best trial's model exported and evaluated on held-out data."""
    env = {**law_env_for(tmp_path), **RAY_ENV}
    args = ["--tune-config", TUNE_CONFIG, "--name", "tiny", "--num-samples", "2",
            "--address", ray_head,
            "--tune-args", '["--tune.max_epochs=1", "--tune.grace_period=1"]',
            "--livetime", "1500", "--num-injections", "12", "--eval-args", TINY_EVAL,
            "--search-settings", TINY_SEARCH]  # fmt: skip
    proc = law_run(env, "aframe_flow.TunePipeline", *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    out = Path(env["AFRAME_BASE_DIR"])
    (search,) = out.glob("tune/H1L1-512Hz-synthetic-seed101-*/train-*/tiny")
    summary = json.loads((search / "summary.json").read_text())
    assert len(summary["trials"]) == 2
    assert all(t["status"] == "completed" for t in summary["trials"]), summary["trials"]
    assert summary["settings"]["address"] == ray_head
    assert summary["best"]["model"] and (search / "model.pt").exists()
    assert len(json.loads((search / "code.json").read_text())["code_hash"]) == 12
    import torch

    model = torch.jit.load(str(search / "model.pt"))
    assert model(torch.randn(2, 2, 512)).shape == (2, 1)
    # the best model, exported and evaluated on held-out data
    data_key, tune_key = search.parent.parent.name, search.parent.name
    folder = out / "export" / data_key / tune_key / "tiny" / "aframe"
    assert (folder / "1" / "model.pt").read_bytes() == (search / "model.pt").read_bytes()
    (report,) = out.glob(f"eval/{data_key}/{tune_key}-tiny/heldout-*/code-*")
    assert json.loads((report / "eval_data.json").read_text())["kind"] == "heldout"
    assert "efficiency_at_far_100000_per_yr" in (report / "numbers.txt").read_text()
    assert not list(out.glob("run/*"))  # no separate training run
    # a finished pipeline is not run again
    again = law_run(env, "aframe_flow.TunePipeline", *args)
    assert again.returncode == 0 and " ran successfully" not in again.stdout + again.stderr
