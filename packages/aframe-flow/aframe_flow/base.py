"""The framework: base tasks every aframe task builds on.

- :class:`AframeTask`: a ``law.Task`` whose directories default to ``[paths] base_dir``, below it
  at locations keyed by the task's significant parameters (law's ``store_parts`` idiom: readable
  names plus a short hash), so a changed parameter gives new outputs and an unchanged one reuses
  them. A directory given explicitly (``--data-dir``, ``--run-dir`` ...) is used as it is.
- :class:`DataParameters`: what a dataset is (IFOs, rate, source, sizes, seed), shared by the data
  tasks and everything downstream so that ``.req(self)`` hands it on unchanged.
- :class:`SandboxTask`: ``--image``, ``--dev`` and ``--gpus``, checked when the task is built,
  :meth:`SandboxTask.executable` (a console script in the image, or beside this interpreter) and
  :meth:`SandboxTask.sandbox` giving the :class:`~aframe_flow.sandbox.Sandbox` to run commands in:
  the one path by which every task (training, data, evaluation) runs its command.

Task modules (``aframe_flow.tasks``) hold the concrete tasks; nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import law
import luigi

from . import config
from .declared import STREAMS, SYNTHETIC, declared_parameters
from .parameters import GpusParameter, IfosParameter, ParameterError, PathParameter
from .sandbox import Sandbox, local_executable, resolve_image
from .targets import exists, is_remote, join, read_bytes, write_bytes_atomic


def digest(*values) -> str:
    """A short stable hash of JSON-able values (the hash part of an output location)."""
    text = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def file_digest(path: str | None) -> str:
    """The hash of a file's content ('' for no file): a changed config gives new outputs."""
    if not path:
        return ""
    data = read_bytes(path) if is_remote(path) else open(path, "rb").read()
    return hashlib.sha256(data).hexdigest()[:16]


def number(x: float) -> str:
    return f"{float(x):g}"


class AframeTask(law.Task):
    """Base of every aframe task."""

    exclude_index = True

    @staticmethod
    def default_dir(value: str, *parts: str) -> str:
        """``value`` if given, else ``<paths.base_dir>/<parts...>`` (the keyed location)."""
        return value or join(config.paths().base_dir, *parts)

    def store_parts(self) -> tuple[str, ...]:
        """The parts of this task's keyed output location below ``paths.base_dir``."""
        return ()

    def explicit_dir(self) -> str:
        """The output directory given explicitly (used unkeyed); empty: the keyed location."""
        return ""

    def _stamp(self) -> str:
        return join(self.explicit_dir(), f".aframe-{self.task_family}.json")

    def on_success(self):
        # an explicit directory remembers which parameters filled it (see complete())
        if self.explicit_dir() and self.store_parts():
            text = json.dumps({"task": self.task_family, "key": "/".join(self.store_parts())})
            write_bytes_atomic(self._stamp(), text.encode())
        return super().on_success()

    def complete(self):
        """Complete when the outputs exist; in an explicit directory that other parameters
        filled, a :class:`ParameterError` rather than the other parameters' outputs."""
        done = super().complete()
        if done and self.explicit_dir() and self.store_parts() and exists(self._stamp()):
            found = json.loads(read_bytes(self._stamp()))["key"]
            if found != "/".join(self.store_parts()):
                raise ParameterError(
                    f"{self.task_family}: {self.explicit_dir()} holds the outputs of other "
                    f"parameters ({found}, not {'/'.join(self.store_parts())}); give another "
                    "directory, or none for the location keyed by the parameters"
                )
        return done


def _with_declared(cls):
    """Add aframe-lib's declared synthetic settings (:mod:`~aframe_flow.declared`) to ``cls``:
    one parameter each, named, typed, defaulted and described as aframe-lib declares it."""
    for name, param in declared_parameters(skip=("ifos",)).items():
        setattr(cls, name, param)
        if hasattr(param, "__set_name__"):  # as a class body would (luigi's descriptors)
            param.__set_name__(cls, name)
    return cls


