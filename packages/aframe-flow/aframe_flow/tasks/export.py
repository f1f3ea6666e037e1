"""``Export``: the trained model from a run directory to a deployable folder.

The folder is a Triton model repository with one model::

    <export_dir>/<model_name>/config.pbtxt      platform pytorch_libtorch, shapes from model.json
    <export_dir>/<model_name>/1/model.pt        the TorchScript model
    <export_dir>/<model_name>/1/model.onnx      the ONNX copy, where training wrote one
    <export_dir>/<model_name>/model.json        the exporter's metadata (data settings, checks)

Every file is copied atomically and ``model.json`` last, so the output exists only when the
folder is complete. Runs in this process (no torch needed: the files are copied, not loaded).
``<export_dir>`` defaults to ``<paths.base_dir>/export/<data key>/<config name>-<hash>``, the
same key as the run it exports.
"""

from __future__ import annotations

import json
import os

import luigi

from ..parameters import PathParameter
from ..targets import copy_atomic, exists, file_target, join, read_bytes, write_bytes_atomic
from .train import Train, TrainBase


def triton_config(name: str, info: dict) -> str:
    """A Triton ``config.pbtxt`` for the TorchScript model described by ``info`` (model.json)."""
    shape = info.get("input_shape") or [None, None, None]
    dims = ", ".join("-1" if d is None else str(int(d)) for d in shape)
    return (
        f'name: "{name}"\n'
        'platform: "pytorch_libtorch"\n'
        "max_batch_size: 0\n"
        f'input [{{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ {dims} ] }}]\n'
        'output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1, 1 ] }]\n'
    )


class Export(TrainBase):
    """Copy the exported model of a training run into a deployable (Triton) folder."""

    export_dir = PathParameter(
        default="",
        description="deployable folder, local or s3://, used as it is; empty: "
        "<paths.base_dir>/export/<data key>/<config name>-<hash> (the run's key)",
    )
    model_name = luigi.Parameter(default="aframe", description="model name in the repository")

    def store_parts(self) -> tuple[str, ...]:
        return ("export", *super().store_parts()[1:])

    def explicit_dir(self) -> str:
        return self.export_dir

    @property
    def export_root(self) -> str:
        return self.default_dir(self.export_dir, *self.store_parts())

    def requires(self):
        return Train.req(self)

    def output(self):
        base = join(self.export_root, self.model_name)
        return {
            "model": file_target(join(base, "1", "model.pt")),
            "info": file_target(join(base, "model.json")),
        }

    def run(self):
        source = self.input()
        info_text = read_bytes(source["info"].path).decode()
        info = json.loads(info_text)
        base = join(self.export_root, self.model_name)
        model = source["model"].path
        copy_atomic(model, join(base, "1", "model.pt"))
        onnx = join(os.path.dirname(model) if "://" not in model else model.rsplit("/", 1)[0],
                    "model.onnx")  # fmt: skip
        if isinstance(info.get("onnx"), dict) and "filename" in info["onnx"] and exists(onnx):
            copy_atomic(onnx, join(base, "1", "model.onnx"))
        config = triton_config(self.model_name, info).encode()
        write_bytes_atomic(join(base, "config.pbtxt"), config)
        write_bytes_atomic(join(base, "model.json"), info_text.encode())  # last: marks done
