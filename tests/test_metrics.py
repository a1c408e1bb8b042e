"""fmkit.metrics against hand-computed tiny cases and scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fmkit import metrics
from fmkit.errors import FmkitError

# Two reals (0.1, 0.6) and two fakes (0.4, 0.9): of the 4 real/fake pairs, 3 rank the
# fake higher → AUC 3/4; at 0.5, 0.1 and 0.9 are right, 0.6 and 0.4 wrong → ACC 1/2.
P = [0.1, 0.6, 0.4, 0.9]
Y = [0, 0, 1, 1]


def test_frame_level_hand_computed() -> None:
    assert metrics.auc(P, Y) == pytest.approx(0.75)
    assert metrics.accuracy(P, Y) == pytest.approx(0.5)
    # ranked 0.9 (fake), 0.6 (real), 0.4 (fake): precision 1 at recall 1/2, 2/3 at recall 1
    assert metrics.average_precision(P, Y) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # threshold 0.6 calls one real of two fake (FPR 1/2) and misses one fake of two (FNR 1/2)
    assert metrics.eer(P, Y) == pytest.approx(0.5)
    expected = -np.mean([math.log(0.9), math.log(0.4), math.log(0.4), math.log(0.9)])
    assert metrics.log_loss(P, Y) == pytest.approx(expected)


def test_threshold_is_inclusive_at_one_half() -> None:
    assert metrics.accuracy([0.5, 0.49], [1, 0]) == 1.0


def test_eer_interpolates_between_roc_points() -> None:
    # reals 0.1, 0.5, 0.6; fakes 0.4, 0.9. The ROC goes from (FPR 0, FNR 1/2) to
    # (FPR 2/3, FNR 1/2) then to (2/3, 0): FPR = FNR = 1/2 on the first segment.
    assert metrics.eer([0.1, 0.6, 0.4, 0.9, 0.5], [0, 0, 1, 1, 0]) == pytest.approx(0.5)
    assert metrics.eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0
    assert metrics.eer([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 1.0


def test_one_class_gives_nan_without_crashing() -> None:
    with pytest.warns(metrics.MetricWarning, match="auc, eer .*one class only .3 fake, 0 real items"):
        out = metrics.compute_metrics([0.2, 0.7, 0.9], [1, 1, 1], ["a", "a", "b"])
    assert math.isnan(out["auc"]) and math.isnan(out["eer"])
    assert math.isnan(out["video_auc"]) and math.isnan(out["video_eer"])
    assert out["acc"] == pytest.approx(2 / 3)
    assert out["ap"] == 1.0
    with pytest.warns(metrics.MetricWarning, match="auc, ap, eer"):
        reals = metrics.compute_metrics([0.2, 0.7], [0, 0])
    assert math.isnan(reals["ap"]) and math.isnan(reals["auc"])
    with pytest.warns(metrics.MetricWarning, match="no items"):
        empty = metrics.compute_metrics([], [])
    assert empty["n"] == 0 and math.isnan(empty["acc"])


def test_video_level_mean_aggregation() -> None:
    videos = metrics.video_level(P, Y, ["a", "a", "b", "c"])
    assert videos["video_id"].tolist() == ["a", "b", "c"]
    assert videos["prob"].tolist() == pytest.approx([0.35, 0.4, 0.9])
    assert videos["label"].tolist() == [0, 1, 1]
    assert metrics.video_level(P, Y, ["a", "a", "b", "c"], reduce="max")["prob"].tolist() == pytest.approx(
        [0.6, 0.4, 0.9]
    )


def test_compute_metrics_keys_and_video_values() -> None:
    out = metrics.compute_metrics(P, Y, ["a", "a", "b", "c"])
    assert {"auc", "acc", "ap", "eer", "logloss", "n", "n_fake", "video_auc", "video_acc", "n_videos"} <= out.keys()
    assert out["auc"] == pytest.approx(0.75)
    # videos: a 0.35 (real), b 0.4 (fake), c 0.9 (fake): both fakes above the real
    assert out["video_auc"] == 1.0
    assert out["video_acc"] == pytest.approx(2 / 3)  # b (0.4) is called real
    assert out["n"] == 4 and out["n_fake"] == 2 and out["n_videos"] == 3
    assert "video_auc" not in metrics.compute_metrics(P, Y)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(FmkitError, match="both labels"):
        metrics.video_level([0.1, 0.9], [0, 1], ["a", "a"])
    with pytest.raises(FmkitError, match="reduction"):
        metrics.video_level(P, Y, list("aabc"), reduce="mode")
    with pytest.raises(ValueError, match="probabilities"):
        metrics.compute_metrics([0.1, 1.5], [0, 1])
    with pytest.raises(ValueError, match="labels"):
        metrics.auc([0.1, 0.2, 0.3], [0, 1])


def test_bootstrap_resamples_whole_groups():
    # two groups of 3 rows each: every resample holds 0, 3 or 6 rows of each, never a split group
    sizes = []
    metrics.bootstrap_interval(lambda rows: sizes.append(len(rows)) or 0.0, ["a"] * 3 + ["b"] * 3, resamples=50)
    assert set(sizes) == {6}
    lo, hi = metrics.bootstrap_interval(lambda rows: float(np.mean(rows >= 3)), ["a"] * 3 + ["b"] * 3, resamples=400)
    assert lo == 0.0 and hi == 1.0, "all of a, all of b, or one of each"


def test_auc_interval_covers_the_auc_and_is_nan_for_one_class():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    p = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, y.size), 0, 1)
    groups = np.arange(y.size) // 2
    value, lo, hi = metrics.auc_interval(p, y, groups, resamples=500)
    assert value == pytest.approx(roc_auc_score(y, p)) and lo < value < hi and hi - lo < 0.3
    with pytest.warns(metrics.MetricWarning, match="one class only"):
        assert all(np.isnan(v) for v in metrics.auc_interval(p[:40], y[:40], groups[:40], resamples=50))


def test_paired_difference_of_identical_detectors_is_exactly_zero():
    y = np.repeat([0, 1], 10)
    p = np.linspace(0.1, 0.9, 20)
    assert metrics.auc_difference_interval(p, p, y, np.arange(20), resamples=100) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "lo, hi, target, larger, expected",
    [
        (0.91, 0.97, 0.9, True, "MET"),
        (0.85, 0.95, 0.9, True, "UNDECIDED"),
        (0.7, 0.85, 0.9, True, "MISSED"),
        (-0.01, 0.04, -0.02, True, "MET"),
        (0.1, 0.2, 0.3, False, "MET"),
        (float("nan"), 1.0, 0.5, True, "UNDECIDED"),
    ],
    ids=["met", "undecided", "missed", "no-worse-than", "at-most", "nan"],
)
def test_verdict_needs_the_whole_interval(lo, hi, target, larger, expected):
    assert metrics.verdict(lo, hi, target, larger) == expected


# --- against scikit-learn on random data (rounded scores: many ties) ---------------------


def random_scores(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    p = np.round(np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1), 1)
    return p, y


@pytest.mark.parametrize("seed", range(5))
def test_auc_ap_and_roc_match_scikit_learn(seed: int) -> None:
    p, y = random_scores(seed)
    assert metrics.auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert metrics.average_precision(p, y) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    curve = metrics.roc(p, y)
    fpr, tpr, thresholds = roc_curve(y, p)
    assert list(curve.columns) == ["fpr", "tpr", "threshold"]
    np.testing.assert_array_equal(curve["fpr"], fpr)
    np.testing.assert_array_equal(curve["tpr"], tpr)
    np.testing.assert_array_equal(curve["threshold"], thresholds)
    assert curve["threshold"].iloc[0] == np.inf and (curve.iloc[0]["fpr"], curve.iloc[-1]["tpr"]) == (0.0, 1.0)


def rates(p: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float]:
    """(FPR, FNR) calling fake when prob >= t, counted by hand."""
    return float(np.mean(p[y == 0] >= t)), float(np.mean(p[y == 1] < t))


@pytest.mark.parametrize("seed", range(5))
def test_eer_threshold_is_the_operating_point_nearest_the_eer(seed: int) -> None:
    p, y = random_scores(seed)
    t = metrics.eer_threshold(p, y)
    assert t in set(p), "a vertex of the ROC: one of the scores, never inf"
    # brute force over every achievable operating point: the smallest |FNR − FPR|, ties to the lower threshold
    gaps = {c: abs(np.subtract(*rates(p, y, c))) for c in np.unique(p)}
    best = min(gaps.values())
    assert t == min(c for c, g in gaps.items() if g <= best + 1e-12)
    # the interpolated EER lies between that vertex's two error rates
    fpr, fnr = rates(p, y, t)
    assert min(fpr, fnr) - 1e-12 <= metrics.eer(p, y) <= max(fpr, fnr) + 1e-12
    assert metrics.compute_metrics(p, y, threshold=t)["acc_at_threshold"] == pytest.approx(np.mean((p >= t) == y))


def test_eer_threshold_hand_computed() -> None:
    # P: threshold 0.6 gives FPR 1/2 (0.6) and FNR 1/2 (0.4): the EER vertex itself
    assert metrics.eer_threshold(P, Y) == 0.6
    # separable: at 0.35 both fakes (0.35, 0.8) are called and no real (0.1, 0.3): ACC 1 where 0.5 gives 3/4
    sep_p = [0.1, 0.3, 0.35, 0.8]
    assert metrics.eer_threshold(sep_p, Y) == 0.35
    out = metrics.compute_metrics(sep_p, Y, threshold=0.35)
    assert out["acc"] == 0.75 and out["acc_at_threshold"] == 1.0 and out["threshold"] == 0.35
    # reals 0.1, 0.5, 0.6; fakes 0.4, 0.9: at 0.6 (FPR 1/3, FNR 1/2) and at 0.5 (FPR 2/3, FNR 1/2) |FNR − FPR| = 1/6
    # on both sides of the EER (1/2): the tie goes to the lower threshold
    assert metrics.eer_threshold([0.1, 0.6, 0.4, 0.9, 0.5], [0, 0, 1, 1, 0]) == 0.5
    # all scores equal: the only finite vertex (everything fake), not inf
    assert metrics.eer_threshold([0.3] * 4, Y) == 0.3
    # inverted: at 0.8 both reals are called fake and both fakes missed, FPR = FNR = 1 (the EER)
    assert metrics.eer_threshold([0.9, 0.8, 0.2, 0.1], Y) == 0.8


# --- video aggregation ------------------------------------------------------------------

# video a (real): 0.1, 0.2, 0.6 → mean 0.3, median 0.2, max 0.6; b (fake): 0.4; c (fake): 0.5, 0.9 → 0.7, 0.7, 0.9
VP = [0.1, 0.2, 0.6, 0.4, 0.5, 0.9]
VY = [0, 0, 0, 1, 1, 1]
VIDS = ["a", "a", "a", "b", "c", "c"]


@pytest.mark.parametrize(
    "reduce, probs, video_auc, video_acc",
    [
        ("mean", [0.3, 0.4, 0.7], 1.0, 2 / 3),  # b (0.4) called real
        ("median", [0.2, 0.4, 0.7], 1.0, 2 / 3),
        ("max", [0.6, 0.4, 0.9], 0.5, 1 / 3),  # a (0.6) ranks above b (0.4) and is called fake; b called real
    ],
)
def test_video_reductions_hand_computed(reduce: str, probs: list[float], video_auc: float, video_acc: float) -> None:
    videos = metrics.video_level(VP, VY, VIDS, reduce=reduce)
    assert videos["video_id"].tolist() == ["a", "b", "c"] and videos["label"].tolist() == [0, 1, 1]
    assert videos["prob"].tolist() == pytest.approx(probs)
    out = metrics.compute_metrics(VP, VY, VIDS, reduce=reduce)
    assert out["video_auc"] == pytest.approx(video_auc) and out["video_acc"] == pytest.approx(video_acc)
    # threshold 0.35: b (0.4) is now called fake; a is real for mean and median, fake for max
    out = metrics.compute_metrics(VP, VY, VIDS, reduce=reduce, threshold=0.35)
    assert out["video_acc_at_threshold"] == pytest.approx(2 / 3 if reduce == "max" else 1.0)


# --- compute_metrics with a threshold ---------------------------------------------------

BASE_KEYS = {"auc", "acc", "ap", "eer", "logloss", "n", "n_fake"}
VIDEO_KEYS = {"video_auc", "video_acc", "video_ap", "video_eer", "video_logloss", "n_videos"}


def test_compute_metrics_threshold_only_adds_keys() -> None:
    plain = metrics.compute_metrics(VP, VY, VIDS)
    assert plain.keys() == BASE_KEYS | VIDEO_KEYS
    assert metrics.compute_metrics(VP, VY).keys() == BASE_KEYS
    out = metrics.compute_metrics(VP, VY, VIDS, threshold=0.55)
    assert out.keys() == plain.keys() | {"threshold", "acc_at_threshold", "video_threshold", "video_acc_at_threshold"}
    assert {k: out[k] for k in plain} == plain
    # items at 0.55: 0.6 (real) called fake, 0.4 and 0.5 (fakes) called real → 3/6; videos (mean) 0.3, 0.4, 0.7 → 2/3
    assert out["acc_at_threshold"] == 0.5 and out["video_acc_at_threshold"] == pytest.approx(2 / 3)
    assert out["threshold"] == out["video_threshold"] == 0.55
    own = metrics.compute_metrics(VP, VY, VIDS, threshold=0.55, video_threshold=0.35)
    assert own["acc_at_threshold"] == 0.5 and own["video_threshold"] == 0.35 and own["video_acc_at_threshold"] == 1.0
    assert metrics.compute_metrics(VP, VY, threshold=0.55).keys() == BASE_KEYS | {"threshold", "acc_at_threshold"}


def test_threshold_must_be_a_probability_and_nan_gives_nan() -> None:
    with pytest.raises(ValueError, match="threshold 50 is not a probability"):
        metrics.compute_metrics(VP, VY, threshold=50)
    with pytest.raises(ValueError, match="threshold"):
        metrics.accuracy(VP, VY, threshold=-0.1)
    with pytest.warns(metrics.MetricWarning, match="acc_at_threshold .the threshold is NaN"):
        out = metrics.compute_metrics(VP, VY, VIDS, threshold=float("nan"))
    assert math.isnan(out["acc_at_threshold"]) and math.isnan(out["video_acc_at_threshold"])
    assert out["acc"] == pytest.approx(4 / 6), "the other metrics are unaffected"
    with pytest.warns(metrics.MetricWarning, match="threshold is NaN"):
        assert math.isnan(metrics.accuracy(VP, VY, threshold=float("nan")))


# --- intervals ---------------------------------------------------------------------------


def video_data(n_videos: int, seed: int = 0, frames: int = 4) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Frames of ``n_videos`` videos, two videos per identity, sorted by video id (so groups appear in id order)."""
    rng = np.random.default_rng(seed)
    vy = np.arange(n_videos) % 2
    shift = rng.normal(0, 0.15, n_videos)  # a video's frames share its offset: frames are not independent
    y = np.repeat(vy, frames)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + np.repeat(shift, frames) + rng.normal(0, 0.1, y.size), 0, 1)
    vids = [f"v{i:04d}" for i in np.repeat(np.arange(n_videos), frames)]
    ident = [f"id{i // 2:04d}" for i in np.repeat(np.arange(n_videos), frames)]
    return p, y, vids, ident


