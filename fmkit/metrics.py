"""Detection metrics at frame level and video level: the one metrics module of fmkit.

Every function takes ``(probs, labels)`` in that order: ``probs`` are fake
probabilities in [0, 1] (a sigmoid of the model's logits), ``labels`` are 1 for fake and
0 for real. An item is called fake when ``prob >= threshold`` (0.5 unless a threshold is
given, e.g. one chosen on validation with :func:`eer_threshold`). The numbers come from
scikit-learn (bootstrap resamples use an equivalent weighted computation, tested against it).

Degenerate input never gives a wrong number:

- NaN (or out-of-range) probabilities, labels other than 0/1, and length mismatches raise
  ``ValueError`` naming the problem.
- Metrics that need both classes (AUC, EER, the EER threshold, the ROC curve) are ``nan``
  (an empty ROC) when only one class is present, and AP is ``nan`` without any fake; every
  metric is ``nan`` for empty input. Each such call emits one :class:`MetricWarning` (a
  ``RuntimeWarning``) saying which metrics are ``nan`` and why; filter it with
  ``warnings.simplefilter("ignore", MetricWarning)`` where one-class splits are expected.

Video level: a video's score is the mean (or median, max) of its frames' (or clips')
probabilities, and the metrics are computed over videos.

Intervals: :func:`bootstrap_interval` resamples whole groups (identities, or source videos
when identities are unknown), so frames and videos of one person never count as
independent evidence; :func:`metric_intervals` gives the intervals of all metrics at once;
:func:`verdict` turns an interval and a target into MET, MISSED or UNDECIDED. K-fold
cross-validation over persons: :func:`pooled_bootstrap` (and :func:`pooled_auc`,
:func:`pooled_auc_difference`, :func:`pooled_mean`) measures a statistic per fold, averages it
over folds and resamples persons across all folds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from fmkit.errors import FmkitError

THRESHOLD = 0.5
REDUCTIONS = ("mean", "median", "max")
NAN = float("nan")


class MetricWarning(RuntimeWarning):
    """A metric is ``nan`` because its input is degenerate (empty, one class only, too few groups)."""


def _warn(message: str, stacklevel: int = 3) -> None:
    warnings.warn(message, MetricWarning, stacklevel=stacklevel)


def _arrays(probs: Sequence[float], labels: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities but {y.size} labels")
    nan = np.isnan(p)
    if nan.any():
        raise ValueError(
            f"probs holds {int(nan.sum())} NaN of {p.size} probabilities (first at index {int(np.argmax(nan))}): "
            "a NaN has no rank; fix or drop those items"
        )
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(
            f"probs must be probabilities in [0, 1], got values in [{p.min():g}, {p.max():g}] "
            "(apply a sigmoid to logits)"
        )
    if not np.isin(y, (0.0, 1.0)).all():
        bad = y[~np.isin(y, (0.0, 1.0))][0]
        raise ValueError(f"labels must be 0 (real) or 1 (fake), got {bad:g}")
    return p, y.astype(np.int64)


def _check_threshold(threshold: float) -> float:
    """A threshold in probability units: NaN passes (its accuracies are NaN); outside [0, 1] is refused."""
    t = float(threshold)
    if not math.isnan(t) and not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold {t:g} is not a probability in [0, 1]")
    return t


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < y.sum() < y.size


def _class_counts(y: np.ndarray, unit: str = "items") -> str:
    if not y.size:
        return f"no {unit}"
    return f"one class only ({int(y.sum())} fake, {int(y.size - y.sum())} real {unit})"


# Silent cores: NaN without a warning (the public functions and compute_metrics warn once).


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    return float(skm.roc_auc_score(y, p)) if _both_classes(y) else NAN


def _acc(p: np.ndarray, y: np.ndarray, threshold: float = THRESHOLD) -> float:
    if not y.size or math.isnan(threshold):
        return NAN
    return float(skm.accuracy_score(y, p >= threshold))


def _ap(p: np.ndarray, y: np.ndarray) -> float:
    return float(skm.average_precision_score(y, p)) if y.sum() > 0 else NAN


def _eer_on_curve(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Where FNR = 1 − TPR meets FPR on the ROC polyline (vertices from (0, 0) to (1, 1))."""
    gap = (1.0 - tpr) - fpr  # falls from 1 to -1 along the curve
    i = int(np.argmax(gap <= 0.0))
    if i == 0 or gap[i] == 0.0:
        return float(fpr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def _eer(p: np.ndarray, y: np.ndarray) -> float:
    if not _both_classes(y):
        return NAN
    fpr, tpr, _ = skm.roc_curve(y, p)
    return _eer_on_curve(fpr, tpr)


def _eer_threshold(p: np.ndarray, y: np.ndarray) -> float:
    if not _both_classes(y):
        return NAN
    fpr, tpr, thresholds = skm.roc_curve(y, p, drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # FNR − FPR, strictly falling from 1 to -1
    i = int(np.argmax(gap <= 0.0))  # >= 1: the first vertex (threshold inf) has gap 1
    return float(thresholds[i - 1] if abs(gap[i - 1]) < abs(gap[i]) else thresholds[i])


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(skm.log_loss(y, p, labels=[0, 1])) if y.size else NAN


def auc(probs: Sequence[float], labels: Sequence[float]) -> float:
    """Area under the ROC curve; ``nan`` (with a :class:`MetricWarning`) when one class only."""
    p, y = _arrays(probs, labels)
    if not _both_classes(y):
        _warn(f"AUC is NaN: {_class_counts(y)}")
    return _auc(p, y)


def accuracy(probs: Sequence[float], labels: Sequence[float], threshold: float = THRESHOLD) -> float:
    """Share of items called right, calling an item fake when ``prob >= threshold``.

    ``threshold`` is a probability in [0, 1] (``ValueError`` otherwise). ``nan`` with a
    :class:`MetricWarning` for empty input or a NaN threshold (e.g. an :func:`eer_threshold`
    of a one-class validation split).
    """
    p, y = _arrays(probs, labels)
    t = _check_threshold(threshold)
    if not y.size:
        _warn("accuracy is NaN: no items")
    elif math.isnan(t):
        _warn("accuracy is NaN: the threshold is NaN")
    return _acc(p, y, t)


def average_precision(probs: Sequence[float], labels: Sequence[float]) -> float:
    """Average precision with fake as the positive class; ``nan`` (with a warning) without any fake."""
    p, y = _arrays(probs, labels)
    if not y.sum() > 0:
        _warn(f"average precision is NaN: no fake among {y.size} items")
    return _ap(p, y)


def eer(probs: Sequence[float], labels: Sequence[float]) -> float:
    """Equal error rate: where the false-positive and false-negative rates meet.

    The crossing is found on the ROC polyline by linear interpolation, so it is exact
    for the curve scikit-learn returns. ``nan`` (with a :class:`MetricWarning`) when one
    class only.
    """
    p, y = _arrays(probs, labels)
    if not _both_classes(y):
        _warn(f"EER is NaN: {_class_counts(y)}")
    return _eer(p, y)


def eer_threshold(probs: Sequence[float], labels: Sequence[float]) -> float:
    """The probability threshold of the operating point nearest the EER, to choose on validation.

    Returns one of the ``probs`` (a vertex of scikit-learn's ``roc_curve`` with
    ``drop_intermediate=False``, so every achievable operating point is a candidate);
    calling an item fake when ``prob >= threshold`` reproduces that vertex's FPR and TPR,
    as :func:`accuracy` and ``compute_metrics(threshold=...)`` do. Thresholds are not
    interpolated (scores between two vertices give one of them): :func:`eer` interpolates
    the crossing of FNR = 1 − TPR and FPR between the two vertices that bracket it, and this
    returns the threshold of the bracketing vertex where |FNR − FPR| is smaller, i.e. the one
    nearer the interpolated crossing. A vertex exactly at the crossing is returned as is;
    a tie between the two goes to the lower threshold (the vertex with FNR <= FPR), so
    the result is never ``inf``. ``nan`` with a :class:`MetricWarning` when one class only.
    """
    p, y = _arrays(probs, labels)
    if not _both_classes(y):
        _warn(f"EER threshold is NaN: {_class_counts(y)}")
    return _eer_threshold(p, y)


def roc(probs: Sequence[float], labels: Sequence[float]) -> pd.DataFrame:
    """The ROC curve as a table with columns ``fpr``, ``tpr``, ``threshold`` (scikit-learn's ``roc_curve``).

    Rows go from (0, 0) at threshold ``inf`` (nothing called fake) to (1, 1), thresholds
    descending; an item is called fake when ``prob >= threshold``. Collinear intermediate
    points are dropped (scikit-learn's default), which leaves the curve unchanged. An empty
    table (same columns) with a :class:`MetricWarning` when one class only.
    """
    p, y = _arrays(probs, labels)
    if not _both_classes(y):
        _warn(f"ROC curve is empty: {_class_counts(y)}")
        return pd.DataFrame({"fpr": [], "tpr": [], "threshold": []}, dtype=np.float64)
    fpr, tpr, thresholds = skm.roc_curve(y, p)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds})


