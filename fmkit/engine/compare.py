"""Compare trained detectors on the same held-out videos: video AUC per manipulation method, with intervals.

Frame detectors and clip detectors meet here: every run's ``test_predictions.csv`` (one
row per frame or clip) becomes one score per test video, the mean of its items'
probabilities, for **every** test video of the faces folder: a video a run has no item
for (no face crop; for a clip run, fewer crops than a clip) gets the fallback score 0.5
and is flagged (:mod:`fmkit.engine.coverage`), so every detector is measured on exactly
the same videos. Intervals are 95 % bootstrap intervals resampling test identities (the
index's ``source_id``), paired across detectors for differences.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from fmkit.data.schema import LABEL_REAL
from fmkit.engine.coverage import VIDEO_COLUMNS, folder_videos, split_videos, video_table
from fmkit.errors import FmkitError
from fmkit.metrics import auc_difference_interval, auc_interval, roc, verdict

ALL = "all"


def video_info(faces: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """Per video of a faces folder (or manifest), indexed by video_id: ``identity`` (source_id), ``method``,
    and ``label``, ``split``, ``crops`` (:func:`fmkit.engine.coverage.folder_videos`: the videos without
    any crop included)."""
    return folder_videos(faces)[["identity", "method", "label", "split", "crops"]]


def video_scores(
    runs: Mapping[str, str | os.PathLike],
    faces: str | os.PathLike | pd.DataFrame,
    common: bool = True,
    split: str = "test",
) -> pd.DataFrame:
    """Test video scores of every run, long format: every test video of ``faces`` for every run.

    Columns: ``model``, ``video_id``, ``label``, ``prob`` (mean of the video's items; 0.5 for a
    video the run has no item for), ``identity``, ``method`` (the index's: ``real`` or the
    manipulation), ``fallback`` (True where the run had no item: :func:`fmkit.engine.coverage.video_table`).
    ``faces`` is the faces folder (or its manifest, which knows only the videos with crops) the
    runs were trained on. With ``common=True`` only videos every run has a row for are kept (all
    of them, since every run is given every video).
    """
    videos = split_videos(faces, split)
    parts = []
    for name, run in runs.items():
        path = Path(run) / "test_predictions.csv"
        if not path.is_file():
            raise FmkitError(f"run {name!r} has no test predictions: {path} (did its training finish?)")
        pred = pd.read_csv(path, dtype={"video_id": str})
        parts.append(video_table(pred, videos, f"run {name!r}").assign(model=name))
    scores = pd.concat(parts, ignore_index=True)[["model", *VIDEO_COLUMNS]]
    if common:
        counts = scores.groupby("video_id")["model"].nunique()
        scores = scores[scores["video_id"].isin(counts.index[counts == len(runs)])]
    return scores.reset_index(drop=True)


def _subset(scores: pd.DataFrame, method: str) -> pd.DataFrame:
    """Real videos and the fakes of ``method`` (all fakes for ``"all"``)."""
    if method == ALL:
        return scores
    return scores[(scores["label"] == LABEL_REAL) | (scores["method"] == method)]


def fake_methods(scores: pd.DataFrame) -> list[str]:
    """The manipulation methods among the fakes, sorted."""
    return sorted(scores.loc[scores["label"] != LABEL_REAL, "method"].unique())


def auc_by_method(scores: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Video AUC of each model on all fakes and on each method's fakes (against all real videos).

    Columns: model, fakes, auc, lo, hi (95 % interval resampling identities), videos,
    fallback_videos (those scored 0.5 for want of an item, when ``scores`` has a ``fallback``
    column; else 0), identities.
    """
    rows = []
    for name, own in scores.groupby("model", sort=False):
        for method in [ALL, *fake_methods(scores)]:
            s = _subset(own, method)
            value, lo, hi = auc_interval(s["prob"], s["label"], s["identity"], resamples=resamples, seed=seed)
            rows.append(
                {
                    "model": name,
                    "fakes": method,
                    "auc": value,
                    "lo": lo,
                    "hi": hi,
                    "videos": len(s),
                    "fallback_videos": int(s["fallback"].sum()) if "fallback" in s else 0,
                    "identities": s["identity"].nunique(),
                }
            )
    return pd.DataFrame(rows)


