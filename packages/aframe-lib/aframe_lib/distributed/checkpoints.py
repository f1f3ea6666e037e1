"""Ray Train's per-epoch checkpoint and ``ModelCheckpoint``'s best files, kept consistent.

A Ray Train run resumes from its latest checkpoint in storage: the model, the optimizer and
every callback's state, ``ModelCheckpoint``'s too (its best score and the paths of the files it
keeps, which the export reads at the end). Ray's own ``RayTrainReportCallback`` gets that wrong
in three ways, fixed here:

- **Order.** ``ModelCheckpoint`` saves at ``on_train_epoch_end`` when validation runs once per
  epoch, and Lightning runs checkpoint callbacks after every other callback; Ray's callback, a
  plain one, so reported each epoch's checkpoint *before* ``ModelCheckpoint`` had judged that
  epoch. Epoch N's checkpoint named epoch N-1's best, whose file epoch N's save may have deleted:
  a run resumed from it failed exporting (``FileNotFoundError``), which is what the CI's
  killed-driver test met. :func:`reporter` is a ``Checkpoint`` too, listed after the config's
  ``ModelCheckpoint``, so it reports what that callback decided at the same epoch; at ``setup``
  it moves after one that a model's ``configure_callbacks`` adds (:func:`after_model_checkpoints`).
- **Files.** The checkpoint carries a copy of each file ``ModelCheckpoint`` keeps at that moment
  (``model_checkpoint/``, rank zero's), and :func:`restore_kept` writes back, on rank zero when a
  run resumes, the ones that are missing: those a later save deleted before the driver died
  (the window between that save and its report), or that lived on another node's local disk.
- **Directory.** Without a ``dirpath``, ``ModelCheckpoint`` writes into the logger's
  ``version_N`` folder, a new one on every restart, and Lightning then restores only its best
  path, not its score: the first epoch after a resume became "best" whatever it scored.
  :func:`stable_dirpath` points such a callback at ``<default_root_dir>/checkpoints`` instead
  (aframe-train's CLI does so for a one-node fit too, resumed with ``--ckpt_path``).

The copies cost one upload of each kept file per epoch (``save_top_k`` files, each the
checkpoint ``ModelCheckpoint`` wrote: weights and optimizer state).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..utils import fs

logger = logging.getLogger(__name__)

KEPT = "model_checkpoint"  # the folder of a Ray checkpoint holding ModelCheckpoint's files
MANIFEST = "manifest.json"  # in it: {stored name: the path ModelCheckpoint knows it by}


def model_checkpoints(trainer) -> list:
    from lightning.pytorch.callbacks import ModelCheckpoint

    return [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]


def kept_files(trainer) -> list[str]:
    """The files every ``ModelCheckpoint`` of ``trainer`` keeps now (best k and best)."""
    paths: list[str] = []
    for callback in model_checkpoints(trainer):
        for path in [*callback.best_k_models, callback.best_model_path]:
            if path and str(path) not in paths:
                paths.append(str(path))
    return paths


def copy_kept(trainer, folder: str | os.PathLike) -> dict[str, str]:
    """Copy the kept files into ``folder`` with a manifest; ``{stored name: path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, str] = {}
    for i, path in enumerate(kept_files(trainer)):
        filesystem, inner = fs.filesystem(path)
        name = f"{i:02d}-{Path(inner).name}"
        copy = functools.partial(filesystem.get, inner, str(folder / name))
        fs.retry(copy, attempts=5, delay=1.0)
        manifest[name] = path
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def restore_kept(restored: str | os.PathLike) -> list[str]:
    """Write back the kept files a restored Ray checkpoint carries that are missing where
    ``ModelCheckpoint`` will look for them; the paths written."""
    folder = Path(restored, KEPT)
    if not (folder / MANIFEST).is_file():
        return []
    written = []
    for name, path in json.loads((folder / MANIFEST).read_text()).items():
        filesystem, inner = fs.filesystem(path)
        if filesystem.exists(inner):
            continue
        parent = inner.rsplit("/", 1)[0] if "/" in inner else ""
        if parent:
            filesystem.makedirs(parent, exist_ok=True)
        copy = functools.partial(filesystem.put, str(folder / name), inner)
        fs.retry(copy, attempts=5, delay=1.0)
        written.append(path)
        logger.info("restored %s from the run's checkpoint", path)
    return written