def test_metric_intervals_keys_cover_the_point_estimates_and_use_bootstrap_interval_draws() -> None:
    p, y, vids, ident = video_data(120)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normal use: no warning
        out = metrics.metric_intervals(p, y, ident, vids, threshold=0.45, resamples=300, seed=3)
        point = metrics.compute_metrics(p, y, vids, threshold=0.45)
    levels = ["auc", "acc", "ap", "eer", "acc_at_threshold"]
    assert list(out) == levels + [f"video_{k}" for k in levels]
    for key, (lo, hi) in out.items():
        assert lo <= point[key] <= hi and lo < hi, key
    # same seed → the same group draws as bootstrap_interval, whose statistic recomputes with scikit-learn
    stats = {
        "auc": metrics.auc,
        "acc": metrics.accuracy,
        "ap": metrics.average_precision,
        "eer": metrics.eer,
        "acc_at_threshold": lambda pp, yy: metrics.accuracy(pp, yy, 0.45),
    }
    videos = metrics.video_level(p, y, vids)
    vp, vy, vgroups = (
        videos["prob"].to_numpy(),
        videos["label"].to_numpy(),
        [f"id{int(v[1:]) // 2:04d}" for v in videos["video_id"]],
    )
    for key, f in stats.items():
        expected = metrics.bootstrap_interval(lambda r, f=f: f(p[r], y[r]), ident, resamples=300, seed=3)
        assert out[key] == pytest.approx(expected, abs=1e-12), key
        expected = metrics.bootstrap_interval(lambda r, f=f: f(vp[r], vy[r]), vgroups, resamples=300, seed=3)
        assert out[f"video_{key}"] == pytest.approx(expected, abs=1e-12), key


