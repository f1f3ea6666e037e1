"""Data tasks: background strain (synthetic, or fetched with gwpy) and waveform sets.

All write into one data directory laid out as aframe-lib's training Dataset reads it
(``background-*.hdf5``, ``waveforms.hdf5``, ``val_waveforms.hdf5``), by default
``<paths.base_dir>/data/<data key>`` (keyed by every data parameter). :class:`Data` requires
whichever background ``--background`` asks for and both waveform sets. :class:`HeldOutBackground`
is evaluation's: more synthetic noise in ``<data dir>/heldout/``, from a seed stream disjoint
from every one training uses (:func:`stream_seed`).

The generators are aframe-lib's (torch, ml4gw): on the host they need ``aframe-flow[local]``;
a login-node install runs them in the data image (``--data-image data.sif``).
"""

from __future__ import annotations

import importlib.util
import math

import law
import luigi

from .. import payloads
from ..base import DataParameters
from ..config import paths
from ..parameters import ParameterError
from ..sandbox import Sandbox, resolve_image
from ..targets import file_target, join

# seed streams of one --seed: training background (the seed itself), training and validation
# waveforms, held-out background, and aframe-train evaluate's own noise (it uses E, E+1, E+2)
TRAIN_WAVEFORMS, VAL_WAVEFORMS, HELDOUT_BACKGROUND, EVALUATE = 1, 2, 3, 10


def stream_seed(seed: int, stream: int) -> int:
    """The seed of one stream: ``seed * 1000 + stream`` (never ``seed`` itself for seed >= 0)."""
    return seed * 1000 + stream


class DataTask(DataParameters):
    """A data task: its payload runs in-process, or in the data image with ``--data-image``."""

    exclude_index = True

    data_image = luigi.Parameter(
        default="",
        description="Apptainer image for data tasks (.sif path or a name in "
        "paths.container_root); empty: run in this process",
    )
    dev = luigi.BoolParameter(
        default=False, description="bind the working tree's packages over the image's ones"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.image_path = (
            resolve_image(self.data_image, paths().container_root) if self.data_image else None
        )
        if self.image_path is None and importlib.util.find_spec("aframe_lib") is None:
            raise ParameterError(
                f"{self.task_family}: the data generators need aframe-lib (torch), which this "
                "install lacks: give --data-image data.sif (see projects/quickstart/apptainer.def)"
                ", or pip install 'aframe-flow[local]'"
            )

    def run_payload(self, args: list[str]) -> None:
        """``python -m aframe_flow.payloads ARGS`` in the data image, or in-process without one."""
        if self.image_path is None:
            payloads.main(args)
            return
        sandbox = Sandbox(image=self.image_path, binds=[self.data_root], dev=self.dev)
        sandbox.run(["python", "-m", "aframe_flow.payloads", *args])

    def run_background(self, out: str, seed: int) -> None:
        """Synthetic background of this task's IFOs, rate and durations into ``out``."""
        self.run_payload(
            ["background", "--out", out, "--ifos", *self.ifos,
             "--sample-rate", str(self.sample_rate), "--duration", str(self.background_duration),
             "--segment-duration", str(self.segment_duration), "--seed", str(seed)]
        )  # fmt: skip


class SyntheticBackground(DataTask):
    """Coloured Gaussian background from the aLIGO design PSD; ``background.json`` marks done."""

    def output(self):
        return file_target(join(self.data_root, payloads.MANIFEST))

    def run(self):
        self.run_background(self.data_root, self.seed)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class FetchBackground(DataTask, law.LocalWorkflow):
    """Real strain via gwpy, one branch per chunk (at most ``--max-duration``) of a segment."""

    def create_branch_map(self):
        chunks = []
        for start, end in self.parsed_segments():
            n = math.ceil((end - start) / self.max_duration)
            edges = [start + i * self.max_duration for i in range(n)] + [end]
            chunks += list(zip(edges[:-1], edges[1:], strict=True))
        return dict(enumerate(chunks))

    def output(self):
        start, end = self.branch_data
        name = f"background-{_num(start)}-{_num(end - start)}.hdf5"
        return file_target(join(self.data_root, name))

    def run(self):
        start, end = self.branch_data
        args = ["fetch", "--out", self.output().path, "--ifos", *self.ifos, "--start", str(start),
                "--end", str(end), "--sample-rate", str(self.sample_rate)]  # fmt: skip
        if self.channels:
            args += ["--channels", *self.channels]
        self.run_payload(args)


class WaveformTask(DataTask):
    """IMRPhenomD waveforms (aframe-lib's generator) in one file of the data directory."""

    exclude_index = True
    filename = "waveforms.hdf5"
    stream = TRAIN_WAVEFORMS  # independent seed streams for the training and validation sets

    @property
    def num(self) -> int:
        return self.num_waveforms

    def output(self):
        return file_target(join(self.data_root, self.filename))

    def run(self):
        seed = stream_seed(self.seed, self.stream)
        self.run_payload(
            ["waveforms", "--out", self.output().path, "--num", str(self.num),
             "--sample-rate", str(self.sample_rate), "--duration", str(self.waveform_duration),
             "--coalescence-time", str(self.coalescence_time), "--seed", str(seed)]
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


class HeldOutBackground(DataTask):
    """Synthetic background that training never saw, for evaluation: the same IFOs, rate and
    duration as the training background, from the held-out seed stream, in ``<data>/heldout``."""

    @property
    def heldout_root(self) -> str:
        return join(self.data_root, "heldout")

    @property
    def heldout_seed(self) -> int:
        return stream_seed(self.seed, HELDOUT_BACKGROUND)

    def output(self):
        return file_target(join(self.heldout_root, payloads.MANIFEST))

    def run(self):
        self.run_background(self.heldout_root, self.heldout_seed)


class Data(DataParameters, law.WrapperTask):
    """A complete data directory: background (synthetic or fetched) and both waveform sets."""

    data_image = DataTask.data_image
    dev = DataTask.dev

    def requires(self):
        background = SyntheticBackground if self.background == "synthetic" else FetchBackground
        return {
            "background": background.req(self),
            "waveforms": TrainingWaveforms.req(self),
            "val_waveforms": ValidationWaveforms.req(self),
        }


__all__ = [
    "Data",
    "FetchBackground",
    "HeldOutBackground",
    "SyntheticBackground",
    "TrainingWaveforms",
    "ValidationWaveforms",
]
