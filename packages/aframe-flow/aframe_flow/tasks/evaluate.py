"""``Evaluate``: ``aframe-train evaluate`` of a trained model; the output is its report.

The model is Train's output (``.req(self)``, so the same parameters train it first) or a given
``--model`` path; the background searched is the Data task's directory, another directory
(``--eval-data``), or ``synthetic`` (noise that ``aframe-train evaluate`` generates itself from
the aLIGO design PSD). The command runs on the host or in the train image (``--image``), on the
GPU when ``--gpus`` is given.

Output, in ``--report-dir`` (local or ``s3://``; default ``<paths.base_dir>/eval``): everything
the evaluation writes (``report.md``, plots, event files) and ``numbers.txt``, the key numbers as
``name: value`` lines, written atomically and last: the report counts as done only once it exists.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import luigi

from aframe_lib.utils import fs

from ..parameters import ParameterError
from ..sandbox import run_command
from ..targets import file_target, join
from .data import Data
from .train import Train, TrainBase, aframe_train_executable, resolve_config

NUMBER_LINE = re.compile(r"^(\w[\w.]*): (\S+)$")
# what a remote --report-dir receives (the injected foreground strain stays behind)
REPORT_FILES = (
    "report.md", "efficiency.png", "roc.png", "distance.png", "stats.png",
    "background_events.hdf5", "foreground_events.hdf5", "injection_results.hdf5",
    "foreground/injections.hdf5",
)  # fmt: skip


class Evaluate(TrainBase):
    """Measure a trained model's false-alarm rates and sensitivity with ``aframe-train
    evaluate``; the output is the report directory."""

    config = luigi.Parameter(
        default="",
        description="training config (YAML) of the Train task that makes the model; not needed "
        "with --model",
    )
    model = luigi.Parameter(
        default="",
        description="exported model (model.pt with model.json beside it), local or s3://; "
        "empty: the model of Train with these parameters (trained first when missing)",
    )
    eval_data = luigi.Parameter(
        default="",
        description="background directory to search (local); empty: the Data task's directory "
        "(the training background: give held-out data for unbiased numbers); 'synthetic': "
        "noise from the aLIGO design PSD that aframe-train evaluate generates",
    )
    report_dir = luigi.Parameter(
        default="", description="report directory, local or s3://; empty: <paths.base_dir>/eval"
    )
    livetime = luigi.OptionalFloatParameter(
        default=None, description="seconds of timeslide background; empty: evaluate's default"
    )
    num_injections = luigi.OptionalIntParameter(
        default=None, description="most injections; empty: evaluate's default"
    )
    eval_args = luigi.ListParameter(
        default=[],
        description='more aframe-train evaluate flags as a JSON list, e.g. ["--psd_length", '
        '"16", "--fars_per_year", "[1, 12]"]',
    )

    def __init__(self, *args, **kwargs):
        # TrainBase's own check needs --config; here it is needed only to train the model
        super(TrainBase, self).__init__(*args, **kwargs)
        if not (self.model or self.config):
            raise ParameterError(
                "Evaluate needs a model: give --model PATH/model.pt, or --config FILE so that "
                "Train makes one"
            )
        self.config_path = resolve_config(self.config) if self.config else None
        if self.model and not fs.is_remote(self.model):
            if not os.path.isfile(os.path.expanduser(self.model)):
                raise ParameterError(
                    f"--model={self.model}: no such file; give an exported model.pt (with its "
                    "model.json beside it), or leave --model empty to train one"
                )
        if self.eval_data not in ("", "synthetic"):
            if fs.is_remote(self.eval_data) or not os.path.exists(self.eval_data):
                raise ParameterError(
                    f"--eval-data={self.eval_data}: no such local directory or file; give a "
                    "background directory, 'synthetic', or nothing for the Data task's"
                )
        if self.data_path and fs.is_remote(self.data_path):
            raise ParameterError(
                f"the background to evaluate on, {self.data_path}, is remote; aframe-train "
                "evaluate reads local strain only: give --eval-data DIR or --eval-data synthetic"
            )
        for name in ("livetime", "num_injections"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ParameterError(f"--{name.replace('_', '-')}={value}: must be positive")

    @property
    def report_root(self) -> str:
        return self.default_dir(self.report_dir, "eval")

    @property
    def data_path(self) -> str | None:
        """The background given to evaluate (``None``: its own synthetic noise)."""
        if self.eval_data == "synthetic":
            return None
        path = self.eval_data or self.data_root
        return path if fs.is_remote(path) else os.path.abspath(os.path.expanduser(path))

    def requires(self):
        reqs = {}
        if not self.model:
            reqs["train"] = Train.req(self)
        if not self.eval_data:
            reqs["data"] = Data.req(self)
        return reqs

    def model_path(self) -> str:
        if self.model:
            return self.model if fs.is_remote(self.model) else os.path.abspath(self.model)
        return self.input()["train"]["model"].path

    def output(self):
        return {
            "report": file_target(join(self.report_root, "report.md")),
            "numbers": file_target(join(self.report_root, "numbers.txt")),
        }

    def binds(self) -> list[str]:
        paths = [os.path.dirname(self.model_path()) if self.model else self.run_root]
        if self.data_path:
            paths.append(self.data_path)
        if self.config_path:
            paths.append(os.path.dirname(self.config_path))
        return [*paths, self.report_root]

    def command(self, model: str, out: str) -> list[str]:
        entry = ["aframe-train"] if self.image_path else aframe_train_executable()
        args = ["--model", model, "--out", out, "--seed", str(self.seed), "--progress", "false"]
        args += ["--device", "cuda" if self.gpus else "cpu"]
        if self.data_path:
            args += ["--data", self.data_path]
        if self.livetime is not None:
            args += ["--livetime", f"{self.livetime:g}"]
        if self.num_injections is not None:
            args += ["--num_injections", str(self.num_injections)]
        return [*entry, "evaluate", *args, *[str(a) for a in self.eval_args]]

    def run(self):
        remote = fs.is_remote(self.report_root)
        model = self.model_path()
        with tempfile.TemporaryDirectory(prefix="aframe-eval-") as tmp:
            if fs.is_remote(model):  # evaluate reads local files: fetch model.pt + model.json
                for name in ("model.pt", "model.json"):
                    src = join(model.rsplit("/", 1)[0], name)
                    filesystem, inner = fs.filesystem(src)
                    filesystem.get_file(inner, os.path.join(tmp, name))
                model = os.path.join(tmp, "model.pt")
            out = os.path.join(tmp, "report") if remote else os.path.abspath(self.report_root)
            if not remote:
                os.makedirs(out, exist_ok=True)
            numbers = self._run_and_collect(self.command(model, out))
            if not numbers:
                raise RuntimeError("aframe-train evaluate printed no `name: value` numbers")
            if remote:
                for name in REPORT_FILES:
                    if os.path.exists(os.path.join(out, name)):
                        with fs.atomic_local_path(join(self.report_root, name)) as dst:
                            shutil.copyfile(os.path.join(out, name), dst)
        text = "".join(f"{k}: {v}\n" for k, v in numbers)
        fs.write_bytes_atomic(join(self.report_root, "numbers.txt"), text.encode())  # last

    def _run_and_collect(self, argv: list[str]) -> list[tuple[str, str]]:
        """Run the command in the sandbox, echoing its output; its ``name: value`` lines."""
        box = self.sandbox()
        if box.image is not None and shutil.which(box.executable) is None:
            raise RuntimeError(
                f"{box.executable} is not installed here: run with an image only where "
                "Apptainer exists, or drop --image to run on the host"
            )
        cmd = box.command(argv)
        numbers = []

        def collect(line: str) -> None:
            if m := NUMBER_LINE.match(line.rstrip("\n")):
                numbers.append(m.groups())

        # echoes the output; a failure raises CommandError carrying the command's error block
        run_command(cmd, env=box.environment(), argv=argv, on_stdout=collect)
        return numbers
