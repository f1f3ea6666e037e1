"""The tuning package's layout: settings, training config and tuner in separate modules, no
import circle (the summary reads the settings without importing the tuner)."""

from __future__ import annotations

import subprocess
import sys


def test_summary_does_not_import_the_tuner():
    code = (
        "import sys, aframe_lib.tune.summary, aframe_lib.tune.config\n"
        "print(sorted(m for m in sys.modules if m.startswith('aframe_lib.tune')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.strip()
    assert "aframe_lib.tune.tuner" not in loaded and "aframe_lib.tune.training" not in loaded
    assert "'aframe_lib.tune.config'" in loaded


def test_settings_live_in_config_and_the_training_config_in_training():
    import aframe_lib.tune as tune
    from aframe_lib.tune import config, training, tuner

    assert tune.TuneSettings is config.TuneSettings
    assert tune.run_tune is tuner.run_tune
    assert tune.TrainingConfig is training.TrainingConfig
    assert not hasattr(config, "TrainingConfig")
    settings = config.TuneSettings(space="s.yaml", workers_per_trial=2, gpus_per_worker=0.5)
    assert settings.trial_resources() == {"CPU": 4.0, "GPU": 1.0}  # 2 x (ceil(4 * 0.5), 0.5)
