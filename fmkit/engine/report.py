"""The run folder's reports: metrics.csv, metrics.json and the learning-curve figure."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fmkit.io import atomic_path, write_csv, write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_history(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Rewrite the per-epoch metrics CSV (one row per finished epoch) atomically."""
    return write_csv(pd.DataFrame(list(history)), path)


def json_safe(value: Any) -> Any:
    """NaN and inf → None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_summary(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write metrics.json (NaN written as null) atomically."""
    return write_json(json_safe(summary), path)


def learning_curves(history: Sequence[Mapping[str, Any]]) -> Figure:
    """Losses (left) and validation metrics (right) per epoch (a pyplot-free Figure)."""
    from matplotlib.figure import Figure

    df = pd.DataFrame(list(history))
    fig = Figure(figsize=(9, 3.4))
    loss_ax, metric_ax = fig.subplots(1, 2)
    for col in ("train_loss", "val_loss"):
        if col in df:
            loss_ax.plot(df["epoch"], df[col], marker="o", label=col)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    metric_cols = [c for c in ("val_auc", "val_acc", "val_video_auc") if c in df]
    for col in metric_cols:
        metric_ax.plot(df["epoch"], df[col], marker="o", label=col)
    metric_ax.set(xlabel="epoch", title="validation", ylim=(0, 1.02) if metric_cols else None)
    for ax in (loss_ax, metric_ax):
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_learning_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Draw ``learning_curves`` to a PNG atomically."""
    with atomic_path(path) as tmp:
        learning_curves(history).savefig(tmp, dpi=110)
    return Path(path)


def run_quality(run: str | os.PathLike) -> dict[str, float]:
    """Frame- and video-level AUC on val (of the chosen checkpoint) and test, from a run's metrics.json."""
    summary = json.loads((Path(run) / "metrics.json").read_text())
    return {f"{split}_{key}": summary[split].get(key) for split in ("val", "test") for key in ("auc", "video_auc")}
