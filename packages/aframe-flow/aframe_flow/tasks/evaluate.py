"""``Evaluate``: ``aframe-train evaluate`` of a trained model; the output is its report.

The model is Train's output (``.req(self)``, so the same parameters train it first) or a given
``--model`` path. The background searched is never the training background:

- default (``--eval-data heldout``): :class:`~.data.HeldOutBackground`, synthetic noise like the
  training background's from a seed stream training never uses; for fetched training data, the
  test period ``[--train-stop, --test-stop)`` fetched by :class:`~.data.FetchTestBackground`
  (without ``--test-stop``: give ``--eval-data DIR`` with strain training never saw);
- ``--eval-data synthetic``: noise that ``aframe-train evaluate`` generates itself, from the
  stream ``EVALUATE`` of ``--seed`` (which no training background of any seed uses);
- ``--eval-data DIR``: a background directory (not the training data's).

The search settings (``aframe_lib.search.SearchSettings``: inference rate, batch size,
integration, clustering ...) are given as one JSON object, ``--search-settings``, each key passed
as evaluate's flag of that name; the device follows ``--gpus``.

The command runs on the host or in the train image (``--image``), on the GPU when ``--gpus`` is
given. Output, in ``--report-dir`` (local or ``s3://``; default
``<paths.base_dir>/eval/<data key>/<model key>/<eval data>-<hash>/code-<code hash>``, the code
hash being that of the sources that run, :mod:`~aframe_flow.code`): everything the evaluation
writes (``report.md``, plots, event files), ``eval_data.json`` (which data were scored), and
``numbers.txt``, the key numbers as ``name: value`` lines, written atomically and last: the
report counts as done only once it exists.

With an ``s3://`` base directory (the cluster pipeline's) the held-out background is written
there like every other output; evaluate reads local strain, so the task fetches it into a
temporary directory (deleted afterwards) before the command runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import luigi

from ..base import digest
from ..code import source_digest
from ..parameters import ParameterError, PathParameter
from ..sandbox import run_command
from ..targets import (
    atomic_local_path,
    file_target,
    filesystem,
    get_directory,
    is_remote,
    join,
)
from ..targets import write_bytes_atomic as write_atomic
from .data import EVALUATE, HELDOUT_BACKGROUND, FetchTestBackground, HeldOutBackground
from .train import Train, TrainBase, resolve_config

NUMBER_LINE = re.compile(r"^(\w[\w.]*): (\S+)$")
# what a remote --report-dir receives (the injected foreground strain stays behind)
REPORT_FILES = (
    "report.md", "efficiency.png", "roc.png", "distance.png", "stats.png",
    "background_events.hdf5", "foreground_events.hdf5", "injection_results.hdf5",
    "foreground/injections.hdf5",
)  # fmt: skip
KEYWORDS = ("heldout", "synthetic")


class EvalDataParameter(PathParameter):
    """``heldout``, ``synthetic``, or a directory (made absolute like any path)."""

    def _get_value_from_config(self, section, name):
        value = luigi.Parameter._get_value_from_config(self, section, name)
        if value in ("", *KEYWORDS):
            return value
        return super()._get_value_from_config(section, name)

    def normalize(self, x):
        return x if x in ("", *KEYWORDS) else super().normalize(x)


class Evaluate(TrainBase):
    """Measure a trained model's false-alarm rates and sensitivity with ``aframe-train
    evaluate`` on data it was not trained on; the output is the report directory."""

    config = PathParameter(
        default="",
        description="training config (YAML) of the Train task that makes the model; not needed "
        "with --model",
    )
    model = PathParameter(
        default="",
        description="exported model (model.pt with model.json beside it), local or s3://; "
        "empty: the model of Train with these parameters (trained first when missing)",
    )
    eval_data = EvalDataParameter(
        default="heldout",
        description="background to search: 'heldout' (synthetic noise from a seed stream "
        "training never uses, made by HeldOutBackground), 'synthetic' (noise aframe-train "
        "evaluate generates, seed disjoint from training's), or a local background directory "
        "(never the training data's)",
    )
    heldout_sample_rate = HeldOutBackground.heldout_sample_rate
    heldout_duration = HeldOutBackground.heldout_duration
    report_dir = PathParameter(
        default="",
        description="report directory, local or s3://, used as it is; empty: "
        "<paths.base_dir>/eval/<data key>/<model key>/<eval data>-<hash>",
    )
    livetime = luigi.OptionalFloatParameter(
        default=None, description="seconds of timeslide background; empty: evaluate's default"
    )
    num_injections = luigi.OptionalIntParameter(
        default=None, description="most injections; empty: evaluate's default"
    )
    search_settings = luigi.DictParameter(
        default={},
        description="search settings of aframe-train evaluate as JSON, e.g. "
        '{"cluster_window": 4, "batch_size": 256} (fields of aframe_lib.search.SearchSettings, '
        "each passed as its --flag; the device comes from --gpus); empty: evaluate's defaults",
    )
    code_hash = luigi.Parameter(
        default="",
        description="hash of the code the report is keyed by; empty: that of the installed "
        "aframe packages' sources (or the image, and with --dev the working tree's), "
        "so a report made by other code is not reused. Give an older report's hash (the "
        "code-<hash> part of its directory) to reuse it",
    )
    eval_args = luigi.ListParameter(
        default=[],
        description="more aframe-train evaluate flags as a JSON list, e.g. "
        '["--injection_spacing", "10", "--fars_per_year", "[1, 12]"] (search settings: '
        "--search-settings)",
    )

    def __init__(self, *args, **kwargs):
        # TrainBase's own check needs --config; here it is needed only to train the model
        super(TrainBase, self).__init__(*args, **kwargs)
        self.config_path = resolve_config(self.config) if self.config else None
        self.check_model()
        eval_data = self.eval_data or "heldout"
        if eval_data == "heldout" and self.background != "synthetic" and self.test_stop is None:
            raise ParameterError(
                f"Evaluate: no held-out data for --background={self.background}: give "
                "--test-stop (the test period after --train-stop, fetched), --eval-data DIR "
                "(strain the model was not trained on) or --eval-data synthetic"
            )
        if eval_data not in KEYWORDS:
            if is_remote(eval_data) or not os.path.exists(eval_data):
                raise ParameterError(
                    f"--eval-data={self.eval_data}: no such local directory or file; give a "
                    "background directory, 'heldout' or 'synthetic'"
                )
            if os.path.realpath(eval_data) == os.path.realpath(self.data_root):
                raise ParameterError(
                    f"--eval-data={self.eval_data} is the training background: its numbers "
                    "would be biased; give held-out strain, 'heldout' or 'synthetic'"
                )
        heldout_shape = {"--heldout-sample-rate": self.heldout_sample_rate,
                         "--heldout-duration": self.heldout_duration}  # fmt: skip
        given = [k for k, v in heldout_shape.items() if v is not None]
        if given and eval_data != "heldout":
            raise ParameterError(
                f"{', '.join(given)} shape the held-out background, which --eval-data="
                f"{self.eval_data} does not use; drop them or use --eval-data heldout"
            )
        if given:
            HeldOutBackground.req(self)  # checks them now, not when the graph runs
        self.check_search_settings()
        for name in ("livetime", "num_injections"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ParameterError(f"--{name.replace('_', '-')}={value}: must be positive")

    def check_model(self) -> None:
        if not (self.model or self.config):
            raise ParameterError(
                "Evaluate needs a model: give --model PATH/model.pt, or --config FILE so that "
                "Train makes one"
            )
        if self.model and not is_remote(self.model) and not os.path.isfile(self.model):
            raise ParameterError(
                f"--model={self.model}: no such file; give an exported model.pt (with its "
                "model.json beside it), or leave --model empty to train one"
            )

    def check_search_settings(self) -> None:
        """Each key of ``--search-settings`` must be a search setting (checked against
        aframe-lib's ``SearchSettings`` where aframe-lib is installed; imported here, lazily)."""
        keys = set(self.search_settings)
        if "device" in keys:
            raise ParameterError(
                "--search-settings: 'device' is set by --gpus (cuda with GPUs, else cpu); "
                "drop it from the settings"
            )
        try:
            from aframe_lib.search.settings import SearchSettings
        except ImportError:  # a host without aframe-lib: the command itself checks them
            return
        unknown = sorted(keys - set(SearchSettings.names()))
        if unknown:
            raise ParameterError(
                f"--search-settings: unknown setting(s) {unknown}; the settings are "
                f"{list(SearchSettings.names())} (other evaluate flags go in --eval-args)"
            )

    def search_settings_args(self) -> list[str]:
        """``--device`` (from ``--gpus``) and one ``--NAME VALUE`` per ``--search-settings`` key."""
        args = ["--device", "cuda" if self.gpus else "cpu"]
        for key, value in self.search_settings.items():
            args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        return args

    @property
    def eval_seed(self) -> int:
        """Seed given to evaluate: ``--seed``; evaluate draws its noise and injections from
        that seed's streams 10-12, which no training data use."""
        return self.seed

    def model_key(self) -> str:
        """The part of the report location that names the model."""
        if self.model:
            return f"model-{digest(self.model)}"
        return self.train_key

    def store_parts(self) -> tuple[str, ...]:
        kind = self.eval_data if self.eval_data in ("", *KEYWORDS) else "data"
        settings = [dict(self.search_settings)] if self.search_settings else []  # old keys kept
        # the held-out shape only when given: the keys of existing reports stay put
        shape = [self.heldout_sample_rate, self.heldout_duration]
        shape = [shape] if any(x is not None for x in shape) else []
        key = digest(
            self.eval_data, self.livetime, self.num_injections, self.eval_args, *settings, *shape
        )
        code = f"code-{self.code_key}"
        return ("eval", self.data_key, self.model_key(), f"{kind or 'heldout'}-{key}", code)

    @property
    def code_key(self) -> str:
        """``--code-hash``, else the hash of the code the command runs (see ..code)."""
        return self.code_hash or source_digest(self.image_path, self.dev)

    def explicit_dir(self) -> str:
        return self.report_dir

    @property
    def report_root(self) -> str:
        return self.default_dir(self.report_dir, *self.store_parts())

    @property
    def data_path(self) -> str | None:
        """The background given to evaluate (``None``: its own synthetic noise)."""
        if self.eval_data == "synthetic":
            return None
        if self.eval_data in ("", "heldout"):
            if self.background == "fetch":  # the test period
                return FetchTestBackground.req(self).test_root
            return HeldOutBackground.req(self).heldout_root
        return self.eval_data

    def eval_data_info(self) -> dict:
        """Which data are scored (written to ``eval_data.json`` and logged)."""
        if self.eval_data == "synthetic":
            return {"kind": "synthetic", "seed": self.eval_seed, "stream": EVALUATE,
                    "training_seed": self.seed}  # fmt: skip
        if self.eval_data in ("", "heldout") and self.background == "fetch":
            return {
                "kind": "test period",
                "path": self.data_path,
                "gps": [self.train_stop, self.test_stop],
                "training_data": self.data_root,
            }
        if self.eval_data in ("", "heldout"):
            heldout = HeldOutBackground.req(self)
            return {"kind": "heldout", "path": self.data_path,
                    "seed": self.seed, "stream": HELDOUT_BACKGROUND,
                    "training_data": self.data_root,
                    "sample_rate": heldout.heldout_rate,
                    "duration": heldout.heldout_length}  # fmt: skip
        return {"kind": "directory", "path": self.data_path, "training_data": self.data_root}

    def model_requirement(self):
        return Train.req(self)

    def requires(self):
        reqs = {}
        if not self.model:
            reqs["train"] = self.model_requirement()
        if self.eval_data in ("", "heldout"):
            fetched = self.background == "fetch"
            reqs["data"] = (FetchTestBackground if fetched else HeldOutBackground).req(self)
        return reqs

    def model_path(self) -> str:
        if self.model:
            return self.model
        return self.input()["train"]["model"].path

    def output(self):
        return {
            "report": file_target(join(self.report_root, "report.md")),
            "numbers": file_target(join(self.report_root, "numbers.txt")),
        }

    def binds(self) -> list[str]:
        paths = [os.path.dirname(self.model_path())]
        if self.data_path:
            paths.append(self.data_path)
        if self.config_path:
            paths.append(os.path.dirname(self.config_path))
        return [*paths, self.report_root]

    def command(self, model: str, out: str, data: str | None = None) -> list[str]:
        """The evaluate command; ``data``: a local copy of :attr:`data_path` to search (the
        held-out background of a remote base directory, fetched by :meth:`run`)."""
        entry = self.executable("aframe-train")
        args = ["--model", model, "--out", out, "--seed", str(self.eval_seed),
                "--progress", "false"]  # fmt: skip
        args += self.search_settings_args()
        if data or self.data_path:
            args += ["--data", data or self.data_path]
        if self.livetime is not None:
            args += ["--livetime", f"{self.livetime:g}"]
        if self.num_injections is not None:
            args += ["--num_injections", str(self.num_injections)]
        if self.population and not self.model:  # the population Train's data were drawn from
            args += ["--population", json.dumps(self.population_dict())]
        if self.noise and not self.data_path:  # evaluate's own noise: the data's noise model
            args += ["--noise", json.dumps(self.noise_dict())]
        return [*entry, "evaluate", *args, *[str(a) for a in self.eval_args]]

    def run(self):
        remote = is_remote(self.report_root)
        model = self.model_path()
        info = json.dumps(self.eval_data_info(), indent=2)
        print(f"Evaluate: scoring {model} on {info}", flush=True)
        with tempfile.TemporaryDirectory(prefix="aframe-eval-") as tmp:
            if is_remote(model):  # evaluate reads local files: fetch model.pt + model.json
                for name in ("model.pt", "model.json"):
                    src = join(model.rsplit("/", 1)[0], name)
                    remote_fs, inner = filesystem(src)
                    remote_fs.get_file(inner, os.path.join(tmp, name))
                model = os.path.join(tmp, "model.pt")
            data = None
            if self.data_path and is_remote(self.data_path):
                # evaluate reads local strain: the held-out background of an s3:// base dir
                # (written there by HeldOutBackground like every other output) is fetched
                data = os.path.join(tmp, "data")
                count = get_directory(self.data_path, data)
                print(f"Evaluate: fetched {count} file(s) of {self.data_path}", flush=True)
            out = os.path.join(tmp, "report") if remote else os.path.abspath(self.report_root)
            if not remote:
                os.makedirs(out, exist_ok=True)
            numbers = self._run_and_collect(self.command(model, out, data))
            if not numbers:
                raise RuntimeError("aframe-train evaluate printed no `name: value` numbers")
            if remote:
                for name in REPORT_FILES:
                    if os.path.exists(os.path.join(out, name)):
                        with atomic_local_path(join(self.report_root, name)) as dst:
                            shutil.copyfile(os.path.join(out, name), dst)
        write_atomic(join(self.report_root, "eval_data.json"), info.encode())
        text = "".join(f"{k}: {v}\n" for k, v in numbers)
        write_atomic(join(self.report_root, "numbers.txt"), text.encode())  # last

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
