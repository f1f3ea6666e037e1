"""The data tasks run ``aframe-data``: each task parameter is an argument of its subcommand (the
aframe-lib function), checked against the jsonargparse parser itself; the seed streams are
aframe-lib's; and ``aframe-data`` and the law tasks with the same seed write the same data."""

from __future__ import annotations

import law
import luigi
import numpy as np
import pytest

from aframe_flow import (
    Data,
    FetchBackground,
    HeldOutBackground,
    Segments,
    SyntheticData,
    TestWaveforms,
    TrainingWaveforms,
    ValidationWaveforms,
)
from aframe_flow.base import DataParameters
from aframe_flow.tasks import data as flow_data
from aframe_lib.data import cli, synthetic
from aframe_lib.data.background import list_segments, read_segment
from aframe_lib.data.waveforms import read_waveforms

POPULATION = {"masses": {"class_path": "torch.distributions.Uniform",
                         "init_args": {"low": 10.0, "high": 50.0}}}  # fmt: skip
NOISE = {
    "glitch_rates": {"H1": 0.5},
    "psd_scale": [0.5, 2.0],
    "glitch_types": {"sine_gaussian": 1.0},
}
TINY = dict(sample_rate=256.0, background_duration=64.0, segment_duration=32.0,
            num_waveforms=4, num_val_waveforms=3, waveform_duration=4.0,
            coalescence_time=3.0)  # fmt: skip
# what flow itself consumes, not aframe-data: where data go (data_dir becomes data_dir/path),
# which task makes the background, how fetched segments are cut into files, where a task runs
FLOW_ONLY = {"data_dir", "background", "segments", "max_duration", "data_image", "dev"}
# flow's (upstream aframe's) names of the segment query's arguments
QUERY_NAMES = {"start": "train_start", "end": "test_stop", "source": "segment_source"}


def tasks(tmp_path, **params):
    fetch = dict(background="fetch", segments="1000-1016", channels="H1:A,L1:B",
                 frametypes="H1_T,L1_T")  # fmt: skip
    query = dict(background="fetch", train_start=1000.0, train_stop=2000.0, test_stop=3000.0,
                 flags="H1:X:1,L1:Y:1", vetoes="H1:V:1", min_duration=10.0)  # fmt: skip
    common = dict(data_dir=str(tmp_path), seed=3, population=POPULATION, noise=NOISE, **params)
    return [
        SyntheticData(**common),
        HeldOutBackground(**common),
        TrainingWaveforms(**common),
        ValidationWaveforms(**common),
        TestWaveforms(**common, num_test_waveforms=2),
        FetchBackground(**common, **fetch),
        Segments(**common, **query),
    ]


def test_every_data_task_parameter_is_an_argument_of_aframe_data(tmp_path):
    """Parsed by aframe-data's own parser, each task's command gives back the task's
    arguments; and every data parameter reaches aframe-data through some task."""
    params = {p for p, _ in DataParameters.get_params()} - {p for p, _ in law.Task.get_params()}
    used = set()
    for task in tasks(tmp_path, **TINY):
        command = task.command()
        assert command[0].endswith("aframe-data") and command[1] == task.subcommand
        args = task.arguments()
        assert set(args) <= cli.options(task.subcommand), type(task).__name__
        cfg = cli.parser([task.subcommand]).parse_args(command[1:])[task.subcommand]
        for key, value in args.items():
            parsed = cfg[key]
            if key == "population":
                parsed = {"masses": cfg["population"]["masses"].as_dict()}
                parsed["masses"]["init_args"].pop("validate_args")  # the class's default
            if key == "noise":  # a NoiseModel: the fields given
                parsed = {k: v for k, v in cfg["noise"].as_dict().items() if k in value}
                parsed["psd_scale"] = list(parsed["psd_scale"])
            assert (list(parsed) if isinstance(value, list) else parsed) == value, key
        used |= set(args) & params
        used |= {QUERY_NAMES[k] for k in args if k in QUERY_NAMES}
        used |= {"num_val_waveforms"} if isinstance(task, ValidationWaveforms) else set()
    assert params - FLOW_ONLY - used == set()


def test_the_seed_streams_are_aframe_libs():
    for seed in (0, 1, 7, 101, 5000):
        for stream in (0, 1, 2, 3, 4, 10):
            assert flow_data.stream_seed(seed, stream) == synthetic.stream_seed(seed, stream)
    assert (flow_data.TRAIN_WAVEFORMS, flow_data.VAL_WAVEFORMS, flow_data.TEST_WAVEFORMS) == (
        synthetic.TRAIN_WAVEFORMS, synthetic.VAL_WAVEFORMS, synthetic.TEST_WAVEFORMS)  # fmt: skip
    assert (flow_data.HELDOUT_BACKGROUND, flow_data.EVALUATE) == (
        synthetic.HELDOUT_BACKGROUND, synthetic.EVALUATE)  # fmt: skip
    assert flow_data.MANIFEST == synthetic.MANIFEST


