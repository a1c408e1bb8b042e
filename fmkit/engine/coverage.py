"""Every video of a split scored by every detector: the videos to score and the fallback score.

A detector scores a video by the mean probability of its items (frames, or clips for a
video model). Some videos have no item: MTCNN found no face in any of their sampled frames
(or the file could not be read), or, for a clip model (``data.kind: clip``), they have
fewer face crops than ``data.clip_len``, so not one clip (``data.short_videos: skip``).
Those videos are mostly fakes, so leaving them out of a detector's tables would measure it
on a label-dependent subset, and frame and clip detectors on different videos.

So video-level tables and metrics cover **every video of the split in the index the faces
folder was made from**: the videos of its manifest (``faces.csv``) and those recorded
only in its ``errors.csv`` (whose rows carry each video's index columns: label, split,
method, dataset, source_id). The rule (:func:`video_table`):

- a video with at least one item of the detector is scored by the mean of its items;
- a video without any, **fallback**, gets p = :data:`FALLBACK_PROB` (0.5: the detector
  abstains) and is counted (``fallback`` column, ``fallback_videos`` in metrics).

For a clip model a video with some crops but fewer than a clip falls back too: its crops
are not looped or padded into a clip, since a repeated or wrapped-around frame is a
temporal cue that real clips lack, and with such videos mostly fakes the cue would be
label-dependent. Every detector thus meets on the same videos. Item-level (frame or
clip) metrics stay over the items that exist. The bootstrap group of a video is its
``source_id`` (its identity), from the manifest or, for a video without crops, from
``errors.csv``.

A faces folder written before ``errors.csv`` carried the index columns lacks the labels of
its faceless videos: they are left out with one warning (re-run ``fmkit preprocess INDEX
-o FACES --retry-errors`` to record them).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pandas as pd

from fmkit.data.schema import ERRORS_FILE, faces_root, read_errors, read_faces
from fmkit.errors import FmkitError
from fmkit.metrics import MetricWarning, compute_metrics, metric_intervals, video_level

#: The score of a video a detector has no item for (no face crop; for a clip model, too few for a clip).
FALLBACK_PROB = 0.5
#: The columns of :func:`video_table`.
VIDEO_COLUMNS = ["video_id", "label", "prob", "identity", "method", "fallback"]
#: The columns of :func:`folder_videos`.
INFO_COLUMNS = ["label", "split", "identity", "method", "crops"]

Faces = str | os.PathLike | pd.DataFrame


def folder_videos(faces: Faces) -> pd.DataFrame:
    """Every video a faces folder was made from, one row per video indexed by ``video_id`` (sorted).

    Columns: ``label``, ``split``, ``identity`` (the index's ``source_id``), ``method`` and
    ``crops`` (its face crops in the manifest; 0 for a video that gave none). ``faces``: the
    faces folder, its ``faces.csv``, or a manifest DataFrame (then only the videos with crops).
    """
    if isinstance(faces, pd.DataFrame):
        manifest, errors, source = faces, None, "the manifest"
    else:
        manifest, errors = read_faces(faces), read_errors(faces)
        source = str(faces_root(Path(faces)) / ERRORS_FILE)
    manifest = manifest.assign(video_id=manifest["video_id"].astype(str))
    info = manifest.groupby("video_id").agg(
        label=("label", "first"),
        split=("split", "first"),
        identity=("source_id", "first"),
        method=("method", "first"),
        crops=("video_id", "size"),
    )
    if errors is not None and len(errors):
        faceless = errors[~errors["video_id"].isin(info.index)].drop_duplicates("video_id")
        unknown = faceless[faceless[["label", "split", "source_id"]].isna().any(axis=1)]
        if len(unknown):
            warnings.warn(
                f"{len(unknown)} video(s) of {source} gave no face crop and are recorded without their label and "
                f"split (e.g. {unknown['video_id'].iloc[0]}; a faces folder of an older fmkit): they are left out "
                "of the video tables; re-run `fmkit preprocess INDEX -o FACES --retry-errors` to record them",
                stacklevel=2,
            )
        known = faceless.drop(index=unknown.index)
        extra = pd.DataFrame(
            {
                "label": known["label"].astype(int).to_numpy(),
                "split": known["split"].to_numpy(),
                "identity": known["source_id"].astype(str).to_numpy(),
                "method": known["method"].to_numpy(),
                "crops": 0,
            },
            index=pd.Index(known["video_id"].to_numpy(), name="video_id"),
        )
        info = pd.concat([info, extra]) if len(extra) else info
    info.index = info.index.astype(str)
    info["label"] = info["label"].astype(int)
    return info[INFO_COLUMNS].sort_index()


def split_videos(faces: Faces, split: str = "test") -> pd.DataFrame:
    """The rows of :func:`folder_videos` in ``split``: the videos every detector is scored on."""
    info = folder_videos(faces)
    return info[info["split"] == split]


def video_table(
    pred: pd.DataFrame, videos: pd.DataFrame | None = None, name: str = "predictions", reduce: str = "mean"
) -> pd.DataFrame:
    """Item predictions (``video_id``, ``label``, ``prob``) → one row per video of ``videos``.

    ``videos``: rows of :func:`folder_videos` (e.g. :func:`split_videos`), indexed by
    video_id; None: only the videos that have items (identity = video id, method unknown).
    Columns :data:`VIDEO_COLUMNS`: ``prob`` is the ``reduce`` (mean) of the video's items,
    or :data:`FALLBACK_PROB` for a video without items (``fallback`` True). Sorted by video
    id. A scored video that is not in ``videos``, or whose label differs, is an FmkitError.
    """
    scored = video_level(pred["prob"], pred["label"], pred["video_id"].astype(str).tolist(), reduce)
    scored = scored.set_index("video_id")
    if videos is None:
        videos = pd.DataFrame(
            {"label": scored["label"], "identity": scored.index, "method": pd.NA}, index=scored.index.rename("video_id")
        )
    unknown = scored.index.difference(videos.index)
    if len(unknown):
        raise FmkitError(f"{name} scored video {unknown[0]!r}, which is not among the faces folder's videos to score")
    labels = videos["label"].reindex(scored.index)
    if (labels.to_numpy() != scored["label"].to_numpy()).any():
        bad = scored.index[labels.to_numpy() != scored["label"].to_numpy()][0]
        raise FmkitError(f"{name} gives video {bad!r} another label than the faces folder does")
    prob = scored["prob"].reindex(videos.index)
    table = pd.DataFrame(
        {
            "video_id": videos.index.astype(str),
            "label": videos["label"].astype(int).to_numpy(),
            "prob": prob.fillna(FALLBACK_PROB).to_numpy(),
            "identity": videos["identity"].to_numpy(),
            "method": videos["method"].to_numpy(),
            "fallback": prob.isna().to_numpy(),
        }
    )
    return table.sort_values("video_id", ignore_index=True)[VIDEO_COLUMNS]


def item_groups(pred: pd.DataFrame, table: pd.DataFrame) -> list[Hashable]:
    """The bootstrap group (identity) of each item of ``pred``: its video's in ``table``, else its video id."""
    ids = pred["video_id"].astype(str)
    return ids.map(table.set_index("video_id")["identity"]).fillna(ids).tolist()


def _video_level_call(table: pd.DataFrame, call: Any, *args: Any, **kw: Any) -> Any:
    """``call`` on the video table with its MetricWarnings re-emitted as one that names the video level."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        out = call(*args, **kw)
    messages = [str(w.message) for w in caught if issubclass(w.category, MetricWarning)]
    if messages:
        fake = int(table["label"].sum())
        warnings.warn(
            f"video level ({fake} fake, {len(table) - fake} real videos): {'; '.join(messages)}",
            MetricWarning,
            stacklevel=3,
        )
    for w in caught:
        if not issubclass(w.category, MetricWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


def _video_threshold(threshold: float | None, video_threshold: float | None) -> float | None:
    return threshold if video_threshold is None else video_threshold


def metrics_with_fallback(
    pred: pd.DataFrame,
    table: pd.DataFrame,
    threshold: float | None = None,
    video_threshold: float | None = None,
) -> dict[str, float]:
    """:func:`fmkit.metrics.compute_metrics`' keys: item-level over the items of ``pred``, video-level
    (``video_*``, ``n_videos``) over every video of ``table`` (:func:`video_table`), fallback videos
    included, and ``fallback_videos``. ``video_threshold`` defaults to ``threshold``."""
    out = compute_metrics(pred["prob"].to_numpy(), pred["label"].to_numpy(), threshold=threshold)
    vt = _video_threshold(threshold, video_threshold)
    video = _video_level_call(table, compute_metrics, table["prob"].to_numpy(), table["label"].to_numpy(), threshold=vt)
    keys = ["auc", "acc", "ap", "eer", "logloss"] + (["acc_at_threshold"] if vt is not None else [])
    out.update({f"video_{k}": video[k] for k in keys})
    out["n_videos"] = int(len(table))
    out["fallback_videos"] = int(table["fallback"].sum())
    if vt is not None:
        out["video_threshold"] = video["threshold"]
    return out


def intervals_with_fallback(
    pred: pd.DataFrame,
    table: pd.DataFrame,
    threshold: float | None = None,
    video_threshold: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95 % intervals (:func:`fmkit.metrics.metric_intervals`) of :func:`metrics_with_fallback`: items
    and videos resample identities (a video's ``identity`` in ``table``, its items' alike)."""
    out = metric_intervals(
        pred["prob"].to_numpy(),
        pred["label"].to_numpy(),
        item_groups(pred, table),
        threshold=threshold,
        resamples=resamples,
        seed=seed,
    )
    video = _video_level_call(
        table,
        metric_intervals,
        table["prob"].to_numpy(),
        table["label"].to_numpy(),
        table["identity"].fillna(table["video_id"]).tolist(),
        threshold=_video_threshold(threshold, video_threshold),
        resamples=resamples,
        seed=seed,
    )
    out.update({f"video_{k}": v for k, v in video.items()})
    return out
