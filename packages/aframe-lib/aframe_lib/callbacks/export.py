"""Export the best checkpoint's network at the end of training."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from torch import Tensor

from ..export import export_onnx, export_torchscript
from ..utils import fs
from ..utils.errors import ConfigError

logger = logging.getLogger(__name__)


@runtime_checkable
class Exportable(Protocol):
    """What :class:`ExportModel` needs of the LightningModule (checked when training starts).

    ``export_module()`` returns what deployment runs on the (transformed) input: the network,
    or for models whose score is not the network's output, a module computing the score.
    """

    def export_module(self) -> torch.nn.Module: ...


@runtime_checkable
class ExampleSource(Protocol):
    """What :class:`ExportModel` uses of a data module that provides it (``AframeDataset`` does).

    Optional as a whole: a data module with neither member is traced on training batches. One
    with ``example_batch`` but no ``transform`` is refused when training starts.

    Attributes:
        transform: Module applied to whitened strain; exported in front of the network.
    """

    transform: torch.nn.Module

    def example_batch(self, num: int, device: torch.device | str = "cpu") -> Tensor:
        """``num`` whitened samples ``(num, num_ifos, kernel_size)`` before ``transform``."""
        ...


def check_exportable(pl_module: Any, datamodule: Any) -> None:
    """Raise a :class:`ConfigError` naming what ``pl_module``/``datamodule`` lack for export."""
    if not isinstance(pl_module, Exportable):
        name = type(pl_module).__name__
        raise ConfigError(
            f"ExportModel: {name} has no export_module() method (aframe_lib.callbacks.Exportable);"
            f" define `def export_module(self) -> torch.nn.Module` on {name}, returning the "
            "network that maps the transformed input to scores (e.g. `return self.model`), or "
            "remove ExportModel from trainer.callbacks"
        )
    if hasattr(datamodule, "example_batch") and not isinstance(datamodule, ExampleSource):
        name = type(datamodule).__name__
        missing = [m for m in ("transform", "example_batch") if not hasattr(datamodule, m)]
        raise ConfigError(
            f"ExportModel: {name} has example_batch but no {', '.join(missing)} "
            "(aframe_lib.callbacks.ExampleSource); set `self.transform = torch.nn.Identity()` "
            f"(or the module applied to whitened strain) in {name}.__init__"
        )


class ExportModel(pl.Callback):
    """At the end of training, export the network of the best checkpoint (TorchScript and ONNX).

    What is exported is ``datamodule.transform`` (e.g. a spectrogram; identity for time-domain
    models) followed by ``pl_module.export_module()`` (the network, or for models whose score
    is not the network's output, a module computing the score), so the exported model maps
    whitened strain ``(batch, num_ifos, kernel_size)`` to scores. It is traced on real whitened
    samples from ``datamodule.example_batch``; for other data modules, the plain network is
    traced on the last training batch. Rank zero only. The module must be :class:`Exportable`
    and a data module with ``example_batch`` an :class:`ExampleSource`: both are checked when
    fitting starts, with a :class:`~aframe_lib.utils.errors.ConfigError` naming what is missing.

    Parity is checked on a *second* batch, never the tracing one (a trace reproduces its own
    batch by construction): another ``example_batch`` draw, or for other data modules the
    previous training batch (a standard-normal batch if there was only one). ``model.json``
    records ``parity``: ``{"torchscript": max |traced - eager|, "onnx": max |onnxruntime -
    eager| (``None`` without ONNX), "num_examples", "tolerance"}``; a difference above
    ``tolerance`` warns.

    Beside ``model.pt`` an ONNX copy (``model.onnx``, same stem) is written unless ``onnx`` is
    false. ``model.json`` also records the data module's hyperparameters (``data``); for data
    modules with ``data_provenance()`` (``AframeDataset``) the provenance of each split's data
    (``provenance``, see :mod:`aframe_lib.data.provenance`) and the training waveforms'
    ``population`` (the config form ``aframe-train evaluate`` defaults to); its PSD
    policy (``psd``, read back by the search), ``max_abs_diff`` (TorchScript vs eager, the same
    check) and ``onnx``: ``{"filename", "max_abs_diff", "opset"}``, or ``{"skipped": reason}``
    when the ONNX export was not possible (onnx/onnxruntime missing, or an operator ONNX lacks):
    that is a warning, never a failed training.

    Args:
        dirpath: Directory (local or ``s3://``) for ``model.pt``/``model.json``/``model.onnx``;
            ``None`` means the trainer's ``default_root_dir``.
        filename: Name of the TorchScript file.
        num_examples: Samples of the last training batch used to trace and check the export.
        onnx: Also export to ONNX (needs the ``aframe-lib[export]`` extra).
        opset: ONNX opset version.
        tolerance: Largest acceptable max absolute difference from the eager model.
        calibrate_timing: After export, measure where the network's response peaks relative
            to coalescence on injections into the data module's latest background
            (:func:`aframe_lib.search.calibration.calibrate_exported`) and store it as
            ``timing`` in ``model.json`` (the search's event times and ``var``).
            Only for data modules with a background directory (``local_dir``); a failure is a
            warning and ``timing: {"skipped": reason}``.
        calibration_injections: Loud injections (SNR 20-40) of the timing calibration: the
            network must respond to them (else the calibration is skipped).
        var_injections: Injections at network SNR 8-20 (where alerts live) that calibrate
            the response offset (their median) and each event's ``var`` per bin of its stat
            (``timing["var_bins"]``: at least 99 % of them lie within their bin's ``var`` of
            their event); 0: the offset and one ``var`` from the loud injections. 192: four
            bins of 48, so each bin's 99 % is measured, not its largest of a dozen.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "model.pt",
        num_examples: int = 8,
        onnx: bool = True,
        opset: int = 17,
        tolerance: float = 1e-3,
        calibrate_timing: bool = True,
        calibration_injections: int = 16,
        var_injections: int = 192,
    ):
        self.dirpath = dirpath
        self.filename = filename
        self.num_examples = num_examples
        self.onnx = onnx
        self.opset = opset
        self.tolerance = tolerance
        self.calibrate_timing = calibrate_timing
        self.calibration_injections = calibration_injections
        self.var_injections = var_injections
        self.timing: dict[str, Any] | None = None
        self._example: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None
        self._exported = False
        self.path: str | None = None
        self.onnx_path: str | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the export contract before training, not after it."""
        if stage == "fit":
            check_exportable(pl_module, getattr(trainer, "datamodule", None))

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        X = batch[0] if isinstance(batch, list | tuple) else batch
        self._previous = self._example
        self._example = X[: self.num_examples].detach().cpu()

    def state_dict(self) -> dict[str, Any]:
        """The tracing batches travel in the checkpoint, so a resumed run can export."""
        return {"example": self._example, "previous": self._previous}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._example = state_dict.get("example", self._example)
        self._previous = state_dict.get("previous", self._previous)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._exported = False

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._export(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed from its last epoch's checkpoint trains nothing, and Lightning then
        # skips on_train_end: export here, or rerunning a command killed while it exported
        # would finish without a model
        if not self._exported:
            self._export(trainer, pl_module)

    def _export(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self._example is None:
            return
        self._exported = True
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if best:
            filesystem, inner = fs.filesystem(best)
            with filesystem.open(inner, "rb") as f:
                state = torch.load(f, map_location="cpu", weights_only=False)["state_dict"]
            pl_module.load_state_dict(state)
            logger.info("exporting the best checkpoint %s", best)
        exported = pl_module.export_module()
        example, check = self._example, self._previous
        if check is None or check.shape[1:] != example.shape[1:]:
            check = torch.randn_like(example)
        datamodule = trainer.datamodule
        if isinstance(datamodule, ExampleSource):
            with torch.no_grad():
                example = datamodule.example_batch(self.num_examples, pl_module.device)
                check = datamodule.example_batch(self.num_examples, pl_module.device)
            exported = torch.nn.Sequential(datamodule.transform, exported)
        dirpath = self.dirpath or trainer.default_root_dir
        self.path = fs.join(dirpath, self.filename)
        metadata = {"checkpoint": best or None}
        hparams = getattr(datamodule, "hparams", {}) if datamodule is not None else {}
        metadata["data"] = {k: v for k, v in hparams.items() if _jsonable(v)}
        if callable(getattr(datamodule, "data_provenance", None)):
            # what it trained, validated and is tested on, and its population: evaluation
            # defaults to that population and refuses to score it on that data
            provenance = datamodule.data_provenance()
            metadata["population"] = provenance.pop("population", None)
            metadata["provenance"] = provenance
        policy = getattr(datamodule, "psd_policy", None)
        if policy is not None:  # the search whitens with the policy training used
            metadata["psd"] = policy.resolve(datamodule.kernel_length, datamodule.fduration)
            metadata["psd"] = metadata["psd"].to_dict()
        onnx_diff = None
        if self.onnx:
            metadata["onnx"] = self._export_onnx(exported, example, check, dirpath, metadata)
            onnx_diff = metadata["onnx"].get("max_abs_diff")
        metadata["parity"] = {
            "onnx": onnx_diff,
            "num_examples": len(check),
            "tolerance": self.tolerance,
            "check": "a batch other than the tracing batch",
        }
        diff = export_torchscript(exported, example, self.path, metadata, check=check)
        print(f"exported {self.path} (max abs difference vs eager model: {diff:.3g})")
        for name, value in (("TorchScript", diff), ("ONNX", onnx_diff)):
            if value is not None and not value <= self.tolerance:
                message = (
                    f"the {name} export differs from the eager model by up to {value:.3g} "
                    f"(> tolerance {self.tolerance:g}) on a batch other than the tracing one; "
                    "check the model for data-dependent control flow before deploying it"
                )
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                logger.warning(message)
        if self.calibrate_timing and hasattr(datamodule, "local_dir"):
            self.timing = self._calibrate(datamodule.local_dir, pl_module.device)

    def _export_onnx(
        self,
        exported: torch.nn.Module,
        example: torch.Tensor,
        check: torch.Tensor,
        dirpath: str,
        metadata: dict,
    ) -> dict[str, Any]:
        """Write the ONNX copy; on any failure warn and say why in the returned record."""
        stem = self.filename[: -len(".pt")] if self.filename.endswith(".pt") else self.filename
        filename = stem + ".onnx"
        path = fs.join(dirpath, filename)
        try:
            diff = export_onnx(exported, example, path, metadata, opset=self.opset, check=check)
        except Exception as exc:  # the TorchScript export must still happen
            reason = f"{type(exc).__name__}: {exc}"
            message = f"ONNX export skipped ({reason}); {self.path} is still exported"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            logger.warning(message)
            return {"skipped": reason}
        self.onnx_path = path
        print(f"exported {path} (max abs difference vs eager model: {diff:.3g})")
        return {"filename": filename, "max_abs_diff": diff, "opset": self.opset}

    def _calibrate(self, data_dir: str, device: torch.device) -> dict[str, Any]:
        """Timing calibration of the exported model (stored in ``model.json``); never fatal."""
        import time

        from ..search.calibration import calibrate_exported, update_metadata

        start = time.perf_counter()
        try:
            timing = calibrate_exported(
                self.path,
                data_dir,
                num_injections=self.calibration_injections,
                device=device,
                var_injections=self.var_injections,
            )
        except Exception as exc:  # the export itself succeeded: say why, keep it
            timing = {"skipped": f"{type(exc).__name__}: {exc}"}
            message = f"timing calibration skipped ({timing['skipped']})"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            logger.warning(message)
            update_metadata(self.path, {"timing": timing})
            return timing
        print(
            f"timing calibration ({time.perf_counter() - start:.1f} s): response offset "
            f"{timing['offset']:.4f} s, spread "
            f"{timing['spread']:.4f} s, var {timing['var']:.4f} s "
            f"({timing['num_found']} injections)"
        )
        return timing


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None) | list | tuple | dict)
