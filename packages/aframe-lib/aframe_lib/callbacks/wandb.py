"""Weights & Biases callbacks: validation figures in one table per run, and the run's config.

Importing this module does not import ``wandb`` (the ``aframe-lib[wandb]`` extra): the callbacks
reach W&B through the run of the trainer's ``WandbLogger``; :class:`WandbPlotter` checks that
wandb is installed when it is created, and :class:`WandbSaveConfig` needs it only with a
``WandbLogger``.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from .plots import Plot, ValidationPlotter

if TYPE_CHECKING:
    import wandb

logger = logging.getLogger(__name__)

REDACTED = "***REDACTED***"
# environment variables and config keys whose values are secrets
_SECRET_NAME = re.compile(
    r"secret|passw(or)?d|api_?key|token$|session_token|access_key|private_key|credential",
    re.IGNORECASE,
)
COLUMNS = ["epoch", "step", "kind", "sample", "snr", "score", "image"]


def require_wandb() -> None:
    """Raise an ImportError naming the extra when wandb is missing."""
    try:
        import wandb  # noqa: F401
    except ImportError as exc:
        raise ImportError("W&B logging needs wandb: pip install 'aframe-lib[wandb]'") from exc


def wandb_run(trainer: pl.Trainer) -> wandb.Run | None:
    """The W&B run of the trainer's first ``WandbLogger``; ``None`` when it has none."""
    for candidate in trainer.loggers:
        if isinstance(candidate, WandbLogger):
            return candidate.experiment
    return None


