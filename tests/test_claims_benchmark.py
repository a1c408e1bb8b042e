"""benchmarks/claims.py --quick end to end on tiny data: one row per claim, the columns, verdicts, figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import CLAIM_COLUMNS  # noqa: E402

CLAIMS = {
    "baseline2d detects",
    "whitening detects",
    "whitening keeps accuracy",
    "whitening decorrelates",
    "whitened axes align with concepts",
    "whitening step time",
    "td3dcnn detects",
    "temporal dropout helps",
    "3D beats frames on temporal-only fakes",
    "td3dcnn at least as fast as r3d18",
    "re-label distillation beats random: deletion",
    "re-label distillation beats random: insertion",
    "re-label distillation beats random: mask agreement",
    "SBI generalises at least as well as the dataset's fakes",
}


def test_quick_claims_run(tmp_path: Path) -> None:
    out = tmp_path / "claims"
    command = [sys.executable, "benchmarks/claims.py", "--quick", "-o", str(out)]
    command += ["--videos", "8", "--frames", "8", "--size", "96", "--crop", "32"]
    env = {**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    claims = pd.read_csv(out / "claims.csv")
    assert list(claims.columns) == CLAIM_COLUMNS
    assert set(claims["claim"]) == CLAIMS and len(claims) == len(CLAIMS)  # one row per claim
    assert set(claims["verdict"]) <= {"MET", "MISSED", "UNDECIDED"}
    assert set(claims["direction"]) <= {">=", "<="}
    folds = claims[~claims["claim"].isin(["whitening step time", "td3dcnn at least as fast as r3d18"])]
    assert (folds["n_fits"] == 2).all()  # --quick: 2 folds, one fit each
    assert (claims["command"].str.contains("--quick")).all()
    assert (out / "claims.png").stat().st_size > 10_000

    per_fit = pd.read_csv(out / "per_fit.csv")
    assert {"fold", "seed", "model", "metric", "value"} <= set(per_fit.columns)
    assert sorted(per_fit["fold"].unique()) == [0, 1]
    assert set(per_fit.loc[per_fit["claim"].notna(), "claim"]) == CLAIMS - {
        "whitening step time",
        "td3dcnn at least as fast as r3d18",
    }
    run = json.loads((out / "run.json").read_text())
    assert run["wall_seconds"] > 0 and len(run["fits"]) == 2
    assert {"platform", "cpu_count", "torch"} <= set(run["machine"])
    assert "fit 2/2 done" in done.stdout  # the time per fold is printed as it goes


def test_forest_plot_and_spread_show_folds_and_seeds(tmp_path: Path) -> None:
    from claims import forest_plot, spread
    from common import claim_row

    table = pd.DataFrame(
        [
            claim_row("auc", "paper", "video AUC", 0.93, 0.9, 0.96, 0.9, True, 99, 5, "0,1,2,3,4", "python x"),
            claim_row("time", "paper", "step ratio", 1.2, 1.1, 1.4, 1.3, False, 0, 0, "0", "python x"),
            claim_row(
                "none", "paper", "not measured", float("nan"), float("nan"), float("nan"), 0.05, True, 0, 5, "", ""
            ),
        ],
        columns=CLAIM_COLUMNS,
    )
    rows = [{"fold": f, "seed": f, "claim": "auc", "role": "fold", "value": 0.9 + 0.01 * f} for f in range(5)]
    rows += [{"fold": 0, "seed": s, "claim": "auc", "role": "seed", "value": 0.88 + 0.02 * s} for s in (5, 6)]
    rows += [{"fold": f, "seed": f, "claim": "none", "role": "fold", "value": float("nan")} for f in range(5)]
    per_fit = pd.DataFrame(rows).assign(model="m", metric=lambda d: d["claim"])
    fig = forest_plot(table, per_fit, {"time": [1.1, 1.25, 1.3]})
    fig.savefig(tmp_path / "claims.png")
    assert len([ax for ax in fig.axes if ax.get_visible() and ax.lines]) == 3
    assert (tmp_path / "claims.png").stat().st_size > 10_000
    sd = spread(per_fit).set_index("claim")
    assert sd.loc["auc", "folds"] == 5 and sd.loc["auc", "seeds"] == 3  # fold 0's own fit and 2 more seeds
    assert sd.loc["auc", "seed-to-seed sd (fold 0)"] == pytest.approx(pd.Series([0.9, 0.98, 1.0]).std())
