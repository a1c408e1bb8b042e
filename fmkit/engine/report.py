"""The run folder's reports: metrics.csv, metrics.json, the learning-curve figure, and test AUCs with intervals
(video level over every test video of the faces folder: :mod:`fmkit.engine.coverage`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fmkit.engine.coverage import INFO_COLUMNS, folder_videos, video_table
from fmkit.io import atomic_path, write_csv, write_json
from fmkit.metrics import auc_difference_interval, auc_interval, video_level

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


#: A faces folder (or its manifest, or rows of :func:`fmkit.engine.coverage.folder_videos`), or video_id → identity.
Identities = Mapping[str, str] | pd.Series | str | os.PathLike | pd.DataFrame


def _test_scores(run: str | os.PathLike, identities: Identities, level: str) -> pd.DataFrame:
    """A run's test scores (frames, or videos by mean probability) with each item's identity.

    ``identities``: a faces folder (or its manifest, or :func:`fmkit.engine.coverage.folder_videos`
    rows): the video level then covers every test video of it, 0.5 for a video the run has no item
    for (:func:`fmkit.engine.coverage.video_table`); or a mapping video_id → identity: the videos
    the run scored only.
    """
    pred = pd.read_csv(Path(run) / "test_predictions.csv", dtype={"video_id": str})
    if level not in ("frame", "video"):
        raise ValueError(f"level must be 'frame' or 'video', got {level!r}")
    if isinstance(identities, (Mapping, pd.Series)):
        if level == "video":
            pred = video_level(pred["prob"], pred["label"], pred["video_id"].tolist())
        return pred.assign(identity=pred["video_id"].map(identities).fillna(pred["video_id"]))
    info = identities
    if not (isinstance(info, pd.DataFrame) and set(INFO_COLUMNS) <= set(info.columns)):
        info = folder_videos(identities)
    if level == "video":
        return video_table(pred, info[info["split"] == "test"], f"run {run}")
    return pred.assign(identity=pred["video_id"].map(info["identity"]).fillna(pred["video_id"]))


def heldout_auc_table(
    runs: Mapping[str, str | os.PathLike], identities: Identities, resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Test AUC of each run's chosen checkpoint, frame and video level, with 95 % intervals.

    ``identities``: the faces folder the runs were trained on (or its manifest): the video
    level then covers every test video, a video without items (no face crop; for a clip run,
    fewer crops than a clip) scored 0.5 (:mod:`fmkit.engine.coverage`); or a mapping video_id →
    identity (the videos each run scored only). The bootstrap resamples identities (the
    ``source_id``), so the interval reflects how many different people the test split holds.
    Columns: model, level, auc, lo, hi, n (items or videos), fallback_videos (video level),
    identities.
    """
    rows = []
    for name, run in runs.items():
        for level in ("frame", "video"):
            s = _test_scores(run, identities, level)
            value, lo, hi = auc_interval(s["prob"], s["label"], s["identity"], resamples=resamples, seed=seed)
            rows.append(
                {
                    "model": name,
                    "level": level,
                    "auc": value,
                    "lo": lo,
                    "hi": hi,
                    "n": len(s),
                    "fallback_videos": int(s["fallback"].sum()) if "fallback" in s else 0,
                    "identities": s["identity"].nunique(),
                }
            )
    return pd.DataFrame(rows)