@_with_declared
class DataParameters(AframeTask):
    """The dataset a task makes or reads: every data task and the tasks after them take these.

    The synthetic settings (``sample_rate``, ``seed``, ``background_duration``,
    ``segment_duration``, ``num_waveforms``, ``num_val_waveforms``, ``num_test_waveforms``,
    ``waveform_duration``, ``coalescence_time``, ``population``, ``noise``) are not written
    here: they are aframe-lib's ``ensure_synthetic_dataset`` arguments, by the same names,
    defaults and help (:func:`~aframe_flow.declared.declared_parameters`). The rest are flow's own.
    """

    exclude_index = True

    ifos = IfosParameter(
        default=tuple(SYNTHETIC["ifos"]["default"]),
        description="comma-separated interferometers, e.g. H1,L1",
    )
    data_dir = PathParameter(
        default="",
        description="data directory, local or s3://, used as it is; empty: "
        "<paths.base_dir>/data/<data key> (keyed by the data parameters)",
    )
    background = luigi.ChoiceParameter(
        default="synthetic",
        choices=["synthetic", "fetch"],
        description="synthetic: coloured Gaussian noise (offline); fetch: real strain over "
        "--segments or the queried --train-start/--train-stop segments (open data, or "
        "--frametypes/--channels frames)",
    )
    segments = law.CSVParameter(
        default=(),
        description="fetched background: GPS segments as start-end pairs, e.g. "
        "1238166018-1238170114,1238180000-1238184096",
    )
    max_duration = luigi.FloatParameter(
        default=4096.0, description="fetched background: longest file (s); segments are chunked"
    )
    channels = law.CSVParameter(
        default=(),
        description="fetched background: one frame channel per IFO (H1:GDS-CALIB_STRAIN,...), "
        "read from the --frametypes frames; empty: open data (GWOSC)",
    )
    frametypes = law.CSVParameter(
        default=(),
        description="fetched background: one frame type per IFO (H1_HOFT_C00,...), found with "
        "gwdatafind (GWDATAFIND_SERVER); empty: open data",
    )
    train_start = luigi.OptionalFloatParameter(
        default=None,
        description="fetched background: GPS start of the training period; its segments are "
        "queried (aframe-data segments) instead of given by --segments",
    )
    train_stop = luigi.OptionalFloatParameter(
        default=None, description="fetched background: GPS end of the training period"
    )
    test_stop = luigi.OptionalFloatParameter(
        default=None,
        description="fetched background: GPS end of the test period after --train-stop "
        "(its segments are written beside the training ones); empty: no test period",
    )
    flags = law.CSVParameter(
        default=(),
        description="data-quality flags every IFO must pass (H1:DMT-ANALYSIS_READY:1,... or "
        "H1_DATA,... for --segment-source gwosc); empty: each IFO's analysis-ready flag",
    )
    vetoes = law.CSVParameter(
        default=(), description="veto flags whose active time is removed (DQSegDB)"
    )
    segment_source = luigi.ChoiceParameter(
        default="dqsegdb",
        choices=["dqsegdb", "gwosc"],
        description="where --train-start/--train-stop segments come from: DQSegDB "
        "(DEFAULT_SEGMENT_SERVER) or the open-data timeline (GWOSC_SERVER_URL)",
    )
    min_duration = luigi.FloatParameter(
        default=0.0, description="fetched background: shortest segment kept (s)"
    )

    def data_params(self) -> dict:
        """The parameters that decide what the data are (what keys their location)."""
        params = dict(
            ifos=list(self.ifos), sample_rate=self.sample_rate, seed=self.seed,
            background=self.background, num_waveforms=self.num_waveforms,
            num_val_waveforms=self.num_val_waveforms, waveform_duration=self.waveform_duration,
            coalescence_time=self.coalescence_time,
        )  # fmt: skip
        if self.population:  # only when given: the keys of default-population data stay put
            params["population"] = self.population_dict()
        if self.noise:  # likewise: stationary Gaussian data keep their keys
            params["noise"] = self.noise_dict()
        if self.num_test_waveforms is not None:  # likewise
            params["num_test_waveforms"] = self.num_test_waveforms
        if self.background == "synthetic":
            params.update(duration=self.background_duration, segment=self.segment_duration)
        else:
            params.update(segments=list(self.segments), max_duration=self.max_duration,
                          channels=list(self.channels))  # fmt: skip
            # the newer fetch parameters key the data only when given (older keys stay put)
            extra = dict(
                frametypes=list(self.frametypes), train_start=self.train_start,
                train_stop=self.train_stop, test_stop=self.test_stop, flags=list(self.flags),
                vetoes=list(self.vetoes), min_duration=self.min_duration or None,
            )  # fmt: skip
            params.update({k: v for k, v in extra.items() if v not in (None, [])})
            if self.train_start is not None:
                params["segment_source"] = self.segment_source
        return params

    def waveform_counts(self) -> dict[int, int]:
        """Rows of each waveform set, by stream (``num_test_waveforms`` unset: as many as
        ``num_val_waveforms``, as aframe-lib does)."""
        test = self.num_test_waveforms
        return {
            STREAMS["train_waveforms"]: self.num_waveforms,
            STREAMS["val_waveforms"]: self.num_val_waveforms,
            STREAMS["test_waveforms"]: self.num_val_waveforms if test is None else test,
        }

    def noise_dict(self) -> dict:
        """``--noise`` (aframe-lib's NoiseModel fields) as plain JSON-able dicts."""
        return json.loads(json.dumps(self.noise, default=dict))

    def population_dict(self) -> dict:
        """``--population`` as plain JSON-able dicts."""
        return json.loads(json.dumps(self.population, default=dict))

    @property
    def data_key(self) -> str:
        """``H1L1-512Hz-synthetic-seed101-<hash of every data parameter>``."""
        return (
            f"{''.join(self.ifos)}-{number(self.sample_rate)}Hz-{self.background}-"
            f"seed{self.seed}-{digest(self.data_params())}"
        )

    def store_parts(self) -> tuple[str, ...]:
        return ("data", self.data_key)

    def explicit_dir(self) -> str:
        return self.data_dir

    @property
    def data_root(self) -> str:
        return self.default_dir(self.data_dir, *DataParameters.store_parts(self))

    def parsed_segments(self) -> list[tuple[float, float]]:
        """``--segments`` as (start, end) pairs; a malformed or empty one is a ParameterError."""
        out = []
        for s in self.segments:
            try:
                start, end = (float(x) for x in str(s).split("-"))
            except ValueError:
                start = end = None
            if start is None or not end > start:
                raise ParameterError(
                    f"--segments: {s!r} is not a GPS segment start-end with end > start, "
                    "e.g. 1238166018-1238170114"
                )
            out.append((start, end))
        return out

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.background == "fetch":
            query = self.train_start is not None or self.train_stop is not None
            if query == bool(self.segments):
                raise ParameterError(
                    "--background=fetch needs --segments (start-end GPS pairs, comma-separated) "
                    "or --train-start and --train-stop (segments queried), not both"
                )
            self.parsed_segments()
            if query and (
                self.train_start is None
                or self.train_stop is None
                or not self.train_stop > self.train_start
                or (self.test_stop is not None and not self.test_stop > self.train_stop)
            ):
                raise ParameterError(
                    f"--train-start={self.train_start}, --train-stop={self.train_stop}, "
                    f"--test-stop={self.test_stop}: give GPS times with train-start < "
                    "train-stop (< test-stop)"
                )
            for name in ("channels", "frametypes"):
                values = getattr(self, name)
                if (self.channels or self.frametypes) and len(values) != len(self.ifos):
                    raise ParameterError(
                        f"--{name}={','.join(values)}: give one per IFO ({','.join(self.ifos)}) "
                        "with both --channels and --frametypes to read frames, or neither for "
                        "open data"
                    )


