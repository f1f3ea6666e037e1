"""Every shipped training config parses, and its header gives the command that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aframe_train.cli import AframeCLI

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_CONFIGS = ROOT / "packages" / "aframe-train" / "aframe_train" / "configs"
MODEL_CONFIGS = sorted(
    [p for p in PACKAGE_CONFIGS.glob("*.yaml") if "model:" in p.read_text()]
    + [p for p in (ROOT / "projects").glob("*/*.yaml") if "model:" in p.read_text()]
)


def test_there_are_configs_to_check():
    names = {p.name for p in MODEL_CONFIGS}
    assert {"resnet1d.yaml", "train.yaml"} <= names


@pytest.mark.parametrize("config", MODEL_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_config_parses_and_instantiates(config, tmp_path):
    header = config.read_text().split("\n\n")[0]
    assert "aframe-train fit --config" in header, "the header must give the command to run"
    cli = AframeCLI(
        args=["--config", str(config), f"--data.init_args.data_dir={tmp_path}"],
        run=False,
    )
    data, model = cli.datamodule, cli.model
    # the architecture got num_ifos/sample_rate/kernel_length from the data section
    arch = model.model
    assert arch.num_ifos == len(data.ifos)
    assert arch.sample_rate == data.sample_rate
    assert arch.kernel_length == data.kernel_length
    assert model.metric.stride == data.valid_stride


def test_an_snr_curriculum_is_configuration(tmp_path):
    """``data.snr_sampler`` takes aframe-lib's SnrCurriculum by class_path like any
    distribution."""
    import json

    from aframe_lib.data import SnrCurriculum

    quickstart = ROOT / "projects" / "quickstart" / "train.yaml"
    schedule = {
        "class_path": "aframe_lib.data.SnrCurriculum",
        "init_args": {"start_minimum": 12, "minimum": 4, "maximum": 50, "steps": 500},
    }
    cli = AframeCLI(
        args=["--config", str(quickstart), f"--data.init_args.data_dir={tmp_path}",
              f"--data.init_args.snr_sampler={json.dumps(schedule)}"],
        run=False,
    )  # fmt: skip
    sampler = cli.datamodule.snr_sampler
    assert isinstance(sampler, SnrCurriculum) and sampler.current_minimum == 12.0
    assert sampler.at(250).current_minimum == 8.0
