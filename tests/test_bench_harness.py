"""The benchmarks' timing and FLOP harness (benchmarks/common.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import (
    CLAIM_COLUMNS,
    alternating_rounds,
    claim_row,
    count_flops,
    median_seconds,
    ratio_interval,
)


def test_alternating_rounds_rows_and_order() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = alternating_rounds(fns, rounds=4, warmup=2)
    assert list(times.columns) == ["round", "name", "seconds"]
    assert len(times) == 4 * 3
    assert times.groupby("round")["name"].apply(sorted).tolist() == [["a", "b", "c"]] * 4
    assert (times["seconds"] >= 0).all()
    # warm-up calls are untimed but made, and the order reverses every round throughout
    assert len(calls) == (2 + 4) * 3
    rounds = [calls[i : i + 3] for i in range(0, len(calls), 3)]
    assert rounds == [["a", "b", "c"] if r % 2 == 0 else ["c", "b", "a"] for r in range(-2, 4)]
    assert times["name"].tolist() == [n for r in rounds[2:] for n in r]  # rows in call order


def test_alternating_rounds_errors_and_warmup_rows() -> None:
    def broken() -> None:
        raise RuntimeError("no")

    fns = {"ok": lambda: None, "broken": broken}
    with pytest.raises(RuntimeError):
        alternating_rounds(fns, rounds=2)
    errors: dict[str, str] = {}
    times = alternating_rounds(fns, rounds=2, errors=errors, keep_warmup=True)
    assert errors == {"broken": "RuntimeError: no"}
    assert set(times["name"]) == {"ok"}
    assert times["round"].tolist() == [-1, 0, 1]


def test_ratio_interval_of_a_twice_slower_fn() -> None:
    fns = {"slow": lambda: time.sleep(0.01), "fast": lambda: time.sleep(0.005)}
    times = alternating_rounds(fns, rounds=12)
    value, lo, hi = ratio_interval(times, "slow", "fast", resamples=500)
    assert value == pytest.approx(2.0, rel=0.25)
    assert lo <= value <= hi
    assert median_seconds(times)["slow"] > median_seconds(times)["fast"]


def test_ratio_interval_is_a_ratio_of_medians_resampling_rounds() -> None:
    rows = [(r, name, s) for r in range(5) for name, s in (("num", 2.0 * (r + 1)), ("den", r + 1.0))]
    times = pd.DataFrame(rows, columns=["round", "name", "seconds"])
    value, lo, hi = ratio_interval(times, "num", "den", resamples=200)
    assert (value, lo, hi) == pytest.approx((2.0, 2.0, 2.0))  # paired: every resample is exactly 2
    unpaired = times.assign(seconds=np.where(times["name"] == "num", 6.0, times["seconds"]))
    assert ratio_interval(unpaired, "num", "den", resamples=200)[0] == pytest.approx(2.0)  # 6 / median 3


def test_count_flops_of_a_linear_layer() -> None:
    layer = torch.nn.Linear(10, 20)
    assert count_flops(layer, torch.rand(3, 10)) == 2 * 3 * 10 * 20
    assert layer.training  # the mode is restored


@pytest.mark.parametrize(
    ("lo", "hi", "larger", "expected"),
    [
        (0.8, 0.9, True, "MET"),
        (0.5, 0.6, True, "MISSED"),
        (0.6, 0.8, True, "UNDECIDED"),
        (0.5, 0.6, False, "MET"),
        (0.8, 0.9, False, "MISSED"),
        (float("nan"), float("nan"), True, "UNDECIDED"),
    ],
)
def test_claim_row_verdicts(lo: float, hi: float, larger: bool, expected: str) -> None:
    row = claim_row("c", "paper", "auc", (lo + hi) / 2, lo, hi, 0.7, larger, 20, 1, "0", "python x.py")
    assert list(row) == CLAIM_COLUMNS
    assert row["verdict"] == expected
    assert row["direction"] == (">=" if larger else "<=")
