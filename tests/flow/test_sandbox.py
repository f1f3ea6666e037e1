"""The exact Apptainer command lines and environments (Apptainer cannot run here)."""

from __future__ import annotations

import pytest

from aframe_flow.parameters import ParameterError
from aframe_flow.sandbox import DEV_MOUNT, Sandbox, repo_root, resolve_image

HOST = {"PATH": "/usr/bin", "HOME": "/home/u", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "WANDB_API_KEY": "w4ndb", "AFRAME_BASE_DIR": "/data", "UNRELATED": "x"}  # fmt: skip


@pytest.fixture
def image(tmp_path):
    sif = tmp_path / "train.sif"
    sif.write_bytes(b"sif")
    return sif


def test_gpu_command_line_binds_nv_and_environment(tmp_path, image):
    data, run = tmp_path / "data", tmp_path / "run"
    box = Sandbox(image=image, gpus=(2, 3), binds=[str(run), str(data), str(data), "s3://b/x"])
    assert box.command(["aframe-train", "fit", "--config", "c.yaml"]) == [
        "apptainer", "exec", "--cleanenv", "--nv",
        "--bind", f"{data}:{data}", "--bind", f"{run}:{run}",
        str(image), "aframe-train", "fit", "--config", "c.yaml",
    ]  # fmt: skip
    env = box.environment(HOST)
    assert env["APPTAINERENV_CUDA_VISIBLE_DEVICES"] == "2,3"
    # credentials travel in the environment only, prefixed for Apptainer
    assert env["APPTAINERENV_AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    assert env["APPTAINERENV_WANDB_API_KEY"] == "w4ndb"
    assert env["APPTAINERENV_AFRAME_BASE_DIR"] == "/data"
    assert "APPTAINERENV_UNRELATED" not in env and env["UNRELATED"] == "x"
    assert not any("s3cr3t" in a or "w4ndb" in a for a in box.command(["x"]))


def test_cpu_command_line_has_no_nv_and_no_visible_devices(image):
    box = Sandbox(image=image, env={"OMP_NUM_THREADS": "1"})
    cmd = box.command(["aframe-data", "waveforms"])
    assert cmd == ["apptainer", "exec", "--cleanenv", str(image),
                   "aframe-data", "waveforms"]  # fmt: skip
    env = box.environment(HOST)
    assert env["APPTAINERENV_OMP_NUM_THREADS"] == "1"
    assert not any(k.endswith("CUDA_VISIBLE_DEVICES") for k in env)


def test_dev_binds_the_working_tree_and_puts_its_packages_first(image):
    root = repo_root()
    assert root is not None and (root / "packages" / "aframe-flow").is_dir()
    box = Sandbox(image=image, dev=True, gpus=(0,))
    cmd = box.command(["aframe-train", "fit"])
    assert cmd[:7] == ["apptainer", "exec", "--cleanenv", "--nv",
                       "--bind", f"{root}:{DEV_MOUNT}:ro", str(image)]  # fmt: skip
    assert box.environment(HOST)["APPTAINERENV_PYTHONPATH"] == ":".join(
        f"{DEV_MOUNT}/packages/{p}" for p in ("aframe-lib", "aframe-train", "aframe-flow")
    )


def test_on_the_host_the_command_is_unchanged_and_gpus_are_made_visible():
    box = Sandbox(gpus=(1,))
    assert box.command(["aframe-train", "fit"]) == ["aframe-train", "fit"]
    env = box.environment(HOST)
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["PATH"] == "/usr/bin"
    assert not any(k.startswith("APPTAINERENV_") for k in env)


def test_missing_image_names_the_path_and_the_fix(tmp_path, image):
    assert resolve_image("train.sif", str(tmp_path)) == image  # bare name in container_root
    with pytest.raises(ParameterError, match=r"--image=nope.sif: no such Apptainer image.*build"):
        resolve_image("nope.sif", str(tmp_path))


def test_failed_command_carries_its_own_error_block(tmp_path):
    """A task's command that fails on bad input: the failure is the child's message block."""
    import subprocess
    import sys
    from pathlib import Path

    from aframe_flow.sandbox import CommandError

    script = str(Path(sys.executable).parent / "aframe-synthetic")
    argv = [script, "--out", str(tmp_path / "d"), "--ifos", "X1", "H1"]
    with pytest.raises(CommandError) as info:
        Sandbox().run(argv)
    message = str(info.value)
    assert message.splitlines()[1].startswith("aframe-synthetic: error: --ifos=['X1', 'H1']")
    assert "exited with status 2" in message and "Traceback" not in message
    assert isinstance(info.value, subprocess.CalledProcessError)
    assert info.value.returncode == 2 and not (tmp_path / "d").exists()


def test_block_written_by_aframe_lib_is_found_again_in_a_child_output():
    from aframe_flow.sandbox import find_error_block
    from aframe_lib.data.config import DataConfigError
    from aframe_lib.utils.errors import format_error

    block = format_error("aframe-train fit", DataConfigError("data.x=1: bad\nsecond line"))
    text = f"INFO starting\n{block}trailing noise\n"
    found = find_error_block(text)
    assert found.splitlines()[0] == "aframe-train fit: error: data.x=1: bad"
    assert "  second line" in found and "DataConfigError; exit status 2" in found
    assert find_error_block("Traceback ...\nKeyError: 1\n") is None
