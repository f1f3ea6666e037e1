"""Data tasks: background strain (synthetic, or fetched with gwpy) and waveform sets.

All write into one data directory laid out as aframe-lib's training Dataset reads it
(``background-*.hdf5``, ``waveforms.hdf5``, ``val_waveforms.hdf5``). :class:`Data` requires
whichever background ``--background`` asks for and both waveform sets.
"""

from __future__ import annotations

import math

import law
import luigi

from .. import payloads
from ..base import DataParameters
from ..config import paths
from ..sandbox import Sandbox, resolve_image
from ..targets import file_target, join


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

    def run_payload(self, args: list[str]) -> None:
        """``python -m aframe_flow.payloads ARGS`` in the data image, or in-process without one."""
        if self.image_path is None:
            payloads.main(args)
            return
        sandbox = Sandbox(image=self.image_path, binds=[self.data_root], dev=self.dev)
        sandbox.run(["python", "-m", "aframe_flow.payloads", *args])


class SyntheticBackground(DataTask):
    """Coloured Gaussian background from the aLIGO design PSD; ``background.json`` marks done."""

    def output(self):
        return file_target(join(self.data_root, payloads.MANIFEST))

    def run(self):
        self.run_payload(
            ["background", "--out", self.data_root, "--ifos", *self.ifos,
             "--sample-rate", str(self.sample_rate), "--duration", str(self.background_duration),
             "--segment-duration", str(self.segment_duration), "--seed", str(self.seed)]
        )  # fmt: skip


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
    stream = 1  # independent seed streams for the training and validation sets

    @property
    def num(self) -> int:
        return self.num_waveforms

    def output(self):
        return file_target(join(self.data_root, self.filename))

    def run(self):
        seed = self.seed * 1000 + self.stream
        self.run_payload(
            ["waveforms", "--out", self.output().path, "--num", str(self.num),
             "--sample-rate", str(self.sample_rate), "--duration", str(self.waveform_duration),
             "--coalescence-time", str(self.coalescence_time), "--seed", str(seed)]
        )  # fmt: skip


class TrainingWaveforms(WaveformTask):
    """``waveforms.hdf5``: the waveforms injected during training."""

    filename = "waveforms.hdf5"
    stream = 1


class ValidationWaveforms(WaveformTask):
    """``val_waveforms.hdf5``: the fixed set injected into validation background."""

    filename = "val_waveforms.hdf5"
    stream = 2

    @property
    def num(self) -> int:
        return self.num_val_waveforms


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
    "SyntheticBackground",
    "TrainingWaveforms",
    "ValidationWaveforms",
]