def auc_difference(
    scores: pd.DataFrame, model_a: str, model_b: str, fakes: str = ALL, resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Video AUC of ``model_a`` minus ``model_b`` on the same videos (``fakes``: a method or ``"all"``),
    with a paired 95 % interval resampling identities."""
    a = _subset(scores[scores["model"] == model_a], fakes).set_index("video_id")
    b = _subset(scores[scores["model"] == model_b], fakes).set_index("video_id")
    if len(a) == 0 or len(b) == 0:
        raise FmkitError(
            f"no test videos of {model_a!r} or {model_b!r} (models: {', '.join(scores['model'].unique())})"
        )
    b = b.reindex(a.index)
    if b["prob"].isna().any():
        raise FmkitError(f"{model_a!r} and {model_b!r} scored different videos; use video_scores(common=True)")
    return auc_difference_interval(
        a["prob"].to_numpy(),
        b["prob"].to_numpy(),
        a["label"].to_numpy(),
        a["identity"].to_numpy(),
        resamples=resamples,
        seed=seed,
    )


def roc_points(scores: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Video-level ROC curve (fpr, tpr) of each model (:func:`fmkit.metrics.roc`)."""
    curves = {name: roc(own["prob"], own["label"]) for name, own in scores.groupby("model", sort=False)}
    return {name: (c["fpr"].to_numpy(), c["tpr"].to_numpy()) for name, c in curves.items()}


def keep_ablation(runs: Mapping[str, str | os.PathLike], table: pd.DataFrame) -> pd.DataFrame:
    """The TD-3DCNN runs of ``runs`` by temporal dropout keep ratio (``td3dcnn_nodrop``: 1.0).

    ``table`` is :func:`auc_by_method` of their scores. Columns: model, keep, auc (all fakes),
    lo, hi, wobble_auc (when the data has the temporal-only ``wobble`` fakes), best_epoch, train_seconds.
    """
    from fmkit.config import resolve_config

    rows = []
    for name, run in runs.items():
        model = resolve_config(Path(run) / "config.yaml")["model"]
        if model["name"] not in ("td3dcnn", "td3dcnn_nodrop"):
            continue
        summary = pd.read_json(Path(run) / "metrics.json", typ="series")
        own = table[table["model"] == name].set_index("fakes")
        row = {
            "model": name,
            "keep": 1.0 if model["name"] == "td3dcnn_nodrop" else float(model.get("keep", 0.75)),
            **own.loc[ALL, ["auc", "lo", "hi"]].to_dict(),
        }
        if "wobble" in own.index:
            row["wobble_auc"] = own.loc["wobble", "auc"]
        rows.append({**row, "best_epoch": summary["best_epoch"], "train_seconds": summary["seconds"]})
    return pd.DataFrame(rows).sort_values("keep", ignore_index=True)


#: The TD-3DCNN paper's claims: (claim, model a, model b or None for a's own AUC, fakes, target).
TD3DCNN_CLAIMS = (
    ("detects (video AUC)", "td3dcnn", None, ALL, 0.9),
    ("temporal dropout helps (AUC − no dropout)", "td3dcnn", "td3dcnn_nodrop", ALL, 0.0),
    ("3D beats frames on temporal-only fakes (wobble AUC − baseline2d)", "td3dcnn", "baseline2d", "wobble", 0.05),
)


def td3dcnn_claims(scores: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The claims of :data:`TD3DCNN_CLAIMS` whose models are in ``scores``, with 95 % intervals
    (paired by identity for differences) and verdicts (:func:`fmkit.metrics.verdict`)."""
    models = set(scores["model"])
    rows = []
    for claim, a, b, fakes, target in TD3DCNN_CLAIMS:
        if (
            a not in models
            or (b is not None and b not in models)
            or (fakes != ALL and fakes not in set(scores["method"]))
        ):
            continue
        if b is None:
            s = _subset(scores[scores["model"] == a], fakes)
            value, lo, hi = auc_interval(s["prob"], s["label"], s["identity"], resamples=resamples, seed=seed)
        else:
            value, lo, hi = auc_difference(scores, a, b, fakes, resamples=resamples, seed=seed)
        n = _subset(scores[scores["model"] == a], fakes)["identity"].nunique()
        rows.append(
            {
                "claim": claim,
                "value": value,
                "lo": lo,
                "hi": hi,
                "target": target,  # MET: the whole interval at or above it
                "verdict": verdict(lo, hi, target),
                "identities": n,
            }
        )
    return pd.DataFrame(rows)