@pytest.mark.parametrize("seed", range(3))
def test_interval_draws_match_scikit_learn_with_ties(seed: int) -> None:
    p, y = random_scores(seed, n=60)
    groups = np.arange(60) // 3
    out = metrics.metric_intervals(p, y, groups, resamples=100, seed=seed)
    for key, f in {"auc": roc_auc_score, "ap": average_precision_score}.items():
        expected = metrics.bootstrap_interval(lambda r, f=f: f(y[r], p[r]), groups, resamples=100, seed=seed)
        assert out[key] == pytest.approx(expected, abs=1e-12), key


def test_interval_shrinks_with_more_groups() -> None:
    widths = []
    for n in (40, 400):
        p, y, vids, ident = video_data(n, seed=1)
        out = metrics.metric_intervals(p, y, ident, vids, resamples=300)
        widths.append({k: hi - lo for k, (lo, hi) in out.items()})
    for key in widths[0]:
        assert widths[1][key] < 0.6 * widths[0][key], key  # ~ 1/sqrt(10) expected


def test_intervals_resample_whole_groups() -> None:
    # group a: 50 items all right; group b: 50 items all wrong (both classes in each). Resampling items would
    # give ACC near 1/2; resampling groups gives 1 (a, a), 1/2 (a, b) or 0 (b, b) only.
    p = np.r_[[0.1] * 25, [0.9] * 25, [0.9] * 25, [0.1] * 25]
    y = np.r_[[0] * 25, [1] * 25, [0] * 25, [1] * 25]
    groups = ["a"] * 50 + ["b"] * 50
    out = metrics.metric_intervals(p, y, groups, resamples=400)
    assert out["acc"] == (0.0, 1.0) and out["auc"] == (0.0, 1.0)
    # videos of 5 frames each within the groups: video level moves with the groups too
    vids = [f"{g}{i // 5:02d}" for i, g in enumerate(groups)]
    out = metrics.metric_intervals(p, y, groups, vids, resamples=400)
    assert out["video_acc"] == (0.0, 1.0)
    # without identities each video is its own group: 20 groups, ACC no longer only 0, 1/2 or 1
    lo, hi = metrics.metric_intervals(p, y, None, vids, resamples=400)["video_acc"]
    assert 0.0 < lo < 0.5 < hi < 1.0