def log_loss(probs: Sequence[float], labels: Sequence[float]) -> float:
    """Mean binary cross-entropy of the probabilities (clipped away from 0 and 1); ``nan`` (warned) when empty."""
    p, y = _arrays(probs, labels)
    if not y.size:
        _warn("log loss is NaN: no items")
    return _log_loss(p, y)


def video_level(
    probs: Sequence[float], labels: Sequence[float], video_ids: Sequence[str], reduce: str = "mean"
) -> pd.DataFrame:
    """Aggregate item probabilities per video.

    Returns one row per video (sorted by id) with columns ``video_id``, ``prob`` (the
    ``reduce`` of its items' probabilities: ``mean``, ``median`` or ``max``) and
    ``label``. A video whose items disagree on the label is an error: labels belong to videos.
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
    return {"auc": _auc(p, y), "acc": _acc(p, y), "ap": _ap(p, y), "eer": _eer(p, y), "logloss": _log_loss(p, y)}


def _nan_reasons(scores: dict[str, float], y: np.ndarray, unit: str, prefix: str = "") -> list[str]:
    """One phrase per cause of NaN among ``scores``: '<keys> (<why>)'."""
    nan = [k for k, v in scores.items() if isinstance(v, float) and math.isnan(v)]
    if not nan:
        return []
    if not y.size:
        return [f"{', '.join(prefix + k for k in nan)} (no {unit})"]
    threshold = [k for k in nan if k == "acc_at_threshold"]
    classes = [k for k in nan if k not in threshold]
    why = _class_counts(y, unit) if not _both_classes(y) else f"no fake among {y.size} {unit}"
    parts = [f"{', '.join(prefix + k for k in classes)} ({why})"] if classes else []
    return (parts + [f"{prefix}acc_at_threshold (the threshold is NaN)"]) if threshold else parts


def compute_metrics(
    probs: Sequence[float],
    labels: Sequence[float],
    video_ids: Sequence[str] | None = None,
    reduce: str = "mean",
    threshold: float | None = None,
    video_threshold: float | None = None,
) -> dict[str, float]:
    """Frame-level metrics, and video-level ones when ``video_ids`` are given.

    Keys: ``auc``, ``acc`` (at 0.5), ``ap``, ``eer``, ``logloss``, ``n`` (items),
    ``n_fake``; with ids also ``video_auc``, ``video_acc``, ``video_ap``, ``video_eer``,
    ``video_logloss`` and ``n_videos`` (videos scored by the ``reduce`` of their items:
    ``mean``, ``median`` or ``max``).

    ``threshold`` (a probability in [0, 1], e.g. :func:`eer_threshold` of the validation
    split) adds ``threshold`` and ``acc_at_threshold`` (fake when ``prob >= threshold``);
    with ids also ``video_threshold`` and ``video_acc_at_threshold``, at ``video_threshold``
    (default: ``threshold``; choose it on validation videos for the video-level operating
    point). A NaN threshold (of a one-class validation split) gives NaN accuracies.
    Metrics that are NaN because of degenerate input (empty, one class, no fake, NaN
    threshold) are named in one :class:`MetricWarning` per call.
    """
    p, y = _arrays(probs, labels)
    item = _scores(p, y)
    if threshold is not None:
        t = _check_threshold(threshold)
        item["acc_at_threshold"] = _acc(p, y, t)
    out: dict[str, float] = {**item, "n": int(y.size), "n_fake": int(y.sum())}
    if threshold is not None:
        out["threshold"] = t
    problems = _nan_reasons(item, y, "items")
    if video_ids is not None:
        videos = video_level(p, y, video_ids, reduce)
        vp, vy = videos["prob"].to_numpy(), videos["label"].to_numpy()
        video = _scores(vp, vy)
        if threshold is not None or video_threshold is not None:
            vt = _check_threshold(threshold if video_threshold is None else video_threshold)
            video["acc_at_threshold"] = _acc(vp, vy, vt)
        out.update({f"video_{k}": v for k, v in video.items()})
        out["n_videos"] = int(len(videos))
        if "video_acc_at_threshold" in out:
            out["video_threshold"] = vt
        problems += _nan_reasons(video, vy, "videos", "video_")
    if problems:
        _warn(f"NaN metrics: {'; '.join(problems)}")
    return out


def _draw_groups(n_groups: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The drawn group indices of each resample: ``n_groups`` draws with replacement."""
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield rng.integers(0, n_groups, n_groups)