def stable_dirpath(trainer) -> None:
    """``<default_root_dir>/checkpoints`` for each ``ModelCheckpoint`` without a ``dirpath``
    (the same folder on every restart, so that its whole state is restored)."""
    root = str(trainer.default_root_dir)
    if not fs.is_remote(root):
        root = os.path.realpath(os.path.expanduser(root))
    for callback in model_checkpoints(trainer):
        if callback.dirpath is None:
            callback.dirpath = fs.join(root, "checkpoints")


def after_model_checkpoints(callback, trainer) -> None:
    """Run ``callback`` after every ``ModelCheckpoint`` of ``trainer``, each in a stable folder.

    Called from the reporters' ``setup``: a ``ModelCheckpoint`` that a model's
    ``configure_callbacks`` returns is attached after the trainer's own callbacks, so after the
    reporter, and has had no :func:`stable_dirpath` (the reporter's ``setup`` runs before its
    own, which fixes the folder). The list is replaced, not edited, since Lightning is
    iterating over it when ``setup`` is called."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    stable_dirpath(trainer)
    callbacks = list(trainer.callbacks)
    kept = [i for i, c in enumerate(callbacks) if isinstance(c, ModelCheckpoint)]
    if kept and kept[-1] > callbacks.index(callback):
        callbacks.remove(callback)
        callbacks.insert(kept[-1], callback)  # right after the last one (indices shift by one)
        trainer.callbacks = callbacks


def default_model_checkpoint(config: dict, callbacks: list) -> list:
    """``[ModelCheckpoint()]`` where Lightning would add its default one (checkpointing on and
    none configured), else ``[]``: a ``Checkpoint`` reporter keeps Lightning from adding it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    configured = config.get("callbacks") or []
    configured = configured if isinstance(configured, list) else [configured]
    if config.get("enable_checkpointing") is False:
        return []
    if any(isinstance(c, ModelCheckpoint) for c in [*configured, *callbacks]):
        return []
    return [ModelCheckpoint()]


def reporter(enable_checkpointing: bool | None = True) -> Any:
    """Ray's report callback, run after ``ModelCheckpoint`` and carrying its files.

    With ``enable_checkpointing=False`` (no ``ModelCheckpoint``: Lightning refuses a
    ``Checkpoint`` callback then) it is Ray's own."""
    from ray.train.lightning import RayTrainReportCallback

    if enable_checkpointing is False:
        return RayTrainReportCallback()
    return _reporter_class()()


@functools.cache
def _reporter_class() -> type:
    from lightning.pytorch.callbacks import Checkpoint
    from ray.train.lightning import RayTrainReportCallback

    class ReportAfterModelCheckpoint(RayTrainReportCallback, Checkpoint):
        """``RayTrainReportCallback`` in Lightning's checkpoint group (after the config's
        ``ModelCheckpoint``), its checkpoint carrying ``ModelCheckpoint``'s kept files."""

        def setup(self, trainer, pl_module, stage: str) -> None:
            super().setup(trainer, pl_module, stage)
            after_model_checkpoints(self, trainer)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.is_global_zero:
                # the folder Ray's callback fills and reports (it creates it with exist_ok)
                folder = Path(self.tmpdir_prefix, str(trainer.current_epoch), KEPT)
                copy_kept(trainer, folder)
            super().on_train_epoch_end(trainer, pl_module)

    return ReportAfterModelCheckpoint
