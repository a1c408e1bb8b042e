"""Detection metrics at frame level and video level: the one metrics module of fmkit.

Every function takes ``(probs, labels)`` in that order: ``probs`` are fake
probabilities in [0, 1] (a sigmoid of the model's logits), ``labels`` are 1 for fake and
0 for real. The numbers come from scikit-learn. Metrics that need both classes (AUC,
EER) are ``nan`` when only one class is present, and AP is ``nan`` without any fake:
a tiny or one-sided split gives ``nan``, never a crash.

Video level: a video's score is the mean (or median, max) of its frames' (or clips')
probabilities, and the metrics are computed over videos.

Intervals: :func:`bootstrap_interval` resamples whole groups (identities, or source videos
when identities are unknown), so frames and videos of one person never count as
independent evidence; :func:`verdict` turns an interval and a target into MET, MISSED or
UNDECIDED.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from fmkit.errors import FmkitError

THRESHOLD = 0.5
REDUCTIONS = ("mean", "median", "max")


def _arrays(probs: Sequence[float], labels: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities but {y.size} labels")
    if np.isnan(p).any() or (p.size and (p.min() < 0.0 or p.max() > 1.0)):
        raise ValueError("probs must be probabilities in [0, 1] without NaN (apply a sigmoid to logits)")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return p, y.astype(np.int64)


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < y.sum() < y.size


def auc(probs: Sequence[float], labels: Sequence[float]) -> float:
    """Area under the ROC curve; ``nan`` when one class only."""
    p, y = _arrays(probs, labels)
    return float(skm.roc_auc_score(y, p)) if _both_classes(y) else float("nan")


def accuracy(probs: Sequence[float], labels: Sequence[float], threshold: float = THRESHOLD) -> float:
    """Share of items called right, calling an item fake when ``prob >= threshold``."""
    p, y = _arrays(probs, labels)
    return float(skm.accuracy_score(y, p >= threshold)) if y.size else float("nan")


def average_precision(probs: Sequence[float], labels: Sequence[float]) -> float:
    """Average precision with fake as the positive class; ``nan`` without any fake."""
    p, y = _arrays(probs, labels)
    return float(skm.average_precision_score(y, p)) if y.sum() > 0 else float("nan")


def eer(probs: Sequence[float], labels: Sequence[float]) -> float:
    """Equal error rate: where the false-positive and false-negative rates meet.

    The crossing is found on the ROC polyline by linear interpolation, so it is exact
    for the curve scikit-learn returns. ``nan`` when one class only.
    """
    p, y = _arrays(probs, labels)
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, _ = skm.roc_curve(y, p)
    gap = (1.0 - tpr) - fpr  # falls from 1 to -1 along the curve
    i = int(np.argmax(gap <= 0.0))
    if i == 0 or gap[i] == 0.0:
        return float(fpr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def log_loss(probs: Sequence[float], labels: Sequence[float]) -> float:
    """Mean binary cross-entropy of the probabilities (clipped away from 0 and 1)."""
    p, y = _arrays(probs, labels)
    return float(skm.log_loss(y, p, labels=[0, 1])) if y.size else float("nan")


def video_level(
    probs: Sequence[float], labels: Sequence[float], video_ids: Sequence[str], reduce: str = "mean"
) -> pd.DataFrame:
    """Aggregate item probabilities per video.

    Returns one row per video (sorted by id) with columns ``video_id``, ``prob`` (the
    ``reduce`` of its items' probabilities) and ``label``. A video whose items disagree
    on the label is an error: labels belong to videos.
    """
    if reduce not in REDUCTIONS:
        raise FmkitError(f"unknown video reduction {reduce!r}: expected one of {', '.join(REDUCTIONS)}")
    p, y = _arrays(probs, labels)
    if len(video_ids) != p.size:
        raise ValueError(f"{len(video_ids)} video ids for {p.size} probabilities")
    df = pd.DataFrame({"video_id": [str(v) for v in video_ids], "prob": p, "label": y})
    grouped = df.groupby("video_id", sort=True)
    mixed = grouped["label"].nunique() > 1
    if mixed.any():
        raise FmkitError(f"video {mixed[mixed].index[0]!r} has items with both labels; a label belongs to a video")
    out = grouped.agg(prob=("prob", reduce), label=("label", "first")).reset_index()
    return out[["video_id", "prob", "label"]]


def _scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {
        "auc": auc(p, y),
        "acc": accuracy(p, y),
        "ap": average_precision(p, y),
        "eer": eer(p, y),
        "logloss": log_loss(p, y),
    }


def compute_metrics(
    probs: Sequence[float], labels: Sequence[float], video_ids: Sequence[str] | None = None, reduce: str = "mean"
) -> dict[str, float]:
    """Frame-level metrics, and video-level ones when ``video_ids`` are given.

    Keys: ``auc``, ``acc``, ``ap``, ``eer``, ``logloss``, ``n`` (items), ``n_fake``; with
    ids also ``video_auc``, ``video_acc``, ``video_ap``, ``video_eer``,
    ``video_logloss`` and ``n_videos``.
    """
    p, y = _arrays(probs, labels)
    out: dict[str, float] = {**_scores(p, y), "n": int(y.size), "n_fake": int(y.sum())}
    if video_ids is not None:
        videos = video_level(p, y, video_ids, reduce)
        vp, vy = videos["prob"].to_numpy(), videos["label"].to_numpy()
        out.update({f"video_{k}": v for k, v in _scores(vp, vy).items()})
        out["n_videos"] = int(len(videos))
    return out


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    groups: Sequence[Hashable],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile ``level`` interval of ``statistic(rows)`` over resamples of whole groups.

    ``groups[i]`` is the group (identity, source video) of row ``i``; each resample draws
    as many groups as there are, with replacement, and passes the rows of the drawn
    groups (an index array, repeats included) to ``statistic``. Resamples where the
    statistic is NaN (e.g. one class only) are dropped; with fewer than half of them
    valid, or fewer than two groups, the interval is (nan, nan).
    """
    codes, _ = pd.factorize(pd.Series(list(groups), dtype=object))
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)] if len(codes) else []
    if len(members) < 2:  # one group: resampling it says nothing about other people
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        rows = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        value = statistic(rows)
        if np.isfinite(value):
            draws.append(value)
    if len(draws) < resamples / 2:
        return float("nan"), float("nan")
    lo, hi = np.percentile(draws, [50 * (1 - level), 100 - 50 * (1 - level)])
    return float(lo), float(hi)


