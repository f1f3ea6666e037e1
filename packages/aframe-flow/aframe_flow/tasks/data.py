"""Data tasks: background strain (synthetic, or fetched over analysis segments) and waveforms.

All write into one data directory laid out as aframe-lib's training Dataset reads it
(``background-*.hdf5``, ``psd.hdf5``, ``waveforms.hdf5``, ``val_waveforms.hdf5``), by default
``<paths.base_dir>/data/<data key>`` (keyed by every data parameter). :class:`Data` requires
:class:`SyntheticData` (the whole synthetic dataset) or, for ``--background fetch``,
:class:`FetchBackground` (which requires :class:`Segments`: ``Segments -> FetchBackground ->
Data``) and the training, validation and test waveform sets.
:class:`HeldOutBackground` is evaluation's: more synthetic noise in ``<data dir>/heldout/``,
from a seed stream disjoint from every one training uses (:func:`stream_seed`).

Every task runs aframe-lib's ``aframe-data`` command (its subcommands are aframe-lib's data
functions; the task's parameters are their arguments, by name) exactly as ``Train`` runs
``aframe-train``: on the host (``aframe-flow[local]`` or ``[data]``), or in the data image
(``--data-image data.sif``, ``--dev`` binding the working tree). ``aframe-data synthetic`` with
the same arguments writes the same files as these tasks, and the same ``synthetic.json`` marks
a complete synthetic dataset (written last; it refuses a directory holding another dataset).
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import law
import luigi
from luigi.parameter import ParameterVisibility

from ..base import DataParameters, SandboxTask
from ..declared import (
    MANIFEST,
    STREAMS,
    SYNTHETIC,
    WAVEFORM_FILES,
    stream_seed,  # noqa: F401 - the waveform tasks' seeds, re-exported
)
from ..parameters import GpusParameter, ParameterError
from ..sandbox import local_executable
from ..targets import file_target, join, write_bytes_atomic

# seed streams of one --seed and the names of a synthetic dataset's files: aframe-lib's
# (aframe_lib.data.synthetic), read from its declaration shipped with flow (a login node has no
# aframe-lib; tests/flow/tasks/test_data_tasks.py checks the copy is aframe-lib's)
BACKGROUND, TRAIN_WAVEFORMS, VAL_WAVEFORMS, TEST_WAVEFORMS, HELDOUT_BACKGROUND, EVALUATE = (
    STREAMS[k] for k in ("background", "train_waveforms", "val_waveforms", "test_waveforms",
                         "heldout_background", "evaluate")
)  # fmt: skip


def cli_args(kwargs: dict[str, Any]) -> list[str]:
    """``--name=value`` options of ``aframe-data`` (jsonargparse) for a function's arguments:
    strings as they are, everything else as JSON (lists, numbers, population dicts)."""
    return [f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in kwargs.items()]


class DataTask(DataParameters, SandboxTask):
    """A data task: ``aframe-data SUBCOMMAND`` with :meth:`arguments`, on the host or in the
    data image (``--data-image``)."""

    exclude_index = True
    image_parameter = "data_image"
    #: the ``aframe-data`` subcommand (an aframe-lib function) this task runs
    subcommand: ClassVar[str] = ""

    data_image = luigi.Parameter(
        default="",
        description="Apptainer image for data tasks (.sif path or a name in "
        "paths.container_root); empty: run aframe-data on the host",
    )
    # the training image and GPUs are not the data tasks' (handed on by .req, unused)
    image = luigi.Parameter(
        default="", significant=False, visibility=ParameterVisibility.HIDDEN,
        description="not used by data tasks: see --data-image",
    )  # fmt: skip
    gpus = GpusParameter(
        significant=False, visibility=ParameterVisibility.HIDDEN,
        description="not used by data tasks",
    )  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.image_path is None and local_executable("aframe-data") == "aframe-data":
            raise ParameterError(
                f"{self.task_family}: the data generators need aframe-lib (aframe-data), which "
                "this install lacks: give --data-image data.sif (see "
                "projects/quickstart/apptainer.def), or pip install 'aframe-flow[local]'"
            )

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of the subcommand's function (its ``--name=value`` options)."""
        raise NotImplementedError

    def waveform_population(self) -> dict[str, Any]:
        """``population=...`` when ``--population`` is given, else nothing (the defaults)."""
        return {"population": self.population_dict()} if self.population else {}

    def command(self) -> list[str]:
        return [*self.executable("aframe-data"), self.subcommand, *cli_args(self.arguments())]

    def binds(self) -> list[str]:
        return [self.data_root]

    def run(self):
        self.sandbox().run(self.command())