def _percentile_interval(draws: np.ndarray, resamples: int, level: float) -> tuple[float, float]:
    """Percentile interval of the finite draws; (nan, nan) when fewer than half of the resamples are finite."""
    finite = draws[np.isfinite(draws)]
    if finite.size < resamples / 2:
        return NAN, NAN
    lo, hi = np.percentile(finite, [50 * (1 - level), 100 - 50 * (1 - level)])
    return float(lo), float(hi)


def _group_codes(groups: Sequence[Hashable], n: int | None = None) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(pd.Series(list(groups), dtype=object))
    if n is not None and codes.size != n:
        raise ValueError(f"{codes.size} groups for {n} probabilities")
    if (codes < 0).any():
        raise ValueError(
            f"groups holds {int((codes < 0).sum())} missing values (None/NaN): give every item a group "
            "(its identity, or its video id when the identity is unknown)"
        )
    return codes, len(uniques)


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
    statistic is NaN (e.g. one class only) are dropped, and the metrics'
    :class:`MetricWarning` are silenced while resampling; with fewer than half of them
    valid, or fewer than two groups, the interval is (nan, nan), with one
    :class:`MetricWarning`. A missing group (None/NaN) is a ``ValueError``.
    """
    codes, n_groups = _group_codes(groups)
    if n_groups < 2:  # one group: resampling it says nothing about other people
        _warn(f"bootstrap interval is NaN: {n_groups} group(s); resampling needs at least two")
        return NAN, NAN
    order = np.argsort(codes, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(codes, minlength=n_groups))[:-1])
    draws = np.empty(resamples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        for j, drawn in enumerate(_draw_groups(n_groups, resamples, seed)):
            draws[j] = statistic(np.concatenate([members[g] for g in drawn]))
    lo, hi = _percentile_interval(draws, resamples, level)
    if math.isnan(lo):
        _warn(
            f"bootstrap interval is NaN: the statistic is finite in only {int(np.isfinite(draws).sum())} "
            f"of {resamples} resamples (one class only?)"
        )
    return lo, hi


class _WeightedScores:
    """AUC, AP, EER and accuracies of fixed (probs, labels) under integer row weights.

    A bootstrap resample that repeats row ``i`` ``w[i]`` times has the same ROC and
    precision-recall curves as the rows weighted by ``w``; sorting once and taking
    weighted cumulative counts at each distinct score makes a resample O(n) with no
    re-sorting (scikit-learn's computation, tested to agree with it).
    """

    def __init__(self, p: np.ndarray, y: np.ndarray, thresholds: Sequence[float]) -> None:
        self.order = np.argsort(-p, kind="stable")
        ps = p[self.order]
        self.pos = y[self.order].astype(np.float64)
        self.neg = 1.0 - self.pos
        self.last = np.r_[np.flatnonzero(ps[1:] != ps[:-1]), ps.size - 1]  # last row of each distinct score
        self.correct = np.array([(ps >= t) == (self.pos == 1.0) for t in thresholds], dtype=np.float64)
        self.nan_thresholds = np.array([math.isnan(t) for t in thresholds], dtype=bool)

    def __call__(self, w: np.ndarray) -> tuple[float, float, float, np.ndarray]:
        """(auc, ap, eer, accuracies) for weights ``w`` of the rows in sorted order."""
        total = w.sum()
        accs = self.correct @ w / total if total > 0 else np.full(len(self.correct), NAN)
        accs[self.nan_thresholds] = NAN
        tp = np.cumsum(w * self.pos)[self.last]
        fp = np.cumsum(w * self.neg)[self.last]
        n_pos, n_neg = tp[-1], fp[-1]
        if n_pos <= 0:
            return NAN, NAN, NAN, accs
        called = tp + fp
        precision = np.divide(tp, called, out=np.ones_like(tp), where=called > 0)
        ap = float(np.sum(np.diff(tp, prepend=0.0) * precision) / n_pos)
        if n_neg <= 0:
            return NAN, ap, NAN, accs
        tpr, fpr = np.r_[0.0, tp / n_pos], np.r_[0.0, fp / n_neg]
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)
        return area, ap, _eer_on_curve(fpr, tpr), accs


def metric_intervals(
    probs: Sequence[float],
    labels: Sequence[float],
    groups: Sequence[Hashable] | None,
    video_ids: Sequence[str] | None = None,
    reduce: str = "mean",
    threshold: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
    *,
    video_threshold: float | None = None,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """95 % (``level``) bootstrap intervals of the metrics, resampling whole groups.

    ``groups[i]`` is item ``i``'s identity when known; ``None`` uses the video ids (then
    required), so that each video is one group. Each resample draws as many groups as
    there are, with replacement (the scheme of :func:`bootstrap_interval`, same ``seed``
    → same draws), and scores the items, and the videos, of the drawn groups together.
    Videos are aggregated once (:func:`video_level` with ``reduce``) and a video belongs
    to its items' group (a video whose items span groups is an ``FmkitError``).

    Keys, each a ``(lo, hi)`` pair: ``auc``, ``acc`` (at 0.5), ``ap``, ``eer``, with a
    ``threshold`` also ``acc_at_threshold``; with ids the same prefixed ``video_``
    (``video_acc_at_threshold`` at ``video_threshold``, default ``threshold``). Resamples
    where a metric is NaN (one class drawn) are dropped; an interval is ``(nan, nan)``
    when fewer than half of the resamples give a number or with fewer than two groups,
    reported by one :class:`MetricWarning` per call.
    """
    p, y = _arrays(probs, labels)
    if groups is None:
        if video_ids is None:
            raise ValueError("metric_intervals needs groups (identities) or video_ids to resample")
        groups = [str(v) for v in video_ids]
    codes, n_groups = _group_codes(groups, p.size)
    t = None if threshold is None else _check_threshold(threshold)
    levels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float | None]] = [("", p, y, codes, t)]
    if video_ids is not None:
        videos = video_level(p, y, video_ids, reduce)
        per_video = pd.DataFrame({"video_id": [str(v) for v in video_ids], "group": codes}).groupby("video_id")
        split = per_video["group"].nunique() > 1
        if split.any():
            raise FmkitError(
                f"video {split[split].index[0]!r} has items in more than one group; a video has one identity"
            )
        video_codes = per_video["group"].first().loc[videos["video_id"]].to_numpy()
        vt = t if video_threshold is None else _check_threshold(video_threshold)
        levels.append(("video_", videos["prob"].to_numpy(), videos["label"].to_numpy(), video_codes, vt))
    names: list[str] = []
    scorers = []
    for prefix, lp, ly, lc, lt in levels:
        thresholds = [THRESHOLD] if lt is None else [THRESHOLD, lt]
        scorer = _WeightedScores(lp, ly, thresholds)
        scorers.append((scorer, lc[scorer.order]))
        names += [f"{prefix}{k}" for k in ("auc", "ap", "eer", "acc")]
        names += [] if lt is None else [f"{prefix}acc_at_threshold"]
    draws = np.full((resamples, len(names)), NAN)
    if n_groups >= 2:
        for j, drawn in enumerate(_draw_groups(n_groups, resamples, seed)):
            counts = np.bincount(drawn, minlength=n_groups).astype(np.float64)
            row = []
            for scorer, sorted_codes in scorers:
                area, ap, equal_error, accs = scorer(counts[sorted_codes])
                row += [area, ap, equal_error, *accs]
            draws[j] = row
    out = {name: _percentile_interval(draws[:, k], resamples, level) for k, name in enumerate(names)}
    nan_keys = [k for k, (lo, _) in out.items() if math.isnan(lo)]
    if nan_keys:
        reason = (
            f"{n_groups} group(s); resampling needs at least two"
            if n_groups < 2
            else "fewer than half of the resamples give a number (one class, or no fake, in most of them)"
        )
        _warn(f"interval(s) of {', '.join(nan_keys)} NaN: {reason}")
    order = ["auc", "acc", "ap", "eer", "acc_at_threshold"]
    return {f"{prefix}{k}": out[f"{prefix}{k}"] for prefix, *_ in levels for k in order if f"{prefix}{k}" in out}


def auc_interval(
    probs: Sequence[float], labels: Sequence[float], groups: Sequence[Hashable], **kw: Any
) -> tuple[float, float, float]:
    """AUC and its bootstrap interval resampled by group: (auc, lo, hi)."""
    p, y = _arrays(probs, labels)
    value = _auc(p, y)
    if math.isnan(value):  # every resample is one-class too
        _warn(f"AUC and its interval are NaN: {_class_counts(y)}")
        return NAN, NAN, NAN
    return (value, *bootstrap_interval(lambda r: _auc(p[r], y[r]), groups, **kw))


def auc_difference_interval(
    probs_a: Sequence[float], probs_b: Sequence[float], labels: Sequence[float], groups: Sequence[Hashable], **kw: Any
) -> tuple[float, float, float]:
    """AUC(a) − AUC(b) of two detectors scored on the same items, with a paired bootstrap interval by group."""
    a, y = _arrays(probs_a, labels)
    b, _ = _arrays(probs_b, labels)
    diff = lambda r: _auc(a[r], y[r]) - _auc(b[r], y[r])
    value = diff(np.arange(y.size))
    if math.isnan(value):  # every resample is one-class too
        _warn(f"AUC difference and its interval are NaN: {_class_counts(y)}")
        return NAN, NAN, NAN
    return (value, *bootstrap_interval(diff, groups, **kw))


def pooled_bootstrap(
    statistics: Sequence[Callable[[np.ndarray], float]],
    groups: Sequence[Sequence[Hashable]],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """A statistic measured fold by fold in k-fold cross-validation, pooled over folds, with a 95 %
    (``level``) bootstrap interval that resamples persons across all folds: (value, lo, hi).

    Fold ``f`` tested the persons ``groups[f]`` (``groups[f][i]``: the person of the fold's row
    ``i``); ``statistics[f](rows)`` is the fold's statistic (an AUC, a paired AUC difference, a
    mean over faces, …) on those of its rows, an index array into the fold's own rows, repeats
    included. A person is tested in exactly one fold (a person in two folds is a ``ValueError``),
    so each person's rows come from the fit that never saw them.

    Definition (the statistic is computed per fold and averaged, never on the pooled rows of
    several folds, whose fits score on different scales):

    * value: Σ_f n_f · m_f / Σ_f n_f, with m_f = ``statistics[f]`` (all rows of fold f) and n_f
      the fold's persons: with folds of equal size, the mean over folds;
    * a resample draws as many persons as all folds hold together, with replacement, from all of
      them; fold f gets the rows of its drawn persons (a person drawn twice, twice) and n_f = the
      number of draws that landed in it; the resample's value is the same weighted mean over the
      folds with n_f > 0. A fold whose statistic is NaN in a resample (e.g. one class drawn) drops
      out of that resample's mean (and a fold with a NaN value out of the value, with one
      :class:`MetricWarning`);
    * the interval: the percentiles of the resamples' values (NaN with fewer than half of them
      finite, or fewer than two persons).

    Paired comparisons: give statistics that compute both methods on the same rows (e.g. the AUC
    difference of two detectors on the same videos); the draws are then shared by the two.
    Same ``seed`` → same draws (the scheme of :func:`bootstrap_interval` over all persons);
    ``resamples`` 0 gives the value alone (lo, hi NaN).
    """
    if len(statistics) != len(groups):
        raise ValueError(f"{len(statistics)} statistics for {len(groups)} folds")
    owner: dict[Hashable, int] = {}
    members: list[np.ndarray] = []  # rows of each person, in its fold
    person_fold: list[int] = []
    for f, fold_groups in enumerate(groups):
        codes, n_here = _group_codes(fold_groups)
        uniques = pd.unique(pd.Series(list(fold_groups), dtype=object))
        order = np.argsort(codes, kind="stable")
        rows = np.split(order, np.cumsum(np.bincount(codes, minlength=n_here))[:-1]) if n_here else []
        for person, person_rows in zip(uniques, rows):
            if person in owner:
                raise ValueError(
                    f"person {person!r} is tested in folds {owner[person]} and {f}: "
                    "in k-fold cross-validation every person is tested once"
                )
            owner[person] = f
            members.append(person_rows)
            person_fold.append(f)
    fold_of = np.asarray(person_fold, dtype=np.int64)
    n_persons = len(members)
    n_folds = len(statistics)

    def pooled(counts: np.ndarray) -> tuple[float, list[int]]:
        total = weight = 0.0
        nan_folds = []
        for f in range(n_folds):
            here = np.flatnonzero((fold_of == f) & (counts > 0))
            if not here.size:
                continue
            rows = np.concatenate([np.tile(members[p], int(counts[p])) for p in here])
            m = float(statistics[f](rows))
            if not math.isfinite(m):
                nan_folds.append(f)
                continue
            w = float(counts[here].sum())
            total += w * m
            weight += w
        return (total / weight if weight > 0 else NAN), nan_folds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        value, nan_folds = pooled(np.ones(n_persons, dtype=np.int64))
    if nan_folds:
        _warn(f"pooled statistic: NaN in fold(s) {', '.join(map(str, nan_folds))}, left out of the mean over folds")
    if resamples <= 0:  # the value alone
        return value, NAN, NAN
    if n_persons < 2:
        _warn(f"pooled bootstrap interval is NaN: {n_persons} person(s); resampling needs at least two")
        return value, NAN, NAN
    draws = np.empty(resamples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        for j, drawn in enumerate(_draw_groups(n_persons, resamples, seed)):
            draws[j] = pooled(np.bincount(drawn, minlength=n_persons))[0]
    lo, hi = _percentile_interval(draws, resamples, level)
    if math.isnan(lo):
        _warn(
            f"pooled bootstrap interval is NaN: the statistic is finite in only {int(np.isfinite(draws).sum())} "
            f"of {resamples} resamples"
        )
    return value, lo, hi


def _rank_auc(p: np.ndarray, y: np.ndarray) -> float:
    """AUC by the Mann-Whitney rank sum (ties count one half): equal to scikit-learn's, much faster on
    the small arrays of a bootstrap resample; NaN when one class only."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    from scipy.stats import rankdata

    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _by_fold(folds: Sequence[Hashable], *arrays: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Rows of ``arrays`` split by fold, folds in order of first appearance."""
    fold_codes, n_folds = _group_codes(folds, arrays[0].size)
    return [tuple(a[fold_codes == f] for a in arrays) for f in range(n_folds)]


def pooled_auc(
    probs: Sequence[float],
    labels: Sequence[float],
    groups: Sequence[Hashable],
    folds: Sequence[Hashable],
    **kw: Any,
) -> tuple[float, float, float]:
    """AUC per fold averaged over folds, with the interval of :func:`pooled_bootstrap` resampling persons.

    Row ``i`` (a video, say) was scored by the fit of fold ``folds[i]`` and belongs to person
    ``groups[i]``. ``kw``: ``resamples``, ``level``, ``seed``.
    """
    p, y = _arrays(probs, labels)
    g = np.asarray(list(groups), dtype=object)
    if g.size != p.size:
        raise ValueError(f"{g.size} groups for {p.size} probabilities")
    parts = _by_fold(folds, p, y, g)
    stats = [lambda r, fp=fp, fy=fy: _rank_auc(fp[r], fy[r]) for fp, fy, _ in parts]
    return pooled_bootstrap(stats, [list(fg) for *_, fg in parts], **kw)


def pooled_auc_difference(
    probs_a: Sequence[float],
    probs_b: Sequence[float],
    labels: Sequence[float],
    groups: Sequence[Hashable],
    folds: Sequence[Hashable],
    **kw: Any,
) -> tuple[float, float, float]:
    """AUC(a) − AUC(b) of two detectors on the same rows, per fold and averaged over folds, with the
    paired interval of :func:`pooled_bootstrap` (both scored on the same resampled persons)."""
    a, y = _arrays(probs_a, labels)
    b, _ = _arrays(probs_b, labels)
    g = np.asarray(list(groups), dtype=object)
    if g.size != a.size:
        raise ValueError(f"{g.size} groups for {a.size} probabilities")
    parts = _by_fold(folds, a, b, y, g)
    stats = [
        lambda r, fa=fa, fb=fb, fy=fy: _rank_auc(fa[r], fy[r]) - _rank_auc(fb[r], fy[r]) for fa, fb, fy, _ in parts
    ]
    return pooled_bootstrap(stats, [list(fg) for *_, fg in parts], **kw)


def pooled_mean(
    values: Sequence[float], groups: Sequence[Hashable], folds: Sequence[Hashable], **kw: Any
) -> tuple[float, float, float]:
    """The mean of the finite ``values`` per fold (e.g. per-face differences of two explanation methods),
    averaged over folds, with the interval of :func:`pooled_bootstrap`; rows with a NaN value are left out."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    g = np.asarray(list(groups), dtype=object)
    if g.size != v.size:
        raise ValueError(f"{g.size} groups for {v.size} values")
    ok = np.isfinite(v)
    f = np.asarray(list(folds), dtype=object)[ok]
    if not ok.any():
        _warn("pooled mean is NaN: no finite value")
        return NAN, NAN, NAN
    parts = _by_fold(list(f), v[ok], g[ok])
    stats = [lambda r, fv=fv: float(fv[r].mean()) if r.size else NAN for fv, _ in parts]
    return pooled_bootstrap(stats, [list(fg) for _, fg in parts], **kw)


def verdict(lo: float, hi: float, target: float, larger: bool = True) -> str:
    """MET when the whole interval [lo, hi] clears ``target`` (>= it if ``larger``, else <= it),
    MISSED when the whole interval misses it, UNDECIDED otherwise (or when the interval is NaN)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "UNDECIDED"
    if larger:
        return "MET" if lo >= target else "MISSED" if hi < target else "UNDECIDED"
    return "MET" if hi <= target else "MISSED" if lo > target else "UNDECIDED"
