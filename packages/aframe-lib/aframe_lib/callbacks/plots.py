"""Figures of what the model sees and outputs during validation, saved as PNG files.

The contract with the LightningModule is Lightning's own: its ``validation_step`` returns the
scores of the batch as a :class:`ValidationScores` dict, and :class:`ValidationPlotter` reads them
in ``on_validation_batch_end``, so any LightningModule (not only aframe-train's) gets the plots.
matplotlib (in the ``aframe-lib[wandb]`` extra) is imported only when a plotter is created;
:mod:`aframe_lib.callbacks.wandb` sends the same figures to a W&B table instead of files.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import lightning.pytorch as pl
import torch
from torch import Tensor

from ..utils import fs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


def require_matplotlib() -> None:
    """Raise an ImportError naming the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "plotting callbacks need matplotlib: pip install 'aframe-lib[wandb]'"
        ) from exc


class ValidationScores(TypedDict):
    """What a LightningModule's ``validation_step`` returns for :class:`ValidationPlotter`.

    The batch is the Dataset's validation batch
    (:meth:`~aframe_lib.data.AframeDataset.validation_batch`): ``background`` ``(B, C, ...)``,
    ``foreground`` ``(B, V, C, ...)``, ``snr``, ``shift_id``, ``index``. Lightning passes the
    step's return value to every callback's ``on_validation_batch_end``.

    Attributes:
        background_scores: ``(B,)`` scores of ``batch["background"]``.
        foreground_scores: ``(B, V)`` scores of each injected view ``batch["foreground"][:, v]``.
    """

    background_scores: Tensor
    foreground_scores: Tensor


SCORE_KEYS = tuple(ValidationScores.__annotations__)


@dataclass
class Plot:
    """One validation figure and the facts shown in its title.

    Attributes:
        kind: ``"foreground"`` (an injected view) or ``"background"``.
        sample: Row of the validation batch the sample comes from.
        snr: Network SNR of the injection; ``None`` for background.
        score: The model's score of the sample.
        figure: The matplotlib figure (a bare ``Figure``: no pyplot state, no GUI backend).
    """

    kind: str
    sample: int
    snr: float | None
    score: float
    figure: Figure

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()


