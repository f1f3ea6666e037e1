"""Quickstart, end to end: synthetic data -> training -> exported model -> report.

    python projects/quickstart/run.py [OUT_DIR]        (what `nox -s quickstart` runs)

1. ``aframe-train fit --config projects/quickstart/train.yaml`` (the real console script) with
   its data, logs, checkpoints and exported model under OUT_DIR (default ./quickstart-run);
   the synthetic data set is generated on first use and reused afterwards.
2. The exported TorchScript model (``model.pt``) is loaded on its own, without the training
   code, and scored on the held-out test split (``data.test_frac``: background files that
   neither training nor the checkpoint choice saw, and ``test_waveforms.hdf5``, waveforms from
   their own seed stream, not the validation set that chose the checkpoint).
3. ``report.md`` with plots (training curves, score distributions, detection efficiency vs
   SNR) is written to OUT_DIR, and the headline numbers are printed as ``name: value`` lines.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def train(out: Path) -> None:
    # the console script of the interpreter running this file (nox's environment)
    script = Path(sys.executable).parent / "aframe-train"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "aframe_train"]
    cmd = [
        *entry,
        "fit",
        "--config",
        str(HERE / "train.yaml"),
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        f"--data.init_args.data_dir={out / 'data'}",
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def read_metrics(out: Path) -> dict[str, list[tuple[int, float]]]:
    path = sorted(out.glob("logs/version_*/metrics.csv"))[-1]
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            for key in ("train_loss_epoch", "valid_auroc"):
                if row.get(key):
                    series.setdefault(key, []).append((int(row["epoch"]), float(row[key])))
    return series


def score_test_split(out: Path):
    """Scores of the exported model on the test split's background and injections."""
    import torch
    import yaml

    from aframe_lib.export import load_exported
    from aframe_train.cli import AframeCLI

    model, info = load_exported(out / "model.pt")
    # the data module exactly as training resolved it, from the config stored with the run
    config = yaml.safe_load(sorted(out.glob("logs/version_*/config.yaml"))[-1].read_text())
    config = {k: v for k, v in config.items() if k in ("seed_everything", "model", "data")}
    with warnings.catch_warnings():  # args given while sys.argv holds this script's own
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = AframeCLI(args=config, run=False)
    data = cli.datamodule
    data.setup("test")  # the test split's windows, in place of validation's
    background, foreground, snrs, shift_ids = [], [], [], []
    with torch.no_grad():
        for i in range(len(data.valid_windows)):
            batch = data.validation_batch(*data.valid_windows[i])
            keep = batch["shift_id"] >= 0
            fg = batch["foreground"][keep]
            background.append(model(batch["background"][keep])[:, 0])
            foreground.append(model(fg.flatten(0, 1))[:, 0].view(fg.shape[:2]).mean(1))
            snrs.append(batch["snr"][keep])
            shift_ids.append(batch["shift_id"][keep])
    example = batch["foreground"][:1, 0]
    livetime = len(torch.cat(background)) * data.valid_stride
    return (
        torch.cat(background).numpy(),
        torch.cat(foreground).numpy(),
        torch.cat(snrs).numpy(),
        livetime,
        info,
        example.numpy(),
        data,
    )


def describe_test_split(data) -> str:
    """Which background files and waveforms the test split holds (for the report)."""
    from aframe_lib.data import provenance

    files = data._split_paths["test"]
    waveforms = data._test_waveforms()
    record = provenance.read(waveforms) or {}
    stream = f", stream {record['stream']}" if "stream" in record else ""
    return (
        f"{len(files)} background file(s) from GPS {files[0].t0:.0f}, "
        f"injections of {Path(waveforms).name}{stream}"
    )