class SyntheticData(DataTask):
    """The synthetic dataset (``aframe-data synthetic``): coloured Gaussian background from the
    aLIGO design PSD and both waveform sets; ``synthetic.json`` marks it complete."""

    subcommand = "synthetic"

    def arguments(self) -> dict[str, Any]:
        """Every declared argument of ``ensure_synthetic_dataset`` by its own name
        (``population``, ``noise`` and ``num_test_waveforms`` only when given, so older data
        keep their arguments)."""
        skip = ("population", "noise")
        args = {name: getattr(self, name) for name in SYNTHETIC if name not in skip}
        if self.noise:
            args["noise"] = self.noise_dict()
        if args["num_test_waveforms"] is None:
            del args["num_test_waveforms"]
        args["ifos"] = list(self.ifos)
        return dict(data_dir=self.data_root, **args, **self.waveform_population())

    def output(self):
        files = {"manifest": file_target(join(self.data_root, MANIFEST))}
        for stream, count in self.waveform_counts().items():
            if count > 0:
                name = WAVEFORM_FILES[stream]
                files[name.removesuffix(".hdf5")] = file_target(join(self.data_root, name))
        return files


class SyntheticBackground(SyntheticData):
    """Deprecated name of :class:`SyntheticData` (kept for one release)."""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class Segments(DataTask):
    """The analysis segments of a fetched background, in ``<data dir>/segments/``:
    ``train.txt`` (and ``test.txt`` with ``--test-stop``), segwizard files, and ``segments.json``
    (the query; written last). With ``--train-start``/``--train-stop`` they are queried with
    ``aframe-data segments`` (DQSegDB or the open-data timeline: ``--segment-source``,
    ``--flags``, ``--vetoes``, ``--min-duration``); with ``--segments`` the given pairs are
    written as they are (no query)."""

    subcommand = "segments"

    @property
    def segments_dir(self) -> str:
        return join(self.data_root, "segments")

    def output(self):
        out = {
            "query": file_target(join(self.segments_dir, "segments.json")),
            "train": file_target(join(self.segments_dir, "train.txt")),
        }
        if self.train_start is not None and self.test_stop is not None:
            out["test"] = file_target(join(self.segments_dir, "test.txt"))
        return out

    def arguments(self) -> dict[str, Any]:
        end = self.test_stop if self.test_stop is not None else self.train_stop
        args = dict(
            out_dir=self.segments_dir, ifos=list(self.ifos), start=self.train_start, end=end,
            source=self.segment_source, min_duration=self.min_duration,
        )  # fmt: skip
        if self.test_stop is not None:
            args["train_stop"] = self.train_stop
        if self.flags:
            args["flags"] = list(self.flags)
        if self.vetoes:
            args["vetoes"] = list(self.vetoes)
        return args

    def run(self):
        if self.train_start is not None:
            return super().run()
        # given pairs: a two-column segments file (what igwn-segments' fromsegwizard reads)
        text = "".join(f"{_num(a)} {_num(b)}\n" for a, b in self.parsed_segments())
        write_bytes_atomic(join(self.segments_dir, "train.txt"), text.encode())
        query = {"source": "given", "segments": [list(p) for p in self.parsed_segments()]}
        write_bytes_atomic(self.output()["query"].path, json.dumps(query).encode())