def redact_secrets(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of ``value`` with every secret string replaced by ``"***REDACTED***"``.

    Secrets are (1) the values of environment variables whose names look secret
    (``AWS_SECRET_ACCESS_KEY``, ``AWS_ACCESS_KEY_ID``, ``AWS_SESSION_TOKEN``,
    ``WANDB_API_KEY``, ``*_PASSWORD``, ...), wherever they appear inside a string, and (2) the
    strings stored under keys whose names look secret (``api_key``, ``secret_key``,
    ``password``, ``token``, ``credentials``, ...), at any depth below them. Only strings are
    replaced, so a typed config stays valid.

    Args:
        value: Nested dicts, lists, tuples, strings, or jsonargparse ``Namespace``s (cloned).
        environ: The environment to take secret values from; ``None`` means ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    # longest first, so a secret that contains another is replaced whole; very short values
    # (e.g. "1") would redact innocent text and are not credentials anyway
    secrets = sorted(
        {v for k, v in environ.items() if _SECRET_NAME.search(k) and len(v) >= 4},
        key=len,
        reverse=True,
    )

    def scrub(item: Any, secret: bool) -> Any:
        if isinstance(item, str):
            if secret and item:
                return REDACTED
            for text in secrets:
                item = item.replace(text, REDACTED)
            return item
        if isinstance(item, dict):
            return {k: scrub(v, secret or _is_secret(k)) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return type(item)(scrub(v, secret) for v in item)
        if hasattr(item, "clone") and hasattr(item, "items"):  # a jsonargparse Namespace
            out = item.clone()
            for k, v in item.items():
                out[k] = scrub(v, secret or _is_secret(k.rsplit(".", 1)[-1]))
            return out
        return item

    return scrub(value, False)


def _is_secret(name: Any) -> bool:
    return bool(_SECRET_NAME.search(str(name)))


class WandbPlotter(ValidationPlotter):
    """:class:`ValidationPlotter` whose figures go to one W&B table per run.

    With a ``WandbLogger`` on the trainer, each plotted epoch adds rows ``epoch, step, kind,
    sample, snr, score, image`` to the table ``key`` of the run (``snr`` is empty for
    background); without one, the figures are written as PNG files like the base class does.

    W&B tables are immutable once logged, so a table cannot simply grow. Two ways around it:

    - ``"incremental"`` (default, wandb>=0.20): the table is logged with
      ``log_mode="INCREMENTAL"``: each epoch uploads only its new rows, and W&B shows the
      increments as one table.
    - ``"accumulate"`` (the pattern of the 2023 deepclean demo, any wandb version): the rows
      so far are kept and a fresh table with all of them is logged each epoch under the same
      key; the latest version holds every row.

    Args:
        key: Name of the table in the run.
        table_mode: ``"incremental"`` or ``"accumulate"``; ``"incremental"`` falls back to
            ``"accumulate"`` on a wandb without incremental tables.
        num_samples: As for :class:`ValidationPlotter`.
        num_background: As for :class:`ValidationPlotter`.
        every_n_epochs: As for :class:`ValidationPlotter`.
        view: As for :class:`ValidationPlotter`.
        plot_reconstruction: As for :class:`ValidationPlotter`.
        dirpath: Where PNG files go when the trainer has no ``WandbLogger``.
    """

    def __init__(
        self,
        key: str = "validation/plots",
        table_mode: Literal["incremental", "accumulate"] = "incremental",
        num_samples: int = 4,
        num_background: int = 1,
        every_n_epochs: int = 1,
        view: int | None = None,
        plot_reconstruction: bool | None = None,
        dirpath: str | None = None,
    ) -> None:
        require_wandb()
        super().__init__(
            num_samples, num_background, every_n_epochs, view, plot_reconstruction, dirpath
        )
        if table_mode not in ("incremental", "accumulate"):
            raise ValueError(f"table_mode={table_mode!r}: use 'incremental' or 'accumulate'")
        self.key = key
        self.table_mode = table_mode
        self.rows: list[list[Any]] = []
        self._table: wandb.Table | None = None
        self._warned = False

    def emit(self, trainer: pl.Trainer, pl_module: pl.LightningModule, plots: list[Plot]) -> None:
        run = wandb_run(trainer)
        if run is None:
            if not self._warned:
                logger.warning("WandbPlotter: no WandbLogger on the trainer; writing PNG files")
                self._warned = True
            super().emit(trainer, pl_module, plots)
            return
        import wandb
        from PIL import Image

        epoch, step = trainer.current_epoch, trainer.global_step
        rows = []
        for plot in plots:
            image = wandb.Image(Image.open(io.BytesIO(plot.png())), caption=plot.kind)
            rows.append([epoch, step, plot.kind, plot.sample, plot.snr, plot.score, image])
        self.rows.extend(rows)
        run.log({self.key: self._next_table(rows), "trainer/global_step": step})

    def _next_table(self, rows: list[list[Any]]) -> wandb.Table:
        """The table to log after ``rows`` were added (see the class docstring)."""
        import wandb

        if self.table_mode == "incremental" and self._table is None:
            try:
                self._table = wandb.Table(columns=COLUMNS, log_mode="INCREMENTAL")
            except (TypeError, AssertionError):  # wandb without incremental tables
                logger.info("this wandb has no incremental tables: re-logging all rows")
                self.table_mode = "accumulate"
        if self.table_mode == "incremental":
            for row in rows:
                self._table.add_data(*row)
            return self._table
        return wandb.Table(columns=COLUMNS, data=list(self.rows))


class WandbSaveConfig(SaveConfigCallback):
    """LightningCLI's config saver, secrets redacted, that also fills the W&B run's ``config``.

    The resolved config is written to ``config.yaml`` in the log directory as usual, but with
    secrets redacted (see :func:`redact_secrets`; a config should not carry secrets, and this
    keeps one that does from spreading them). When the trainer has a ``WandbLogger``, the same
    config minus its ``trainer`` section (and the ``config`` file list) also goes into
    ``wandb.config``, so runs can be filtered and compared by any hyperparameter. Use it as
    ``LightningCLI(..., save_config_callback=WandbSaveConfig)``; its arguments are
    ``SaveConfigCallback``'s.
    """

    def __init__(self, parser: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(parser, redact_secrets(config), *args, **kwargs)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        run = wandb_run(trainer)
        if run is None:
            return
        import yaml

        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False)) or {}
        for section in ("trainer", "config"):
            config.pop(section, None)
        # redacted again: parser.dump may render values (e.g. paths) the Namespace walk missed
        run.config.update(redact_secrets(config), allow_val_change=True)
