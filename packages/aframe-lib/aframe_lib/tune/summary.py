"""The end of a search: a table of its trials, the best config and score, the best model.

``summary.json`` (everything, including each trial's config) and ``summary.csv`` (one row per
trial, config keys as ``config/<key>`` columns) are written to the search directory, and the
best trial's exported model (``model.pt``, ``model.json``, ``model.onnx``) is copied beside them
from the trial's final Ray checkpoint. The best trial is the best by its last reported score
(Ray's ``scope="last"``) among the trials that did not fail (a failed trial's partial score is no
result); trials stopped by ASHA exported no model. A failed trial's row names its error: the
training's own exception, not Ray's wrapper.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..utils import fs
from .config import EPOCHS_TRAINED, TuneSettings
from .storage import copy_exported_model, write_summary


def summarize(results: Any, settings: TuneSettings, search_dir: str) -> dict[str, Any]:
    """The table of trials, the best config and score; writes it and copies the best model."""
    metric = settings.metric
    rows = []
    for result in results:
        metrics = result.metrics or {}
        frame = result.metrics_dataframe
        values = frame[metric].dropna() if frame is not None and metric in frame else []
        epochs = float(metrics.get(EPOCHS_TRAINED, metrics.get("training_iteration")) or 0)
        epochs = int(epochs) if epochs.is_integer() else epochs
        status = "error" if result.error else (
            "completed" if epochs >= settings.max_epochs else "stopped")  # fmt: skip
        rows.append({
            "trial_id": metrics.get("trial_id") or Path(result.path).name.rsplit("_", 1)[-1],
            "status": status,
            "epochs": epochs,
            metric: metrics.get(metric),
            f"best_{metric}": (max if settings.mode == "max" else min)(values, default=None),
            "trial_start_time": metrics.get("trial_start_time"),
            "report_time": metrics.get("report_time"),
            "error": error_text(result.error),
            "config": dict(result.config or {}),
        })  # fmt: skip
    summary: dict[str, Any] = {
        "name": settings.name,
        "search_dir": search_dir,
        "metric": metric,
        "mode": settings.mode,
        "settings": asdict(settings),
        "trials": rows,
        "best": None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    best = best_result(results, metric, settings.mode)
    if best is not None:
        model = copy_exported_model(best.checkpoint, search_dir, ("model.pt", "model.json"))
        model += copy_exported_model(best.checkpoint, search_dir, ("model.onnx",))
        summary["best"] = {
            "trial_id": best.metrics.get("trial_id"),
            "score": best.metrics.get(metric),
            "config": dict(best.config),
            "model": model[0] if model else None,
        }
    write_summary(search_dir, summary)
    print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    metric = summary["metric"]
    keys = sorted({k for row in summary["trials"] for k in row["config"]})
    header = ["trial", "status", "epochs", metric, *[k.rsplit(".", 1)[-1] for k in keys]]
    table = [header]
    for row in summary["trials"]:
        score = row[metric]
        table.append([
            row["trial_id"], row["status"], str(row["epochs"]),
            "-" if score is None else f"{score:.4g}",
            *[_short(row["config"].get(k)) for k in keys],
        ])  # fmt: skip
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(f"\nsearch {summary['name']} ({summary['search_dir']}):")
    for r in table:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    for row in summary["trials"]:
        if row["status"] == "error":
            print(f"trial {row['trial_id']} failed: {row['error']}")
    best = summary["best"]
    if best is None:
        print(f"no trial finished without error and reported {metric}: no best trial")
        print(f"summary: {fs.join(summary['search_dir'], 'summary.json')}", flush=True)
        return
    print(f"best trial: {best['trial_id']}  {metric} = {best['score']:.4g}")
    print(f"best config: {best['config']}")
    print(f"best model: {best['model'] or '(the best trial exported no model)'}")
    print(f"summary: {fs.join(summary['search_dir'], 'summary.json')}", flush=True)


def best_result(results: Any, metric: str, mode: str) -> Any:
    """The result with the best last ``metric`` among trials that did not fail, or None."""
    scored = []
    for result in results:
        value = (result.metrics or {}).get(metric)
        if result.error is None and isinstance(value, int | float) and math.isfinite(value):
            scored.append((value, result))
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda pair: pair[0])[1]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_text(error: BaseException | None) -> str | None:
    """The first line of a failed trial's own exception (Ray wraps it in a RayTaskError whose
    first line only names the actor), without terminal colours."""
    if error is None:
        return None
    cause = getattr(error, "cause", None) or error
    text = _ANSI.sub("", str(cause)).strip()
    first = text.splitlines()[0] if text else type(cause).__name__
    return first[:500]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