class FetchBackground(DataTask):
    """Real strain over the training segments (``aframe-data fetch --segments
    <data dir>/segments/train.txt``): chunks of at most ``--max-duration`` on the source files'
    edges, ``--fetch-jobs`` in parallel, from frames (``--frametypes`` + ``--channels``, through
    gwdatafind) or open data; resumable (a rerun fetches only the missing files).
    ``fetch.json``, written last by aframe-data, marks it complete."""

    subcommand = "fetch"

    fetch_jobs = luigi.IntParameter(
        default=1, significant=False,
        description="chunks fetched in parallel (memory grows with it)",
    )  # fmt: skip
    skip_bad = luigi.BoolParameter(
        default=False, significant=False,
        description="keep going past chunks refused for holes (listed in refused.json)",
    )  # fmt: skip

    def requires(self):
        return Segments.req(self)

    def output(self):
        return file_target(join(self.data_root, "fetch.json"))

    def arguments(self) -> dict[str, Any]:
        args = dict(
            data_dir=self.data_root, ifos=list(self.ifos), sample_rate=self.sample_rate,
            segments=self.input()["train"].path, max_duration=self.max_duration,
            jobs=self.fetch_jobs, skip_bad=self.skip_bad,
        )  # fmt: skip
        if self.frametypes:
            args.update(frametypes=list(self.frametypes), channels=list(self.channels))
        return args