class SandboxTask(AframeTask):
    """A task whose command runs on the host or in an Apptainer image, with GPUs or not."""

    exclude_index = True

    image = luigi.Parameter(
        default="",
        description="Apptainer image (.sif path, or a name in paths.container_root) to run in; "
        "empty: run on the host",
    )
    dev = luigi.BoolParameter(
        default=False,
        description="bind the working tree's packages over the image's released ones",
    )
    gpus = GpusParameter(description="GPU indices, e.g. 0,1 (DDP when more than one); empty: CPU")

    #: the parameter that names this task's image (the data tasks: ``data_image``)
    image_parameter: ClassVar[str] = "image"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # checked now, so a missing image fails before anything upstream runs
        image = getattr(self, self.image_parameter)
        flag = "--" + self.image_parameter.replace("_", "-")
        self.image_path = (
            resolve_image(image, config.paths().container_root, flag) if image else None
        )

    def executable(self, name: str) -> list[str]:
        """The console script ``name`` as the command's first word: in the image by name, on
        the host the one beside this interpreter (else on ``PATH``)."""
        return [name] if self.image_path else [local_executable(name)]

    def binds(self) -> list[str]:
        """Host paths the command needs inside the image (override to add more)."""
        return []

    def sandbox(self, env: dict[str, str] | None = None) -> Sandbox:
        return Sandbox(
            image=self.image_path, gpus=self.gpus, binds=self.binds(), env=env or {}, dev=self.dev
        )


