"""A trial's training process: the project's own LightningCLI plus :class:`TrialReporter`.

    python -m aframe_lib.tune.worker --cli aframe_train.cli.AframeCLI \\
        --report-file F --checkpoint-dir D -- fit --config trial.yaml --model.x=1 ...

Everything after ``--`` is exactly what ``aframe-train`` (or the project's CLI) takes, so a trial
can be rerun by hand from the command line written at the top of its ``trial.log``. Lightning's
DDP launcher re-executes this same command line for the other ranks.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .callbacks import trial_reporter
from .training import import_cli


def trial_cli(cli_cls: type, report_file: str, checkpoint_dir: str) -> type:
    """``cli_cls`` whose trainer also reports each validation (:func:`.trial_reporter`, after
    ``ModelCheckpoint``, which writes into ``<default_root_dir>/checkpoints`` unless the config
    says otherwise: the same folder when a failed trial is retried)."""

    class TrialCLI(cli_cls):  # type: ignore[misc, valid-type]
        def _instantiate_trainer(self, config, callbacks):
            from ..distributed.checkpoints import default_model_checkpoint, stable_dirpath

            checkpointing = config.get("enable_checkpointing")
            reporter = trial_reporter(report_file, checkpoint_dir, checkpointing)
            default = default_model_checkpoint(config, callbacks)
            trainer = super()._instantiate_trainer(config, [*callbacks, *default, reporter])
            stable_dirpath(trainer)
            return trainer

    return TrialCLI


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m aframe_lib.tune.worker")
    parser.add_argument("--cli", required=True, help="import path of the LightningCLI class")
    parser.add_argument("--report-file", required=True)
    parser.add_argument("--checkpoint-dir", required=True)
    options = parser.parse_args(argv[:split])
    _die_with_parent()
    # sys.argv stays whole (the DDP launcher re-executes it), so LightningCLI would warn that
    # both sys.argv and args are given
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    cli = trial_cli(import_cli(options.cli), options.report_file, options.checkpoint_dir)
    cli(args=argv[split + 1 :])


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent (the Ray trial, or DDP rank zero) dies.

    A killed Ray worker (the trial stopped by ASHA, a SIGKILLed driver taking its local Ray
    down) must not leave a training process behind.
    """
    import ctypes
    import os
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() == 1:  # the parent died before prctl
        os._exit(1)


if __name__ == "__main__":
    main()
