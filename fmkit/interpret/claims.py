"""The whitening method's claims, measured on held-out identities, with intervals and verdicts.

One function serves the demo notebook and ``benchmarks/whitening.py``, so both print the
same figures. The claims (targets in :data:`TARGETS`):

- detectors that detect: test video AUC of ``baseline2d`` and ``whitening`` ≥ 0.90;
- accuracy kept: video AUC(whitening) − AUC(baseline2d) ≥ −0.02 (paired);
- decorrelation: mean |off-diagonal correlation| of the plain layer over the whitened one ≥ 5×
  on the test faces (eval statistics), measured over every test pixel (no interval);
- alignment: mean concept AUC of the aligned axes on test faces ≥ 0.80.

Intervals are 95 % bootstrap intervals resampling test identities (``source_id``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from fmkit.config import resolve_config
from fmkit.data.concepts import concept_datasets
from fmkit.data.schema import read_faces
from fmkit.engine.data import build_datasets
from fmkit.engine.report import heldout_auc_difference, heldout_auc_table
from fmkit.interpret.concepts import decorrelation, feature_correlation, mean_abs_offdiag, mean_concept_auc
from fmkit.metrics import verdict
from fmkit.models import load

#: claim → (target, larger is better)
TARGETS = {
    "baseline2d test video AUC": (0.90, True),
    "whitening test video AUC": (0.90, True),
    "whitening − baseline2d video AUC": (-0.02, True),
    "decorrelation, plain / whitened": (5.0, True),
    "mean concept AUC (test)": (0.80, True),
}


def whitening_claims(
    runs: Mapping[str, str | os.PathLike], faces: str | os.PathLike, resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The claims of :data:`TARGETS` for two run folders (``runs["baseline2d"]``, ``runs["whitening"]``).

    Returns a table: claim, value, lo, hi, target, verdict (MET / UNDECIDED / MISSED), n
    (test identities behind the number).
    """
    faces = Path(faces)
    manifest = read_faces(faces)
    identities = manifest.groupby("video_id")["source_id"].first().to_dict()
    n_people = manifest.loc[manifest["split"] == "test", "source_id"].nunique()
    table = heldout_auc_table(runs, identities, resamples, seed).set_index(["model", "level"])
    diff = heldout_auc_difference(runs["whitening"], runs["baseline2d"], identities, "video", resamples, seed)
    models = {name: load(run) for name, run in runs.items()}
    cfg = resolve_config(Path(runs["whitening"]) / "config.yaml")
    test = build_datasets(faces, cfg["data"])["test"]
    plain = mean_abs_offdiag(feature_correlation(models["baseline2d"], test))
    whitened = decorrelation(models["whitening"], test)["whitened"]
    concepts = list(models["whitening"].concepts)
    sets = concept_datasets(faces, concepts, split="test", size=cfg["data"]["size"])
    rows = [
        ("baseline2d test video AUC", *table.loc[("baseline2d", "video"), ["auc", "lo", "hi"]]),
        ("whitening test video AUC", *table.loc[("whitening", "video"), ["auc", "lo", "hi"]]),
        ("whitening − baseline2d video AUC", *diff),
        ("decorrelation, plain / whitened", plain / whitened, float("nan"), float("nan")),
        ("mean concept AUC (test)", *mean_concept_auc(models["whitening"], sets, resamples=resamples, seed=seed)),
    ]
    out = []
    for claim, value, lo, hi in rows:
        target, larger = TARGETS[claim]
        exact = claim.startswith("decorrelation")  # every test pixel, no resampling: the value decides
        decided = verdict(value, value, target, larger) if exact else verdict(lo, hi, target, larger)
        out.append(
            {"claim": claim, "value": value, "lo": lo, "hi": hi, "target": target, "verdict": decided, "n": n_people}
        )
    return pd.DataFrame(out)