class RayClusterTask(AframeTask):
    """A task that brings up a Ray cluster on Kubernetes for its run and always tears it down.

    Settings come from ``[kubernetes]``, ``[ray_head]``, ``[ray_worker]``, ``[s3]`` and
    ``[wandb_settings]``; :meth:`configure_cluster` is the hook where a task adds environment,
    Secrets or volumes. Use :meth:`ray_cluster` as a context manager around the work; on failure
    the cluster is deleted too (also from :meth:`on_failure`, should the work die elsewhere).
    """

    exclude_index = True

    cluster_name = luigi.Parameter(
        default="", description="name of the Ray cluster's objects; empty: aframe-<task hash>"
    )
    create_secrets = luigi.BoolParameter(
        default=False,
        description="create the credentials Secrets from this environment (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, WANDB_API_KEY) instead of using existing ones",
    )

    def cluster_spec(self):
        """The cluster described by the configuration, before :meth:`configure_cluster`."""
        from .clusters import ClusterSpec, internal_endpoint
        from .clusters.manifests import default_image

        k8s, head, worker, s3 = (
            config.k8s(),
            config.ray_head(),
            config.ray_worker(),
            config.s3(),
        )
        name = self.cluster_name or f"aframe-{self.task_id.rsplit('_', 1)[-1][:10].lower()}"
        return ClusterSpec(
            name=name,
            namespace=k8s.namespace,
            image=k8s.image or default_image(),
            workers=worker.replicas,
            worker_cpus=worker.cpus,
            worker_gpus=worker.gpus,
            worker_memory=worker.memory,
            min_gpu_memory=worker.min_gpu_memory,
            head_cpus=head.cpus,
            head_memory=head.memory,
            secrets=[s3.credentials_secret, config.wandb_settings().api_key_secret],
            s3_endpoint=internal_endpoint(s3.endpoint_url, dict(s3.internal_endpoints))
            if s3.endpoint_url
            else "",
        )

    def configure_cluster(self, spec):
        """Hook: change the :class:`~aframe_flow.clusters.ClusterSpec` (env, secrets, volumes)."""
        return spec

    def ray_cluster(self, client=None):
        """The :class:`~aframe_flow.clusters.RayCluster` of this task (not yet created)."""
        from .clusters import RayCluster, secret_from_env

        spec = self.configure_cluster(self.cluster_spec())
        secrets = []
        if self.create_secrets:
            s3, wb = config.s3(), config.wandb_settings()
            secrets = [
                secret_from_env(
                    s3.credentials_secret,
                    ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
                    spec.namespace,
                ),
                secret_from_env(wb.api_key_secret, ["WANDB_API_KEY"], spec.namespace),
            ]
        self._cluster = RayCluster(
            spec, backend=config.k8s().backend, secrets=secrets, client=client
        )
        return self._cluster

    def on_failure(self, exception):
        cluster = getattr(self, "_cluster", None)
        if cluster is not None and cluster.created:
            cluster.delete()
        return super().on_failure(exception)
