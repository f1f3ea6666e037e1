"""``aframe-train tune``: the search of :mod:`aframe_lib.tune`, preset to :class:`AframeCLI`.

    aframe-train tune --config projects/quickstart/train.yaml \\
        --tune_config projects/quickstart/tune.yaml --tune.num_samples=8

``--config`` and every other non-``--tune.*`` argument are the training config, as for
``aframe-train fit``; see ``aframe_train/configs/tune.yaml`` for the settings.
"""

from __future__ import annotations

CLI = "aframe_train.cli.AframeCLI"


def main(args: list[str] | None = None) -> dict:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"aframe-train tune needs Ray: pip install 'aframe-train[tune]' ({exc})"
        ) from exc
    from aframe_lib.tune.cli import main as tune_main

    return tune_main(args, cli_cls=CLI)
