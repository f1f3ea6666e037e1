"""The ``aframe-train`` command line: LightningCLI with aframe's argument links.

    aframe-train fit --config projects/quickstart/train.yaml [--data.ifos=[H1,L1] ...]
    aframe-train validate|test --config ... --ckpt_path ...
    aframe-train fit --config ... --print_config
    aframe-train fit --config ... --distributed.num_workers=4 [--distributed.address=ray://HOST:10001]
                                  (the same fit, data-parallel over Ray Train workers)
    aframe-train tune --config ... --tune_config tune.yaml   (Ray Tune search: aframe_train.tune)
    aframe-train search --model model.pt --data DATA --out events.hdf5   (aframe_train.search)
    aframe-train evaluate --model model.pt --out RUN_DIR   (background + injections: .evaluate)

The data section is the single source of ``ifos``, ``sample_rate`` and ``kernel_length``:
they are linked into the architecture (and the validation stride into the metric), so a config
never repeats them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from aframe_lib.callbacks import WandbSaveConfig
from aframe_lib.data import AframeDataset
from aframe_lib.utils.errors import (
    ConfigError,
    ModelFileError,
    check_yaml_files,
    console_main,
    explain_model_file,
)

from .models import AframeModel


class AframeCLI(LightningCLI):
    """LightningCLI for aframe models (subclass mode for both the model and the data)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # config.yaml beside the logs (secrets redacted), and in wandb.config under W&B
        kwargs.setdefault("save_config_callback", WandbSaveConfig)
        # each rank's validation dataset is already its share (equal batch counts on every
        # rank), and training batches are drawn on the device: no DistributedSampler. (The
        # Dataset's loaders are iterable, so Lightning's default would be just as correct.)
        kwargs.setdefault("trainer_defaults", {"use_distributed_sampler": False})
        # parse errors are raised (not printed with the whole usage) and reported in one block
        # by the console script's error boundary (aframe_lib.utils.errors.console_main)
        no_exit = {"exit_on_error": False}
        kwargs.setdefault("parser_kwargs", {"fit": no_exit, "validate": no_exit, "test": no_exit,
                                            "predict": no_exit, **no_exit})  # fmt: skip
        super().__init__(AframeModel, AframeDataset, *args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--matmul_precision",
            default="highest",
            choices=["highest", "high", "medium"],
            help="torch.set_float32_matmul_precision",
        )
        parser.link_arguments(
            "data.init_args.ifos", "model.init_args.arch.init_args.num_ifos", compute_fn=len
        )
        parser.link_arguments(
            "data.init_args.sample_rate", "model.init_args.arch.init_args.sample_rate"
        )
        parser.link_arguments(
            "data.init_args.kernel_length", "model.init_args.arch.init_args.kernel_length"
        )
        parser.link_arguments(
            "data.init_args.valid_stride", "model.init_args.metric.init_args.stride"
        )

    def _parse_ckpt_path(self) -> None:
        """Lightning's reading of ``--ckpt_path``, naming a missing or corrupt checkpoint.

        (Overrides a private LightningCLI method: torch's "PytorchStreamReader failed reading
        zip archive" or a bare FileNotFoundError would not say which file.)
        """
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt and ckpt.endswith(".ckpt") and "://" not in ckpt and not Path(ckpt).is_file():
            raise ModelFileError(
                f"{ckpt} (--ckpt_path): no such file; give a checkpoint of this run, e.g. "
                "<default_root_dir>/.../checkpoints/last.ckpt"
            )
        with explain_model_file(ckpt or "", "checkpoint"):
            super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        torch.set_float32_matmul_precision(config.get("matmul_precision", "highest"))


# architecture arguments that ``AframeCLI`` links from the data section (a value given for one
# of them is replaced by the data's)
LINKED = {
    "num_ifos": "len(data.ifos)",
    "sample_rate": "data.sample_rate",
    "kernel_length": "data.kernel_length",
}


def _given_linked(argv: list[str]) -> list[str]:
    """``model...`` keys that are link targets, as given on the command line or in ``--config``."""
    import yaml

    given = []
    for i, token in enumerate(argv):
        key = token.split("=", 1)[0]
        if key.startswith("--model.") and key.rsplit(".", 1)[-1] in LINKED:
            given.append(key[2:])
        if key in ("--config", "-c") and (path := token.partition("=")[2] or
                                           (argv[i + 1] if i + 1 < len(argv) else "")):  # fmt: skip
            try:
                model = (yaml.safe_load(open(path)) or {}).get("model")
            except (OSError, AttributeError, yaml.YAMLError):
                continue
            stack = [("model", model)]
            while stack:
                where, node = stack.pop()
                if isinstance(node, dict):
                    given += [f"{where}.{k} ({path})" for k in node if k in LINKED and
                              where.endswith("arch.init_args")]  # fmt: skip
                    stack += [(f"{where}.{k}", v) for k, v in node.items()]
    return given


def warn_linked(argv: list[str]) -> None:
    """Warn that architecture values given by the user are replaced by the data section's."""
    for key in _given_linked(argv):
        name = key.split(" ", 1)[0].rsplit(".", 1)[-1]
        sys.stderr.write(
            f"aframe-train: warning: {key} is ignored: {name} comes from the data section "
            f"({LINKED[name]}); change that instead\n"
        )


# subcommands that are not Trainer methods: each module's ``main(argv)`` has its own parser
SUBCOMMANDS = {
    "tune": "aframe_train.tune",
    "search": "aframe_train.search",
    "evaluate": "aframe_train.evaluate",
}


DISTRIBUTED = "--distributed."


def fit_distributed(argv: list[str]) -> None:
    """``fit`` over Ray Train workers (``--distributed.*``, see aframe_lib.distributed)."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"aframe-train fit --distributed.* needs Ray: pip install 'aframe-train[tune]' ({exc})"
        ) from exc
    from aframe_lib.distributed.trainer import parse_settings, run_fit, split_args

    ours, rest = split_args(argv)
    if not any(a.split("=", 1)[0] in ("--config", "-c") for a in rest):
        raise ConfigError("give the training config with --config FILE (as for one-node `fit`)")
    run_fit(AframeCLI, rest, parse_settings(ours))


@console_main("aframe-train")
def main(args: list[str] | None = None) -> None:
    """Entry point of the ``aframe-train`` console script (errors: aframe_lib.utils.errors)."""
    argv = sys.argv[1:] if args is None else list(args)
    check_yaml_files(argv, ("--config", "-c", "--tune_config"))
    if argv and argv[0] in ("fit", "validate", "test", "predict", "tune"):
        warn_linked(argv)
    if argv and argv[0] == "fit" and any(a.startswith(DISTRIBUTED) for a in argv):
        fit_distributed(argv[1:])
        return
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
        return
    AframeCLI(args=args)