class ValidationPlotter(pl.Callback):
    """Plot a few validation samples with their SNR and score; write them as PNG files.

    On rank zero, on the first validation batch of every ``every_n_epochs``-th epoch (the
    sanity check is skipped), the first ``num_samples`` foreground samples (view ``view`` of
    each) and ``num_background`` background samples are drawn, one figure per sample with one
    panel per IFO: whitened strain against time (or, for 2D inputs such as spectrograms, an
    image per IFO). Validation is deterministic, so the same samples are drawn every epoch and
    the figures show how the model's response to them evolves. Time-series foreground panels
    also show the injected signal, as foreground minus background (whitening with the window's
    own PSD is linear, so this is the whitened injection). For autoencoders the panels also
    show the network's reconstruction of each IFO.

    Files: ``<dirpath>/plots/epoch=NNN-<kind>-<sample>.png``, each written atomically.

    The LightningModule's ``validation_step`` returns the batch's :class:`ValidationScores`
    (Lightning hands them to ``on_validation_batch_end``); a step that returns nothing gets no
    plots and one ``RuntimeWarning`` saying so.

    Args:
        num_samples: Foreground samples drawn per epoch.
        num_background: Background samples drawn per epoch.
        every_n_epochs: Plot every this many epochs (epoch 0 always).
        view: Which injected view (coalescence position) of each foreground sample; ``None``
            means the middle one.
        plot_reconstruction: Overlay the model's prediction of each IFO on that IFO's input:
            ``pl_module.reconstruct(X)`` when the module has it (channel ``i`` = the prediction
            of IFO ``i``, e.g. an autoencoder whose channel ``i`` predicts IFO ``i + 1``
            re-orders its output there), else ``pl_module.model(X)``. ``None`` means decide
            from the output: when it has the input's shape (an autoencoder), overlay.
        dirpath: Where the ``plots`` folder goes (local or ``s3://``); ``None`` means the
            trainer's ``default_root_dir``.
    """

    def __init__(
        self,
        num_samples: int = 4,
        num_background: int = 1,
        every_n_epochs: int = 1,
        view: int | None = None,
        plot_reconstruction: bool | None = None,
        dirpath: str | None = None,
    ) -> None:
        require_matplotlib()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs}: must be at least 1")
        self.num_samples = num_samples
        self.num_background = num_background
        self.every_n_epochs = every_n_epochs
        self.view = view
        self.plot_reconstruction = plot_reconstruction
        self.dirpath = dirpath
        self.written: list[str] = []
        self._warned = False

    # -- Lightning's hook: the scores come in the validation step's output
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Plot from the :class:`ValidationScores` that ``validation_step`` returned.

        A step that returns no scores gets no plots and one warning saying what to return.
        """
        if isinstance(outputs, dict) and all(key in outputs for key in SCORE_KEYS):
            background, foreground = outputs["background_scores"], outputs["foreground_scores"]
            self.on_validation_score(trainer, pl_module, batch, background, foreground, batch_idx)
        elif not self._warned:
            self._warned = True
            message = (
                f"{type(self).__name__} draws nothing: {type(pl_module).__name__}.validation_step "
                f"returned {type(outputs).__name__}, not the scores of the batch; return "
                "aframe_lib.callbacks.ValidationScores(background_scores=..., "
                "foreground_scores=...) from it"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            logger.warning(message)

    def on_validation_score(  # also callable directly, e.g. from a custom loop
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: dict[str, Tensor],
        background_scores: Tensor,
        foreground_scores: Tensor,
        batch_idx: int,
    ) -> None:
        """Draw and emit the figures of the first validation batch of a plotted epoch.

        Args:
            batch: ``background`` ``(B, C, ...)``, ``foreground`` ``(B, V, C, ...)``, ``snr``
                ``(B,)``, ``shift_id`` ``(B,)`` (-1 marks padding rows) and ``index``.
            background_scores: ``(B,)`` scores of ``batch["background"]``.
            foreground_scores: ``(B, V)`` scores of each injected view.
        """
        if batch_idx != 0 or not trainer.is_global_zero or trainer.sanity_checking:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        plots = self.make_plots(trainer, pl_module, batch, background_scores, foreground_scores)
        self.emit(trainer, pl_module, plots)

    def emit(self, trainer: pl.Trainer, pl_module: pl.LightningModule, plots: list[Plot]) -> None:
        """Write each figure as ``<dirpath>/plots/epoch=NNN-<kind>-<sample>.png``."""
        folder = fs.join(self.dirpath or trainer.default_root_dir, "plots")
        for plot in plots:
            name = f"epoch={trainer.current_epoch:03d}-{plot.kind}-{plot.sample}.png"
            path = fs.join(folder, name)
            fs.write_bytes_atomic(path, plot.png())
            self.written.append(path)
        logger.info("wrote %d validation plots to %s", len(plots), folder)

    # -- drawing
    def make_plots(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: dict[str, Tensor],
        background_scores: Tensor,
        foreground_scores: Tensor,
    ) -> list[Plot]:
        """The figures for one validation batch (see the class docstring)."""
        foreground, background = batch["foreground"], batch["background"]
        view = foreground.shape[1] // 2 if self.view is None else self.view
        # padding rows (shift_id -1) repeat real windows: never plot them
        valid = torch.nonzero(batch["shift_id"] >= 0).flatten().tolist()
        fg_rows = valid[: self.num_samples]
        bg_rows = valid[: self.num_background]
        datamodule = getattr(trainer, "datamodule", None)
        ifos = list(getattr(datamodule, "ifos", None) or [])
        sample_rate = getattr(datamodule, "sample_rate", None)
        epoch = trainer.current_epoch

        plots = []
        samples = [("foreground", i, foreground[i, view]) for i in fg_rows]
        samples += [("background", i, background[i]) for i in bg_rows]
        if not samples:
            return plots
        X = torch.stack([x for _, _, x in samples])
        reconstructions = self._reconstruct(pl_module, X)
        for n, (kind, i, x) in enumerate(samples):
            if kind == "foreground":
                snr, score = float(batch["snr"][i]), float(foreground_scores[i, view])
                title = f"epoch {epoch}: foreground {i} (view {view}), SNR {snr:.1f}"
            else:
                snr, score = None, float(background_scores[i])
                title = f"epoch {epoch}: background {i}"
            title += f", score {score:.3g}"
            recon = None if reconstructions is None else reconstructions[n]
            signal = x - background[i] if kind == "foreground" and x.ndim == 2 else None
            figure = draw_sample(x, title, ifos, sample_rate, recon, signal)
            plots.append(Plot(kind, i, snr, score, figure))
        return plots

    def _reconstruct(self, pl_module: pl.LightningModule, X: Tensor) -> Tensor | None:
        """Each IFO's prediction, aligned with the input's channels (see
        ``plot_reconstruction``), when the model predicts its input."""
        if self.plot_reconstruction is False or X.ndim != 3:
            return None
        network = getattr(pl_module, "reconstruct", None) or getattr(pl_module, "model", None)
        if not callable(network):
            return None
        with torch.no_grad():
            output = network(X)
        if output.shape == X.shape:
            return output
        if self.plot_reconstruction:
            raise ValueError(
                f"plot_reconstruction=True but the model maps {tuple(X.shape)} to "
                f"{tuple(output.shape)}, not a reconstruction of its input"
            )
        return None


def draw_sample(
    x: Tensor,
    title: str,
    ifos: list[str],
    sample_rate: float | None = None,
    reconstruction: Tensor | None = None,
    signal: Tensor | None = None,
) -> Figure:
    """One figure of one sample: a panel per IFO.

    Args:
        x: ``(num_ifos, time)`` whitened strain (a line per IFO) or ``(num_ifos, freq, time)``
            (an image per IFO).
        title: Figure title.
        ifos: IFO names for the panels; missing names become ``channel N``.
        sample_rate: Hz, for a time axis in seconds; ``None`` means an axis in samples.
        reconstruction: ``(num_ifos, time)`` drawn over ``x`` (autoencoders).
        signal: ``(num_ifos, time)`` injected signal drawn over ``x``.
    """
    import numpy as np
    from matplotlib.figure import Figure

    x = x.detach().float().cpu().numpy()
    overlays = [
        (label, color, value.detach().float().cpu().numpy())
        for label, color, value in [
            ("injected signal", "black", signal),
            ("reconstruction", "tab:orange", reconstruction),
        ]
        if value is not None
    ]
    num = x.shape[0]
    figure = Figure(figsize=(8, 1.8 * num + 0.8), layout="constrained")
    axes = figure.subplots(num, 1, sharex=True, squeeze=False)[:, 0]
    for c, ax in enumerate(axes):
        name = ifos[c] if c < len(ifos) else f"channel {c}"
        if x.ndim == 2:
            t = np.arange(x.shape[-1]) / (sample_rate or 1)
            ax.plot(t, x[c], lw=0.6, color="tab:blue", label=f"{name} input")
            for label, color, value in overlays:
                ax.plot(t, value[c], lw=0.8, color=color, label=f"{name} {label}")
            ax.set_ylabel("whitened")
            ax.legend(loc="upper right", fontsize="small")
        else:
            image = x[c].reshape(-1, x.shape[-1])
            ax.imshow(image, aspect="auto", origin="lower", interpolation="nearest")
            ax.set_ylabel(name)
    axes[-1].set_xlabel("time [s]" if sample_rate and x.ndim == 2 else "sample")
    figure.suptitle(title, fontsize="medium")
    return figure