def auc_interval(
    probs: Sequence[float], labels: Sequence[float], groups: Sequence[Hashable], **kw: Any
) -> tuple[float, float, float]:
    """AUC and its bootstrap interval resampled by group: (auc, lo, hi)."""
    p, y = _arrays(probs, labels)
    return (auc(p, y), *bootstrap_interval(lambda r: auc(p[r], y[r]), groups, **kw))


def auc_difference_interval(
    probs_a: Sequence[float], probs_b: Sequence[float], labels: Sequence[float], groups: Sequence[Hashable], **kw: Any
) -> tuple[float, float, float]:
    """AUC(a) − AUC(b) of two detectors scored on the same items, with a paired bootstrap interval by group."""
    a, y = _arrays(probs_a, labels)
    b, _ = _arrays(probs_b, labels)
    diff = lambda r: auc(a[r], y[r]) - auc(b[r], y[r])
    return (diff(np.arange(y.size)), *bootstrap_interval(diff, groups, **kw))


def verdict(lo: float, hi: float, target: float, larger: bool = True) -> str:
    """MET when the whole interval [lo, hi] clears ``target`` (>= it if ``larger``, else <= it),
    MISSED when the whole interval misses it, UNDECIDED otherwise (or when the interval is NaN)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "UNDECIDED"
    if larger:
        return "MET" if lo >= target else "MISSED" if hi < target else "UNDECIDED"
    return "MET" if hi <= target else "MISSED" if lo > target else "UNDECIDED"