def test_held_out_noise_is_no_training_sets_whatever_its_seed(tmp_path):
    """Issue 21: the held-out background of seed 3 was drawn from seed 3003 (``seed * 1000 + 3``),
    bit for bit the background of a training set made with ``--seed 3003``. It is now stream 3
    of seed 3 (a numpy spawn key no training background has): other noise, and provenance that
    evaluate's refusal tells apart from that training set's."""
    from aframe_lib.data import provenance
    from aframe_lib.data.synthetic import ensure_synthetic_dataset

    small = dict(sample_rate=256.0, background_duration=32.0, segment_duration=32.0)
    heldout = HeldOutBackground(data_dir=str(tmp_path / "d"), seed=3, **small)
    ensure_synthetic_dataset(**heldout.arguments())
    for seed in (3003, 3):
        train = str(tmp_path / f"train{seed}")
        ensure_synthetic_dataset(train, sample_rate=256.0, background_duration=32.0,
                                 segment_duration=32.0, num_waveforms=0, num_val_waveforms=0,
                                 seed=seed)  # fmt: skip
        (ours,) = list_segments(heldout.heldout_root, ["H1", "L1"])
        (theirs,) = list_segments(train, ["H1", "L1"])
        a, b = read_segment(ours), read_segment(theirs)
        assert not (a == b).any(), seed  # other draws (the old one was bit for bit)
        assert provenance.find_same(provenance.of_files([ours.path])[0],
                                    provenance.of_files([theirs.path])[0]) is None  # fmt: skip


def test_flow_ships_aframe_libs_declaration_of_the_data_settings():
    """Item 7 of issue 21: flow's data parameters are derived from aframe-lib's declaration
    (``ensure_synthetic_dataset``), never re-declared. The copy flow ships is lib's own, and each
    declared setting is a flow parameter of the same name, default and help."""
    import inspect
    from importlib import resources

    from aframe_lib.data import declaration

    shipped = resources.files("aframe_flow").joinpath("synthetic.json").read_text()
    assert shipped == declaration.dumps(), (
        "aframe_flow/synthetic.json is stale: run `python -m aframe_lib.data.declaration "
        "packages/aframe-flow/aframe_flow/synthetic.json`"
    )
    params = dict(DataParameters.get_params())
    signature = inspect.signature(synthetic.ensure_synthetic_dataset).parameters
    for name, arg in signature.items():
        if name in declaration.FUNCTIONS["synthetic"][1]:  # data_dir, background_stream
            continue
        assert name in params, name  # one name per concept: lib's
        default = params[name]._default
        if name in ("population", "noise"):
            assert default == {} and arg.default is None
        elif name == "ifos":
            assert tuple(default) == tuple(arg.default)
        else:
            assert default == arg.default, name
    assert "Seconds per waveform row" in params["waveform_duration"].description


def test_data_requires_one_synthetic_dataset_or_the_fetched_parts(tmp_path):
    assert list(Data(data_dir=str(tmp_path)).requires()) == ["data"]
    fetched = Data(data_dir=str(tmp_path), background="fetch", segments="0-8").requires()
    assert sorted(fetched) == ["background", "test_waveforms", "val_waveforms", "waveforms"]
    with pytest.raises(Exception, match=r"--data-image=/nowhere.sif: no such Apptainer"):
        SyntheticData(data_dir=str(tmp_path), data_image="/nowhere.sif")


def same_files(a, b) -> None:
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in b.iterdir() if not p.name.startswith("."))
    assert (a / "synthetic.json").read_text() == (b / "synthetic.json").read_text()
    for segment_a, segment_b in zip(
        list_segments(str(a), ["H1", "L1"]), list_segments(str(b), ["H1", "L1"]), strict=True
    ):
        np.testing.assert_array_equal(read_segment(segment_a), read_segment(segment_b))
    for name in ("waveforms.hdf5", "val_waveforms.hdf5"):
        wa, wb = read_waveforms(str(a / name)), read_waveforms(str(b / name))
        np.testing.assert_array_equal(wa.plus, wb.plus)
        np.testing.assert_array_equal(wa.cross, wb.cross)
        for key, value in wa.parameters.items():
            np.testing.assert_array_equal(wb.parameters[key], value)


@pytest.mark.slow  # two aframe-data processes (torch): ~20 s on a loaded machine
def test_aframe_data_and_the_law_tasks_with_seed_0_write_the_same_data(tmp_path, capsys):
    flags = [f"--{k}={v}" for k, v in TINY.items()]
    cli.main(["synthetic", "--data_dir", str(tmp_path / "cli"), "--seed", "0", *flags])
    params = dict(data_dir=str(tmp_path / "law"), seed=0, **TINY)
    assert luigi.build([SyntheticData(**params)], local_scheduler=True, log_level="WARNING")
    same_files(tmp_path / "cli", tmp_path / "law")
    # the waveform tasks of a fetched-background dataset draw the same streams
    fetched = dict(params, data_dir=str(tmp_path / "fetched"), background="fetch",
                   segments="0-8")  # fmt: skip
    waveform_tasks = [TrainingWaveforms(**fetched), ValidationWaveforms(**fetched)]
    assert luigi.build(waveform_tasks, local_scheduler=True, log_level="WARNING")
    for name in ("waveforms.hdf5", "val_waveforms.hdf5"):
        a = read_waveforms(str(tmp_path / "cli" / name))
        b = read_waveforms(str(tmp_path / "fetched" / name))
        np.testing.assert_array_equal(a.plus, b.plus)


def test_the_task_defaults_are_the_functions_defaults(tmp_path):
    """The flow's defaults (written for login nodes without aframe-lib) are aframe-lib's."""
    import inspect

    for task in (SyntheticData(data_dir=str(tmp_path)), TrainingWaveforms(data_dir=str(tmp_path))):
        signature = inspect.signature(cli.functions([task.subcommand])[task.subcommand])
        for key, value in task.arguments().items():
            default = signature.parameters[key].default
            if default is inspect.Parameter.empty or key == "stream":  # the task's stream
                continue
            assert value == (list(default) if isinstance(default, tuple) else default), key