def heldout_auc_difference(
    run_a: str | os.PathLike,
    run_b: str | os.PathLike,
    identities: Identities,
    level: str = "video",
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Test AUC of ``run_a`` minus ``run_b`` on the same items, with a paired 95 % interval by identity
    (``identities`` as in :func:`heldout_auc_table`: a faces folder gives every test video)."""
    a, b = _test_scores(run_a, identities, level), _test_scores(run_b, identities, level)
    if not (a["video_id"].equals(b["video_id"]) and a["label"].equals(b["label"])):
        raise ValueError("the two runs scored different test items")
    return auc_difference_interval(a["prob"], b["prob"], a["label"], a["identity"], resamples=resamples, seed=seed)


# --- claims tables as the notebooks show them ------------------------------------------------

#: Fewer distinct test persons than this behind a claim and its verdict reads UNDECIDED: a bootstrap
#: interval over so few persons says little about other people, so no claim is MET (or MISSED) on them.
MIN_PERSONS = 10
#: The columns that count a claim's persons, by the tables that carry them: the claims protocol
#: (``n_persons``), :func:`fmkit.engine.compare.td3dcnn_claims` and
#: :func:`fmkit.interpret.explain_eval.versus_random` (``identities``),
#: :func:`fmkit.interpret.claims.whitening_report` (``n``).
PERSON_COLUMNS = ("n_persons", "identities", "n")


def persons_column(claims: pd.DataFrame) -> str:
    """The column of a claims table that counts each claim's test persons (:data:`PERSON_COLUMNS`)."""
    for column in PERSON_COLUMNS:
        if column in claims.columns:
            return column
    raise ValueError(f"a claims table needs a persons column ({', '.join(PERSON_COLUMNS)}); got {list(claims.columns)}")


def guard_verdicts(claims: pd.DataFrame, minimum: int = MIN_PERSONS) -> pd.DataFrame:
    """A claims table (``claim``, ``verdict`` and a persons column) as a notebook shows it: a claim measured on
    fewer than ``minimum`` persons reads UNDECIDED, whatever its interval (a cost claim of the claims protocol,
    ``n_fits`` 0, is measured over timing rounds and kept), and a ``note`` column says why
    (``too few persons (n < minimum)``; empty where the count suffices). The table's other columns are kept."""
    column = persons_column(claims)
    out = claims.copy()
    persons = pd.to_numeric(out[column], errors="coerce")
    few = ~(persons >= minimum)
    if "n_fits" in out.columns:  # the protocol's cost claims are timing rounds, not persons (n_fits 0)
        few &= pd.to_numeric(out["n_fits"], errors="coerce") != 0
    out.loc[few, "verdict"] = "UNDECIDED"
    out["note"] = [
        f"too few persons ({'?' if pd.isna(n) else int(n)} < {minimum})" if short else ""
        for n, short in zip(persons, few)
    ]
    return out


def _number(value: Any) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.3f}"


def claim_sentences(claims: pd.DataFrame, *names: str) -> str:
    """One line per claim of a (guarded) claims table, the claims ``names`` only when given: its value and
    interval against the target, the persons behind it and, after ``→``, the table's verdict and why.

    ``claim: 0.676 (95 % interval 0.634 … 0.721), target ≥ 0.8, 18 persons → MISSED: the whole interval
    misses the target``. The verdict is the table's, so a sentence never disagrees with its table.
    """
    rows = claims if not names else claims[claims["claim"].isin(names)]
    missing = sorted(set(names) - set(rows["claim"]))
    if missing:
        raise ValueError(f"no claim {missing[0]!r} in the table (claims: {', '.join(claims['claim'])})")
    column = persons_column(claims)
    lines = []
    for rec in rows.to_dict("records"):
        direction = {">=": "≥", "<=": "≤"}.get(str(rec.get("direction", ">=")), "≥")
        lo, hi = float(rec.get("lo", math.nan)), float(rec.get("hi", math.nan))
        has_interval = math.isfinite(lo) and math.isfinite(hi)
        interval = f"95 % interval {_number(lo)} … {_number(hi)}" if has_interval else "no interval"
        verdict, note = rec["verdict"], str(rec.get("note") or "")
        if verdict == "MET":
            why = "the whole interval clears the target" if has_interval else "the value clears the target"
        elif verdict == "MISSED":
            why = "the whole interval misses the target" if has_interval else "the value misses the target"
        elif note:
            why = note
        elif not has_interval:
            why = "no interval could be computed"
        else:
            why = "the interval straddles the target; more test persons, not more epochs, would decide"
        persons = "? persons" if pd.isna(rec[column]) else f"{int(rec[column])} person{'' if rec[column] == 1 else 's'}"
        lines.append(
            f"{rec['claim']}: {_number(rec['value'])} ({interval}), target {direction} {float(rec['target']):g}, "
            f"{persons} → {verdict}: {why}"
        )
    return "\n".join(lines)