def test_metric_intervals_is_fast_enough() -> None:
    # 400 videos of 8 frames, 1000 resamples: video aggregation once, then O(n) weighted counts per resample
    import time

    p, y, vids, ident = video_data(400, frames=8)
    start = time.perf_counter()
    metrics.metric_intervals(p, y, ident, vids, threshold=0.5, resamples=1000)
    assert time.perf_counter() - start < 20  # ~0.2 s on one core; generous for a loaded machine


def test_metric_intervals_refuses_inconsistent_groups() -> None:
    with pytest.raises(FmkitError, match="video 'a' has items in more than one group"):
        metrics.metric_intervals(VP, VY, [1, 2, 2, 3, 4, 4], VIDS)
    with pytest.raises(ValueError, match="missing values"):
        metrics.metric_intervals(VP, VY, ["x", None, "y", "z", "w", "w"])
    with pytest.raises(ValueError, match="5 groups for 6"):
        metrics.metric_intervals(VP, VY, list("abcde"))
    with pytest.raises(ValueError, match="groups .identities. or video_ids"):
        metrics.metric_intervals(VP, VY, None)
    with pytest.raises(ValueError, match="missing values"):
        metrics.bootstrap_interval(lambda r: 0.0, ["x", float("nan"), "y"])


# --- degenerate input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda p, y: metrics.auc(p, y),
        lambda p, y: metrics.eer(p, y),
        lambda p, y: metrics.eer_threshold(p, y),
        lambda p, y: metrics.roc(p, y),
        lambda p, y: metrics.accuracy(p, y),
        lambda p, y: metrics.compute_metrics(p, y, ["a", "b", "c"], threshold=0.5),
        lambda p, y: metrics.metric_intervals(p, y, ["a", "b", "c"]),
    ],
    ids=["auc", "eer", "eer_threshold", "roc", "accuracy", "compute_metrics", "metric_intervals"],
)
def test_nan_probabilities_are_refused(call) -> None:
    with pytest.raises(ValueError, match=r"probs holds 1 NaN of 3 probabilities \(first at index 1\)"):
        call([0.2, float("nan"), 0.7], [0, 1, 1])


