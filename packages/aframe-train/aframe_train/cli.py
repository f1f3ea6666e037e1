"""The ``aframe-train`` command line: LightningCLI with aframe's argument links.

    aframe-train fit --config projects/quickstart/train.yaml [--data.ifos=[H1,L1] ...]
    aframe-train validate|test --config ... --ckpt_path ...
    aframe-train fit --config ... --print_config
    aframe-train fit --config ... --distributed.num_workers=4 [--distributed.address=ray://HOST:10001]
                                  (the same fit, data-parallel over Ray Train workers)
    aframe-train tune --config ... --tune_config tune.yaml   (Ray Tune search: aframe_train.tune)
    aframe-train search --model model.pt --data DATA --out events.hdf5   (aframe_train.search)
    aframe-train evaluate --model model.pt --out RUN_DIR   (background + injections: .evaluate)

All seven are subcommands of one parser (:class:`AframeCLI`): ``aframe-train --help`` lists them,
``aframe-train SUB --help`` lists every option of one (``fit``'s include ``--distributed.*``),
and ``--config``/``--print_config`` work the same for each. ``tune``'s options are ``fit``'s plus
``--tune.*`` (:class:`~aframe_lib.tune.TuneSettings`; ``--tune_config`` is a ``--config`` too);
``search``'s and ``evaluate``'s are their functions' parameters and the
:class:`~aframe_lib.search.SearchSettings` fields.

The data section is the single source of ``ifos``, ``sample_rate`` and ``kernel_length``:
they are linked into the architecture (and the validation stride into the metric), so a config
never repeats them.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
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

# subcommands beside Lightning's (fit, validate, test, predict): name -> (module, function whose
# parameters are its options; None: the training config plus --tune.*)
EXTRA_SUBCOMMANDS = {
    "tune": ("aframe_train.tune", None),
    "search": ("aframe_train.search", "search"),
    "evaluate": ("aframe_train.evaluate", "evaluate"),
}
DESCRIPTION = (
    "Train, tune, search and evaluate aframe detectors. `aframe-train SUBCOMMAND --help` lists "
    "every option of one; add --debug for tracebacks."
)
# one line each in `aframe-train --help` (Lightning's own are its Trainer methods' first lines)
HELP = {
    "fit": "Train a detector: one process, DDP (--trainer.*), or over Ray Train workers "
    "(--distributed.*).",
    "validate": "Score the validation split with a checkpoint (--ckpt_path).",
    "test": "Score the held-out test split (data.test_frac or data.test_dir) with a checkpoint.",
    "predict": "Run the model's predict_step over the data with a checkpoint.",
}
TUNE_HELP = (
    "Search hyper-parameters of this training config with Ray Tune and ASHA: the options of "
    "fit (the training config) and --tune.*."
)
DISTRIBUTED = "--distributed."


class AframeCLI(LightningCLI):
    """LightningCLI for aframe models (subclass mode for both the model and the data).

    Besides Lightning's ``fit``/``validate``/``test``/``predict`` its parser has the subcommands
    ``tune``, ``search`` and ``evaluate`` (:data:`EXTRA_SUBCOMMANDS`), and ``fit`` has the
    ``--distributed.*`` settings (:class:`~aframe_lib.distributed.trainer.DistributedConfig`).
    These parse like the others (``--config``, ``--print_config``, ``--help``) and then run their
    own code instead of a Trainer method: ``tune``/``search``/``evaluate`` their module's
    ``main``, a ``fit`` with ``--distributed.*`` given (or set in a config file) the Ray Train
    driver; nothing is instantiated for them here.
    """

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
        kwargs.setdefault("parser_kwargs", {
            "description": DESCRIPTION, "fit": no_exit, "validate": no_exit, "test": no_exit,
            "predict": no_exit, **no_exit,
        })  # fmt: skip
        given = kwargs.get("args")
        self._argv = list(sys.argv[1:] if given is None else given)
        super().__init__(AframeModel, AframeDataset, *args, **kwargs)

    # --- the parser: Lightning's subcommands, fit's --distributed.*, tune, search, evaluate ------

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs) -> None:
        super()._add_subcommands(parser, **kwargs)
        from aframe_lib.distributed.trainer import DistributedConfig

        for choice in parser._subcommands_action._choices_actions:
            choice.help = HELP.get(choice.dest, choice.help)

        self._subcommand_parsers["fit"].add_class_arguments(
            DistributedConfig, "distributed", fail_untyped=False
        )
        # the extra subcommands are built only when the command line may use them (a fit, a
        # Tune trial or a Ray Train worker does not pay for a second training parser)
        if self._argv[:1] and self._argv[0] in LightningCLI.subcommands():
            return
        for name in EXTRA_SUBCOMMANDS:
            sub = self._extra_parser(name, exit_on_error=False)
            self._subcommand_parsers[name] = sub
            parser._subcommands_action.add_subcommand(name, sub, help=sub.description)

    def _extra_parser(self, name: str, **kwargs):
        module, function = EXTRA_SUBCOMMANDS[name]
        if function is not None:  # search, evaluate: the function's parameters and settings
            from aframe_lib.search.settings import settings_parser

            sub = settings_parser(
                getattr(importlib.import_module(module), function), f"aframe-train {name}"
            )
            sub.exit_on_error = kwargs.get("exit_on_error", True)
            return sub
        # tune: the training config exactly as fit parses it, plus --tune.* (and --tune_config,
        # a second name of --config: a YAML with a `tune:` section)
        from jsonargparse import ActionConfigFile

        from aframe_lib.tune.config import TuneSettings

        added = self._subcommand_method_arguments.get("fit")
        sub = self._prepare_subcommand_parser(
            self.trainer_class, "fit", description=TUNE_HELP, **kwargs
        )
        if added is not None:
            self._subcommand_method_arguments["fit"] = added
        sub.add_class_arguments(TuneSettings, "tune", fail_untyped=False)
        config = next(a for a in sub._actions if isinstance(a, ActionConfigFile))
        config.option_strings.append("--tune_config")
        sub._option_string_actions["--tune_config"] = config
        return sub

    # --- running: the extra subcommands and a distributed fit run their own code ----------------

    def _route(self) -> str | None:
        """``"tune"``/``"search"``/``"evaluate"``, ``"distributed"`` or None (a Trainer method)."""
        if self.subcommand in EXTRA_SUBCOMMANDS:
            return self.subcommand
        if self.subcommand == "fit" and _distributed_given(self._argv, self.config["fit"]):
            return "distributed"
        return None

    def _set_seed(self) -> None:
        if self._route() is None:
            super()._set_seed()

    def instantiate_classes(self) -> None:
        if self._route() is None:
            super().instantiate_classes()

    def _instantiate_trainer(self, config, callbacks):
        from aframe_lib.distributed.checkpoints import stable_dirpath

        trainer = super()._instantiate_trainer(config, callbacks)
        # ModelCheckpoint in <default_root_dir>/checkpoints (unless its dirpath is set), not in
        # the logger's version_N: a run resumed with --ckpt_path keeps its best score and files,
        # as a Ray Train run or a retried trial does
        stable_dirpath(trainer)
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        route = self._route()
        if route is None:
            super()._run_subcommand(subcommand)
        elif route == "distributed":
            from aframe_lib.distributed.trainer import DistributedConfig

            settings = DistributedConfig(**dict(self.config["fit"]["distributed"]))
            fit_distributed(self._argv[1:], settings)
        elif route == "tune":  # a --config may hold the tune section too (a --print_config)
            import tempfile

            with tempfile.TemporaryDirectory(prefix="aframe-tune-config-") as tmp:
                importlib.import_module("aframe_train.tune").main(
                    split_tune_sections(self._argv[1:], Path(tmp))
                )
        else:  # the module's own main, on the arguments this parser has just accepted
            importlib.import_module(EXTRA_SUBCOMMANDS[route][0]).main(self._argv[1:])

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
                "<default_root_dir>/checkpoints/last.ckpt"
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


def split_tune_sections(argv: list[str], tmp: Path) -> list[str]:
    """``argv`` of ``tune`` with each ``--config`` file that also holds a ``tune:`` section (what
    ``aframe-train tune --print_config`` writes) given as two files in ``tmp``: the training
    config as ``--config`` and its ``tune:`` section as ``--tune_config`` (a relative
    ``tune.space`` taken beside the original file). Other arguments are kept as they are."""
    import yaml

    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        path = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        step = 1 if eq else 2
        config = None
        if name in ("--config", "-c") and Path(path).is_file():
            config = yaml.safe_load(Path(path).read_text())
        if not (isinstance(config, dict) and isinstance(config.get("tune"), dict)):
            out.append(token)
            i += 1
            continue
        tune = dict(config.pop("tune"))
        config.pop("tune_config", None)
        space = tune.get("space")
        if space and not Path(space).is_absolute() and not Path(space).exists():
            beside = Path(path).parent / space
            tune["space"] = str(beside) if beside.exists() else space
        n = len(out)
        training, section = tmp / f"training-{n}.yaml", tmp / f"tune-{n}.yaml"
        training.write_text(yaml.safe_dump(config, sort_keys=False))
        section.write_text(yaml.safe_dump({"tune": tune}, sort_keys=False))
        out += ["--config", str(training), "--tune_config", str(section)]
        i += step
    return out


def _distributed_given(argv: list[str], config) -> bool:
    """Whether a ``fit`` asks for Ray Train: a ``--distributed.*`` argument, or a config file's
    ``distributed`` section that differs from the defaults (a ``--print_config`` of a plain fit
    holds the defaults)."""
    from aframe_lib.distributed.trainer import DistributedConfig

    if any(a.startswith(DISTRIBUTED) for a in argv):
        return True
    given = config.get("distributed")
    defaults = {f.name: f.default for f in dataclasses.fields(DistributedConfig)}
    return given is not None and dict(given) != defaults


def fit_distributed(argv: list[str], settings=None) -> None:
    """``fit`` over Ray Train workers (``--distributed.*``, see aframe_lib.distributed);
    ``settings``: the parsed ``--distributed.*`` (None: parsed from ``argv`` here)."""
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
    run_fit(AframeCLI, rest, settings if settings is not None else parse_settings(ours))


@console_main("aframe-train")
def main(args: list[str] | None = None) -> None:
    """Entry point of the ``aframe-train`` console script (errors: aframe_lib.utils.errors)."""
    argv = sys.argv[1:] if args is None else list(args)
    check_yaml_files(argv, ("--config", "-c", "--tune_config"))
    if argv and argv[0] in ("fit", "validate", "test", "predict", "tune"):
        warn_linked(argv)
    try:
        AframeCLI(args=args if args is None else argv)
    except argparse.ArgumentError as exc:
        # jsonargparse names a subcommand's options by their key in the whole config
        # ("search.data"): name them as the user types them under that subcommand ("data")
        sub = argv[0] if argv and not argv[0].startswith("-") else None
        message = str(exc)
        if sub and re.search(rf"(?<![\w.]){re.escape(sub)}\.", message):
            raise argparse.ArgumentError(
                None, re.sub(rf"(?<![\w.]){re.escape(sub)}\.", "", message)
            ) from exc
        raise
