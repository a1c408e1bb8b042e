"""fmkit.metrics against hand-computed tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

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
    out = metrics.compute_metrics([0.2, 0.7, 0.9], [1, 1, 1], ["a", "a", "b"])
    assert math.isnan(out["auc"]) and math.isnan(out["eer"])
    assert math.isnan(out["video_auc"]) and math.isnan(out["video_eer"])
    assert out["acc"] == pytest.approx(2 / 3)
    assert out["ap"] == 1.0
    reals = metrics.compute_metrics([0.2, 0.7], [0, 0])
    assert math.isnan(reals["ap"]) and math.isnan(reals["auc"])
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