@pytest.mark.parametrize(
    "fn, name",
    [(metrics.auc, "AUC"), (metrics.eer, "EER"), (metrics.eer_threshold, "EER threshold")],
)
def test_one_class_or_empty_is_nan_with_a_warning(fn, name) -> None:
    for probs, labels, why in [
        ([0.2, 0.7], [1, 1], "one class only"),
        ([0.2, 0.7], [0, 0], "one class"),
        ([], [], "no"),
    ]:
        with pytest.warns(metrics.MetricWarning, match=f"{name} is NaN: {why}"):
            assert math.isnan(fn(probs, labels))


def test_degenerate_roc_ap_and_accuracy() -> None:
    with pytest.warns(metrics.MetricWarning, match="ROC curve is empty: one class"):
        curve = metrics.roc([0.2, 0.7], [0, 0])
    assert curve.empty and list(curve.columns) == ["fpr", "tpr", "threshold"]
    with pytest.warns(metrics.MetricWarning, match="no fake among 2 items"):
        assert math.isnan(metrics.average_precision([0.2, 0.7], [0, 0]))
    with pytest.warns(metrics.MetricWarning, match="no items"):
        assert math.isnan(metrics.accuracy([], []))
    with pytest.warns(metrics.MetricWarning, match="no items"):
        assert math.isnan(metrics.log_loss([], []))
    assert issubclass(metrics.MetricWarning, RuntimeWarning)


