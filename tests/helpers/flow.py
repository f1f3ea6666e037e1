"""Helpers of the flow tests: the tiny pipeline config and a `law run` wrapper."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "projects" / "quickstart"
LAW = str(Path(sys.executable).parent / "law")

# in-process tasks read the shipped config; law's index and home never touch ~/.law
if "LAW_HOME" not in os.environ:
    _law_home = tempfile.mkdtemp(prefix="aframe-law-home-")
    os.environ["LAW_HOME"] = _law_home
    atexit.register(shutil.rmtree, _law_home, ignore_errors=True)
os.environ.setdefault("LAW_CONFIG_FILE", str(QUICKSTART / "law.cfg"))
if "LUIGI_CONFIG_PATH" not in os.environ:  # read by `import luigi`, before law's config
    _luigi_cfg = Path(os.environ["LAW_HOME"]) / "luigi.cfg"
    _luigi_cfg.write_text("[core]\nautoload_range: false\n")
    os.environ["LUIGI_CONFIG_PATH"] = str(_luigi_cfg)

# the tiny synthetic pipeline: seconds of data, one short epoch on the CPU
TINY = {
    "background_duration": "768",
    "segment_duration": "256",
    "num_waveforms": "64",
    "num_val_waveforms": "16",
    "config": str(QUICKSTART / "train.yaml"),
    "train_args": '["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", '
    '"--data.init_args.batches_per_epoch=3", "--data.init_args.batch_size=16", '
    '"--data.init_args.valid_livetime=200"]',
}


def write_cfg(path: Path, base: Path = QUICKSTART / "quickstart.cfg", **values: str) -> Path:
    """A law config inheriting ``base`` with ``[luigi_base]`` values replaced."""
    lines = ["[core]", f"inherit: {base}", "", "[luigi_base]"]
    lines += [f"{k}: {v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def law_env_for(tmp_path) -> dict:
    """Environment of a `law run` subprocess: law home, config and outputs under tmp_path."""
    cfg = write_cfg(tmp_path / "tiny.cfg", **TINY)
    env = {
        **os.environ,
        "LAW_HOME": str(tmp_path / "law-home"),
        "LAW_CONFIG_FILE": str(cfg),
        "AFRAME_BASE_DIR": str(tmp_path / "out"),
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return env


def law_run(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LAW, "run", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


# a tiny evaluation for law runs: evaluate's own flags, and --search-settings below the spacing
TINY_EVAL = json.dumps([
    "--injection_spacing", "10",
    "--waveform_duration", "4", "--coalescence_time", "3", "--fars_per_year", "[1e3, 1e5]",
])  # fmt: skip
TINY_SEARCH = json.dumps({"cluster_window": 4})