def report(out: Path) -> dict[str, float]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import roc_auc_score

    metrics = read_metrics(out)
    background, foreground, snrs, livetime, info, example, data = score_test_split(out)
    labels = np.r_[np.zeros(len(background)), np.ones(len(foreground))]
    auroc = roc_auc_score(labels, np.r_[background, foreground])
    # threshold at the loudest background window: a false-alarm rate of ~1 per livetime
    threshold = background.max()
    bins = np.array([0, 8, 12, 16, 20, 30, 100])
    which = np.digitize(snrs, bins) - 1
    efficiency = [
        float((foreground[which == b] > threshold).mean()) if (which == b).any() else np.nan
        for b in range(len(bins) - 1)
    ]

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for key, ax in zip(("train_loss_epoch", "valid_auroc"), axes[0], strict=True):
        x, y = zip(*metrics.get(key, [(0, np.nan)]), strict=True)
        ax.plot(x, y, marker="o")
        ax.set(xlabel="epoch", ylabel=key, title=key)
    ax = axes[1, 0]
    edges = np.histogram_bin_edges(np.r_[background, foreground], 60)
    ax.hist(background, edges, alpha=0.6, label=f"timeslid background ({livetime:.0f} s)")
    ax.hist(foreground, edges, alpha=0.6, label="injections")
    ax.axvline(threshold, color="k", ls="--", label="loudest background")
    ax.set(yscale="log", xlabel="exported model score", title="score distributions")
    ax.legend()
    ax = axes[1, 1]
    centres = 0.5 * (bins[1:] + np.minimum(bins[:-1], 60))
    ax.plot(centres, efficiency, marker="o")
    ax.set(
        xlabel="network SNR",
        ylabel=f"efficiency at 1/{livetime:.0f} s FAR",
        ylim=(0, 1.05),
        title="detection efficiency",
    )
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=90)

    fig, axes = plt.subplots(data.num_ifos, 1, figsize=(10, 2.2 * data.num_ifos), sharex=True)
    t = np.arange(example.shape[-1]) / data.sample_rate
    for ax, ifo, x in zip(np.atleast_1d(axes), data.ifos, example[0], strict=True):
        ax.plot(t, x, lw=0.6)
        ax.set(ylabel=f"{ifo} (whitened)")
    np.atleast_1d(axes)[-1].set(xlabel="time in kernel (s)")
    fig.suptitle("a test-split injection, as the network sees it")
    fig.savefig(out / "example.png", dpi=90)

    numbers = {
        "final_valid_auroc": metrics["valid_auroc"][-1][1] if "valid_auroc" in metrics else np.nan,
        "exported_roc_auc": float(auroc),
        "background_livetime_s": float(livetime),
        "efficiency_snr_gt_20": float(np.nanmean(efficiency[4:])),
        "export_max_abs_diff": float(info["max_abs_diff"]),
    }
    test_split = f"test split ({describe_test_split(data)})"
    split = {
        "final_valid_auroc": "validation split (it chose the checkpoint: optimistic)",
        "exported_roc_auc": test_split,
        "background_livetime_s": test_split,
        "efficiency_snr_gt_20": test_split,
        "export_max_abs_diff": "export check (a training batch)",
    }
    lines = [
        "# aframe quickstart report",
        "",
        f"Model: `{out / 'model.pt'}` (input shape {info['input_shape']}).",
        "",
        "| number | value | from |",
        "|---|---|---|",
        *[f"| {k} | {v:.4g} | {split[k]} |" for k, v in numbers.items()],
        "",
        "`final_valid_auroc` is training's metric (background clustered per timeslide, AUROC up "
        "to the config's max_fpr) on the validation split; `exported_roc_auc` is the plain ROC "
        "AUC of the exported model on every window of the test split, which neither training "
        "nor the checkpoint choice saw; efficiency is at the loudest test background window's "
        "score.",
        "",
        "![training and evaluation](report.png)",
        "",
        "![example](example.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    return numbers


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart-run").resolve()
    out.mkdir(parents=True, exist_ok=True)
    train(out)
    numbers = report(out)
    print(f"report: {out / 'report.md'}")
    for key, value in numbers.items():
        print(f"{key}: {value:.4g}")


if __name__ == "__main__":
    main()