def test_compute_metrics_warns_once_per_call_and_not_in_normal_use() -> None:
    with pytest.warns(metrics.MetricWarning) as record:
        metrics.compute_metrics([0.2, 0.7, 0.9], [1, 1, 1], ["a", "a", "b"], threshold=float("nan"))
    assert len(record) == 1
    assert "video_auc, video_eer (one class only (2 fake, 0 real videos))" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.compute_metrics(VP, VY, VIDS, threshold=0.4)


def test_bootstrap_interval_silences_one_class_resamples_and_warns_once_when_nan() -> None:
    # 4 groups of one item, 2 real and 2 fake: 1 resample in 8 holds one class only; its AUC
    # (NaN) is dropped without the public auc's warning escaping
    p, y = np.array([0.1, 0.6, 0.4, 0.9]), np.array([0, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = metrics.bootstrap_interval(lambda r: metrics.auc(p[r], y[r]), list("abcd"), resamples=200)
    assert 0.0 <= lo < hi <= 1.0
    with pytest.warns(metrics.MetricWarning, match="1 group"):
        assert math.isnan(metrics.bootstrap_interval(lambda r: 0.0, ["a"] * 3)[0])
    with pytest.warns(metrics.MetricWarning, match="finite in only 0 of 20 resamples"):
        assert math.isnan(metrics.bootstrap_interval(lambda r: float("nan"), list("ab"), resamples=20)[1])


def test_metric_intervals_degenerate_input_is_nan_with_one_warning() -> None:
    with pytest.warns(metrics.MetricWarning, match="auc, ap, eer, video_auc, video_ap, video_eer NaN") as record:
        out = metrics.metric_intervals([0.2, 0.7, 0.9, 0.4], [0, 0, 0, 0], list("abcd"), list("abcd"), resamples=50)
    assert len(record) == 1
    assert math.isnan(out["auc"][0]) and math.isnan(out["video_eer"][1])
    assert 0.0 <= out["acc"][0] <= out["acc"][1] <= 1.0, "accuracy needs no second class"
    with pytest.warns(metrics.MetricWarning, match="1 group"):
        out = metrics.metric_intervals(P, Y, ["x"] * 4, resamples=50)
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in out.values())
    with pytest.warns(metrics.MetricWarning, match="0 group"):
        out = metrics.metric_intervals([], [], [], [], resamples=50)
    assert all(math.isnan(lo) for lo, _ in out.values()) and "video_auc" in out