class FetchTestBackground(FetchBackground):
    """The test period's strain (``<data dir>/test``, over ``segments/test.txt``): evaluation's
    held-out background when the training background is fetched with ``--test-stop``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.train_start is None or self.test_stop is None:
            raise ParameterError(
                "a test period needs --train-start, --train-stop and --test-stop (the test "
                "period is [train-stop, test-stop))"
            )

    @property
    def test_root(self) -> str:
        return join(self.data_root, "test")

    def output(self):
        return file_target(join(self.test_root, "fetch.json"))

    def arguments(self) -> dict[str, Any]:
        return {
            **super().arguments(), "data_dir": self.test_root,
            "segments": self.input()["test"].path,
        }  # fmt: skip


class WaveformTask(DataTask):
    """IMRPhenomD waveforms (``aframe-data waveforms``) in one file of the data directory."""

    subcommand = "waveforms"
    filename = "waveforms.hdf5"
    stream = TRAIN_WAVEFORMS  # independent seed streams for the training and validation sets

    @property
    def num(self) -> int:
        return self.num_waveforms

    def output(self):
        return file_target(join(self.data_root, self.filename))

    def arguments(self) -> dict[str, Any]:
        return dict(
            path=self.output().path, num_waveforms=self.num, sample_rate=self.sample_rate,
            waveform_duration=self.waveform_duration, coalescence_time=self.coalescence_time,
            seed=self.seed, stream=self.stream, **self.waveform_population(),
        )  # fmt: skip


class TrainingWaveforms(WaveformTask):
    """``waveforms.hdf5``: the waveforms injected during training."""

    filename = "waveforms.hdf5"
    stream = TRAIN_WAVEFORMS


class ValidationWaveforms(WaveformTask):
    """``val_waveforms.hdf5``: the fixed set injected into validation background."""

    filename = "val_waveforms.hdf5"
    stream = VAL_WAVEFORMS

    @property
    def num(self) -> int:
        return self.num_val_waveforms


class TestWaveforms(WaveformTask):
    """``test_waveforms.hdf5``: the waveforms of the test split, from their own stream (not the
    validation set that chose the checkpoint)."""

    __test__ = False  # not a pytest class
    filename = "test_waveforms.hdf5"
    stream = TEST_WAVEFORMS

    @property
    def num(self) -> int:
        return self.waveform_counts()[TEST_WAVEFORMS]


class HeldOutBackground(DataTask):
    """Synthetic background that training never saw, for evaluation: the same IFOs as the
    training background, from the seed's held-out stream (``--background_stream 3``: numpy's
    ``SeedSequence(seed, spawn_key=(3,))``, which no training background of any seed draws), in
    ``<data>/heldout`` (``aframe-data synthetic`` with no waveforms). Its rate and length are
    the training background's unless
    ``--heldout-sample-rate`` (an integer multiple of the model's rate: the search resamples it,
    as deployment on 2048 Hz strain would) or ``--heldout-duration`` are given; the directory
    is then ``<data>/heldout-<rate>Hz-<seconds>s``."""

    subcommand = "synthetic"

    heldout_sample_rate = luigi.OptionalFloatParameter(
        default=None,
        description="rate (Hz) of the held-out strain; empty: --sample-rate (the training "
        "data's). A multiple of the model's rate, e.g. 2048 for a 512 Hz model",
    )
    heldout_duration = luigi.OptionalFloatParameter(
        default=None,
        description="seconds of held-out strain; empty: --background-duration",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rate, duration = self.heldout_sample_rate, self.heldout_duration
        if rate is not None:
            ratio = rate / self.sample_rate
            if not (rate > 0 and ratio >= 1 and math.isclose(ratio, round(ratio))):
                raise ParameterError(
                    f"--heldout-sample-rate={rate:g}: must be a whole multiple of "
                    f"--sample-rate={self.sample_rate:g} (the search only downsamples), "
                    f"e.g. {4 * self.sample_rate:g}"
                )
        if duration is not None and not duration >= self.segment_duration:
            raise ParameterError(
                f"--heldout-duration={duration:g}: must be at least --segment-duration="
                f"{self.segment_duration:g} (one file)"
            )

    @property
    def heldout_rate(self) -> float:
        return self.heldout_sample_rate or self.sample_rate

    @property
    def heldout_length(self) -> float:
        return self.heldout_duration or self.background_duration

    @property
    def heldout_root(self) -> str:
        if self.heldout_sample_rate is None and self.heldout_duration is None:
            return join(self.data_root, "heldout")  # where it always was
        rate, length = _num(self.heldout_rate), _num(self.heldout_length)
        return join(self.data_root, f"heldout-{rate}Hz-{length}s")

    def arguments(self) -> dict[str, Any]:
        return dict(
            data_dir=self.heldout_root, ifos=list(self.ifos), sample_rate=self.heldout_rate,
            background_duration=self.heldout_length, segment_duration=self.segment_duration,
            num_waveforms=0, num_val_waveforms=0, num_test_waveforms=0, seed=self.seed,
            background_stream=HELDOUT_BACKGROUND,
            **({"noise": self.noise_dict()} if self.noise else {}),  # the training noise model
        )  # fmt: skip

    def output(self):
        return file_target(join(self.heldout_root, MANIFEST))


class Data(DataParameters, law.WrapperTask):
    """A complete data directory: background (synthetic or fetched) and both waveform sets."""

    data_image = DataTask.data_image
    dev = SandboxTask.dev

    def requires(self):
        if self.background == "synthetic":
            return {"data": SyntheticData.req(self)}
        reqs = {
            "background": FetchBackground.req(self),
            "waveforms": TrainingWaveforms.req(self),
            "val_waveforms": ValidationWaveforms.req(self),
        }
        if self.waveform_counts()[TEST_WAVEFORMS] > 0:
            reqs["test_waveforms"] = TestWaveforms.req(self)
        return reqs


__all__ = [
    "Data",
    "FetchBackground",
    "FetchTestBackground",
    "Segments",
    "HeldOutBackground",
    "SyntheticBackground",
    "SyntheticData",
    "TestWaveforms",
    "TrainingWaveforms",
    "ValidationWaveforms",
]
