"""Train's parameters -> aframe-train overrides, devices and the sandbox (no training here)."""

from __future__ import annotations

import luigi
import pytest
from helpers.flow import QUICKSTART

from aframe_flow import Export, Train
from aframe_flow.parameters import ParameterError

CONFIG = str(QUICKSTART / "train.yaml")


def make(**kwargs) -> Train:
    return Train(config=CONFIG, data_dir="/d", run_dir="/r", **kwargs)


def test_overrides_point_training_at_the_tasks_data_and_run_dir():
    task = make(ifos="H1,V1", seed=7, sample_rate=1024.0)
    cmd = task.command()
    assert cmd[0].endswith("aframe-train") and cmd[1] == "fit"
    args = cmd[2:]
    assert args[:2] == ["--config", CONFIG]
    for expected in (
        "--seed_everything=7",
        "--data.init_args.ifos=[H1,V1]",
        "--data.init_args.sample_rate=1024",
        "--data.init_args.data_dir=/d",
        "--data.init_args.synthetic=null",
        "--trainer.default_root_dir=/r",
        "--trainer.logger=CSVLogger",
        "--trainer.logger.save_dir=/r",
    ):
        assert expected in args
    assert not any("devices" in a or "strategy" in a or "accelerator" in a for a in args)
    assert task.output()["model"].path == "/r/model.pt"


def test_several_gpus_mean_ddp_over_the_visible_devices():
    task = make(gpus="0,1")
    args = task.command()
    assert {"--trainer.accelerator=gpu", "--trainer.devices=2", "--trainer.strategy=ddp"} <= set(
        args
    )
    assert task.sandbox().environment({})["CUDA_VISIBLE_DEVICES"] == "0,1"
    one = make(gpus="3").command()
    assert "--trainer.devices=1" in one and not any("strategy" in a for a in one)


def test_wandb_flags_and_defaults_from_config():
    cfg = luigi.configuration.get_config()
    cfg.set("wandb_settings", "project", "proj-from-cfg")
    cfg.set("wandb_settings", "entity", "ml4gw")
    cfg.set("wandb_settings", "tags", "a,b")
    try:
        args = make(use_wandb=True, wandb_group="g", wandb_name="run1").command()
    finally:
        for key in ("project", "entity", "tags"):
            cfg.remove_option("wandb_settings", key)
    for expected in (
        "--trainer.logger=WandbLogger",
        "--trainer.logger.name=run1",
        "--trainer.logger.project=proj-from-cfg",
        "--trainer.logger.entity=ml4gw",
        "--trainer.logger.group=g",
        "--trainer.logger.tags=[a,b]",
        "--trainer.logger.save_dir=/r",
    ):
        assert expected in args
    assert "--trainer.logger=CSVLogger" not in args


def test_in_an_image_the_command_is_wrapped_with_binds(tmp_path):
    sif = tmp_path / "train.sif"
    sif.write_bytes(b"")
    task = Train(config=CONFIG, data_dir=str(tmp_path / "d"), run_dir=str(tmp_path / "r"),
                 image=str(sif), gpus="0")  # fmt: skip
    box = task.sandbox()
    cmd = box.command(task.command())
    assert cmd[:4] == ["apptainer", "exec", "--cleanenv", "--nv"]
    i = cmd.index(str(sif))
    assert cmd[i + 1 : i + 3] == ["aframe-train", "fit"]
    binds = [cmd[j + 1] for j in range(i) if cmd[j] == "--bind"]
    for path in (tmp_path / "d", tmp_path / "r", QUICKSTART):
        assert f"{path}:{path}" in binds


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ifos": "H1,X1"}, r"--ifos=H1,X1: unknown .*'X1'.*H1, L1, V1"),
        ({"ifos": "H1,H1"}, r"--ifos=H1,H1: unknown or repeated"),
        ({"gpus": "0,a"}, r"--gpus='0,a': expected comma-separated GPU indices"),
        ({"gpus": "0,0"}, r"--gpus='0,0': a GPU index is repeated"),
        ({"image": "/nowhere/train.sif"}, r"--image=/nowhere/train.sif: no such Apptainer image"),
        ({"config": "/nowhere.yaml"}, r"--config=/nowhere.yaml: no such file"),
        ({"background": "fetch"}, r"--background=fetch needs --segments"),
        ({"background": "fetch", "segments": "10-5"}, r"--segments: '10-5' is not a GPS segment"),
    ],
)
def test_bad_parameters_fail_when_the_task_is_built(kwargs, match):
    kwargs = {"config": CONFIG, **kwargs}
    with pytest.raises(ParameterError, match=match):
        Export(**kwargs)
