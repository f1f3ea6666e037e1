"""Output locations keyed by the parameters that decide them (law's ``store_parts`` idiom):
a changed significant parameter gives new outputs, an unchanged one (or a change of where or
how a task runs) finds the old ones. Relative paths in a ``.cfg`` are read beside the file that
set them. (The full pipeline's reuse is in test_law_pipeline.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import luigi
import pytest
from helpers.flow import QUICKSTART

from aframe_flow import (
    Data,
    Evaluate,
    EvaluateTuned,
    Export,
    ExportTuned,
    SyntheticBackground,
    Train,
    Tune,
    TunePipeline,
)
from aframe_flow.parameters import ParameterError

CONFIG = str(QUICKSTART / "train.yaml")
TUNE_CONFIG = str(QUICKSTART / "tune.yaml")
SPACE = str(QUICKSTART / "search_space.yaml")


@pytest.fixture
def base(tmp_path):
    """``[paths] base_dir`` -> tmp_path/out for tasks built in this process."""
    cfg = luigi.configuration.get_config()
    cfg.set("paths", "base_dir", str(tmp_path / "out"))
    yield tmp_path / "out"
    cfg.remove_option("paths", "base_dir")


def location(task) -> str:
    """Where the task writes (the first output's path)."""
    out = task.output()
    while isinstance(out, dict):
        out = next(iter(out.values()))
    return out.path


DATA_CHANGES = [
    {"seed": 7}, {"sample_rate": 256.0}, {"ifos": "H1,V1"}, {"background_duration": 1024.0},
    {"segment_duration": 256.0}, {"num_waveforms": 10}, {"num_val_waveforms": 10},
    {"waveform_duration": 2.0}, {"coalescence_time": 1.0},
]  # fmt: skip
TRAIN_CHANGES = [*DATA_CHANGES, {"train_args": ["--trainer.max_epochs=2"]}]
# where and how a task runs does not change what it makes
NEUTRAL = [{"gpus": "0"}, {"use_wandb": True}, {"wandb_group": "g"}, {"dev": True}]


@pytest.mark.parametrize(
    "cls, kwargs, changes, neutral",
    [
        (SyntheticBackground, {}, DATA_CHANGES, [{"dev": True}, {"data_image": ""}]),
        (Train, {"config": CONFIG}, TRAIN_CHANGES, NEUTRAL),
        (Export, {"config": CONFIG}, [*TRAIN_CHANGES, {"model_name": "bbh"}], NEUTRAL),
        (
            Tune,
            {"config": CONFIG, "tune_config": TUNE_CONFIG},
            [*TRAIN_CHANGES, {"num_samples": 3}, {"tune_args": ["--tune.max_epochs=2"]},
             {"space": SPACE}, {"name": "other"}],
            [{"use_wandb": True}, {"address": "ray://10.0.0.1:10001"}, {"cluster_name": "c"}],
        ),
        (
            Evaluate,
            {"config": CONFIG},
            [*TRAIN_CHANGES, {"eval_data": "synthetic"}, {"livetime": 100.0},
             {"num_injections": 5}, {"eval_args": ["--threshold", "2"]}],
            NEUTRAL,
        ),
    ],
)  # fmt: skip
def test_a_changed_parameter_moves_the_outputs_an_unchanged_one_does_not(
    base, cls, kwargs, changes, neutral
):
    reference = location(cls(**kwargs))
    assert reference.startswith(str(base)) and location(cls(**kwargs)) == reference
    moved = [location(cls(**kwargs, **c)) for c in changes]
    same = [c for c, m in zip(changes, moved, strict=True) if m == reference]
    assert not same, same
    assert len(set(moved)) == len(moved)  # every change gets a location of its own
    for c in neutral:
        assert location(cls(**kwargs, **c)) == reference, c


def test_locations_are_readable_and_share_keys_along_the_chain(base):
    train = Train(config=CONFIG, ifos="H1,V1", sample_rate=256.0, seed=7)
    data_key = train.data_key
    assert data_key.startswith("H1V1-256Hz-synthetic-seed7-") and len(data_key.split("-")[-1]) == 8
    assert train.data_root == str(base / "data" / data_key)
    assert train.run_root == str(base / "run" / data_key / train.train_key)
    assert train.train_key.startswith("train-")
    export = Export(config=CONFIG, ifos="H1,V1", sample_rate=256.0, seed=7)
    assert export.export_root == str(base / "export" / data_key / train.train_key)
    assert export.requires().run_root == train.run_root
    tune = Tune(config=CONFIG, tune_config=TUNE_CONFIG, ifos="H1,V1", sample_rate=256.0, seed=7)
    assert tune.search_dir == str(base / "tune" / data_key / tune.tune_key / "search")
    # a directory given explicitly is used as it is
    assert Train(config=CONFIG, run_dir=str(base / "mine")).run_root == str(base / "mine")


def test_a_changed_config_file_moves_the_run(base, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(Path(CONFIG).read_text())
    before = Train(config=str(config)).run_root
    config.write_text(Path(CONFIG).read_text() + "\n# lr changed\n")
    assert Train(config=str(config)).run_root != before


@pytest.mark.parametrize("cls", [Tune, Evaluate])
def test_completeness_follows_the_parameters(base, cls):
    """Outputs written at one parameter set's location count for it, not for another's."""
    kwargs = {"config": CONFIG, "tune_config": TUNE_CONFIG} if cls is Tune else {"config": CONFIG}
    task = cls(**kwargs)
    assert not task.complete()
    for target in task.output().values():
        Path(target.path).parent.mkdir(parents=True, exist_ok=True)
        Path(target.path).write_text("{}")
    assert task.complete() and cls(**kwargs).complete()
    assert not cls(**kwargs, seed=7).complete()
    assert not cls(**kwargs, train_args=["--trainer.max_epochs=2"]).complete()


def test_data_reruns_only_for_new_parameters(base):
    small = {"ifos": "H1", "sample_rate": 128.0, "background_duration": 64.0,
             "segment_duration": 32.0, "num_waveforms": 2, "num_val_waveforms": 2,
             "waveform_duration": 2.0, "coalescence_time": 1.5}  # fmt: skip
    task = SyntheticBackground(**small)
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    manifest = json.loads(Path(location(task)).read_text())
    files = list(Path(location(task)).parent.glob("background-*.hdf5"))
    assert manifest["sample_rate"] == 128.0 and len(files) == 2
    assert SyntheticBackground(**small).complete()
    other = SyntheticBackground(**{**small, "seed": 1})
    assert not other.complete()
    assert luigi.build([other], local_scheduler=True, log_level="WARNING")
    assert json.loads(Path(location(other)).read_text())["seed"] == 1
    assert json.loads(Path(location(task)).read_text())["seed"] == 0  # untouched


def test_tune_pipeline_is_data_tune_export_and_evaluate_of_the_best_model(base):
    pipe = TunePipeline(config=CONFIG, tune_config=TUNE_CONFIG, name="s")
    reqs = pipe.requires()
    export, evaluate = reqs["export"], reqs["evaluate"]
    assert isinstance(export, ExportTuned) and isinstance(evaluate, EvaluateTuned)
    tune = export.requires()
    assert isinstance(tune, Tune) and tune.name == "s"
    assert evaluate.requires()["train"] == tune
    assert type(evaluate.requires()["data"]).__name__ == "HeldOutBackground"
    assert isinstance(tune.requires(), Data)
    # the best trial's model (written here as the search would) is exported ...
    search = Path(tune.search_dir)
    search.mkdir(parents=True)
    info = {"input_shape": [None, 2, 512], "onnx": {"filename": "model.onnx"}}
    (search / "model.pt").write_bytes(b"scripted")
    (search / "model.onnx").write_bytes(b"onnx")
    (search / "model.json").write_text(json.dumps(info))
    (search / "summary.json").write_text("{}")
    assert luigi.build([export], local_scheduler=True, log_level="WARNING")
    folder = Path(export.export_root) / "aframe"
    assert str(folder).startswith(str(base / "export" / tune.data_key / tune.tune_key))
    assert (folder / "1" / "model.pt").read_bytes() == b"scripted"
    assert (folder / "1" / "model.onnx").read_bytes() == b"onnx"
    assert json.loads((folder / "model.json").read_text()) == info
    # ... and evaluated: its report location names the search, apart from Train's
    assert f"{tune.tune_key}-s" in evaluate.report_root
    assert evaluate.report_root != Evaluate(config=CONFIG).report_root


def _resolved(cfg: Path, cwd: Path, *exprs: str) -> list[str]:
    """Values of ``exprs`` evaluated in a fresh process with ``cfg`` as LAW_CONFIG_FILE."""
    code = "import aframe_flow as af\n" + "".join(f"print({e})\n" for e in exprs)
    env = {**os.environ, "LAW_CONFIG_FILE": str(cfg)}
    env.pop("LUIGI_CONFIG_PATH", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                         text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-len(exprs) :]


def test_relative_paths_resolve_against_the_cfg_that_set_them(tmp_path):
    """A project .cfg in another directory inherits quickstart.cfg by a relative path and sets
    its own training config; what it does not set (tune.yaml) is read beside quickstart.cfg."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my-train.yaml").write_text(Path(CONFIG).read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rel = os.path.relpath(QUICKSTART / "quickstart.cfg", project)
    cfg = project / "project.cfg"
    cfg.write_text(
        f"[core]\ninherit: {rel}\n\n[luigi_base]\nconfig: my-train.yaml\nsample_rate: 256\n\n"
        "[luigi_paths]\nbase_dir: runs\n"
    )
    train_config, tune_config, tune_train, base_dir, rate = _resolved(
        cfg, elsewhere, "af.Train().config", "af.Tune().tune_config", "af.Tune().config",
        "af.config.paths().base_dir", "af.Train().sample_rate",
    )  # fmt: skip
    assert train_config == str(project / "my-train.yaml") == tune_train
    assert tune_config == str(QUICKSTART / "tune.yaml")
    assert base_dir == str(project / "runs") and rate == "256.0"
    # the quickstart alone, from any directory: its own train.yaml
    (only,) = _resolved(QUICKSTART / "quickstart.cfg", elsewhere, "af.Train().config")
    assert only == str(QUICKSTART / "train.yaml")
    # on the command line (or in Python) a relative path is the working directory's
    (given,) = _resolved(cfg, project, "af.Train(config='my-train.yaml').config")
    assert given == str(project / "my-train.yaml")


@pytest.mark.parametrize(
    "cls, flag",
    [(Train, "run_dir"), (Export, "export_dir"), (Evaluate, "report_dir"), (Tune, "storage_dir")],
)
def test_an_explicit_directory_refuses_outputs_of_other_parameters(tmp_path, cls, flag):
    """An explicit directory is not keyed: once filled, other parameters get a clear error
    there rather than the first parameters' outputs."""
    kwargs = {"config": CONFIG, flag: str(tmp_path / "mine")}
    if cls is Tune:
        kwargs["tune_config"] = TUNE_CONFIG
    first = cls(**kwargs)
    for target in first.output().values():
        Path(target.path).parent.mkdir(parents=True, exist_ok=True)
        Path(target.path).write_text("{}")
    first.on_success()  # what the worker calls after run()
    assert first.complete() and cls(**kwargs).complete()
    with pytest.raises(ParameterError, match=r"holds the outputs of other parameters.*seed7"):
        cls(**kwargs, seed=7).complete()


def test_the_bbh_cpu_recipe_cfg_resolves():
    """projects/bbh-cpu/bbh-cpu.cfg inherits the quickstart's task graph with its own values:
    training at 512 Hz from its train.yaml, the ASHA search of its tune.yaml, and an evaluation
    on 3 days of held-out 2048 Hz noise at 1, 10 and 100 false alarms per month."""
    bbh = QUICKSTART.parent / "bbh-cpu"
    config, tune_config, rate, heldout, args, direct = _resolved(
        bbh / "bbh-cpu.cfg", bbh, "af.Evaluate().config", "af.Tune().tune_config",
        "af.Train().sample_rate",
        "(lambda d: (d.heldout_rate, d.heldout_length, d.sample_rate))"
        "(af.Evaluate().requires()['data'])",
        "list(af.Evaluate().eval_args)",
        "(lambda d: (d.heldout_rate, d.heldout_length, d.seed))(af.HeldOutBackground())",
    )  # fmt: skip
    assert config == str(bbh / "train.yaml") and tune_config == str(bbh / "tune.yaml")
    assert rate == "512.0" and heldout == "(2048.0, 259200.0, 512.0)"
    assert "[12, 120, 1200]" in args  # per year: 1, 10 and 100 per month
    assert "'--mf_budget_s', '1800'" in args  # the matched-filter ideal, half a CPU-hour
    assert direct == "(2048.0, 259200.0, 2029)"  # run alone, the same held-out data


def test_kubernetes_settings_come_from_the_kubernetes_section_and_leave_the_flag_alone():
    """[kubernetes] in a law config is read (the class is k8s so that no --kubernetes-* flag
    makes the tasks' own --kubernetes an ambiguous abbreviation for luigi's parser)."""
    import luigi

    from aframe_flow import config as flow_config

    cfg = luigi.configuration.get_config()
    added = not cfg.has_section("kubernetes")
    if added:
        cfg.add_section("kubernetes")
    cfg.set("kubernetes", "namespace", "ns-from-cfg")
    luigi.task_register.Register.clear_instance_cache()
    try:
        assert flow_config.k8s().namespace == "ns-from-cfg"
    finally:
        cfg.remove_option("kubernetes", "namespace")
        if added:
            cfg.remove_section("kubernetes")
        luigi.task_register.Register.clear_instance_cache()
    flags = {
        f"--{name}-{param}"
        for name, cls in vars(flow_config).items()
        if isinstance(cls, type) and issubclass(cls, luigi.Config) and cls is not luigi.Config
        for param, _ in cls.get_params()
    }
    assert not [f for f in flags if f.startswith("--kubernetes")], flags
