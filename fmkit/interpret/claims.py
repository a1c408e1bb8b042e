"""The whitening method's claims, measured on held-out identities, with intervals and verdicts.

One function, :func:`whitening_report`, serves the demo notebook and
``benchmarks/whitening.py``, so both print the same figures, each computed once. The claims
(targets in :data:`TARGETS`):

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fmkit.config import resolve_config
from fmkit.data.concepts import concept_datasets
from fmkit.data.schema import read_faces
from fmkit.engine.coverage import folder_videos
from fmkit.engine.data import build_datasets
from fmkit.engine.report import heldout_auc_difference, heldout_auc_table
from fmkit.interpret.concepts import (
    concept_auc,
    decorrelation,
    feature_correlation,
    mean_abs_offdiag,
    mean_concept_auc,
    pointing,
)
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


@dataclass
class WhiteningReport:
    """Everything :func:`whitening_report` measured on the test split, each figure computed once.

    ``claims``: claim, value, lo, hi, target, verdict, n (test identities). ``auc``: frame and
    video AUC of each model with intervals (:func:`fmkit.engine.report.heldout_auc_table`).
    ``difference``: video AUC whitening − baseline2d, (value, lo, hi). ``correlation``: each
    model's channel correlation (C, C) at the analysed layer. ``decorrelation``: the whitened
    layer's input and output mean |r| and its whitening error (:func:`decorrelation`).
    ``concept_auc`` and ``pointing``: per concept, one column block per model.
    """

    claims: pd.DataFrame
    auc: pd.DataFrame
    difference: tuple[float, float, float]
    correlation: dict[str, np.ndarray]
    decorrelation: dict[str, float]
    concept_auc: pd.DataFrame
    pointing: pd.DataFrame


def whitening_report(
    runs: Mapping[str, str | os.PathLike], faces: str | os.PathLike, resamples: int = 1000, seed: int = 0
) -> WhiteningReport:
    """The claims of :data:`TARGETS`, and the figures behind them, for two run folders
    (``runs["baseline2d"]``, ``runs["whitening"]``) trained on the faces folder ``faces``."""
    faces = Path(faces)
    manifest = read_faces(faces)
    test_faces = manifest[manifest["split"] == "test"]
    videos = folder_videos(faces)  # every video, those without crops included: the video AUCs cover them
    auc = heldout_auc_table(runs, videos, resamples, seed)
    by_level = auc.set_index(["model", "level"])
    diff = heldout_auc_difference(runs["whitening"], runs["baseline2d"], videos, "video", resamples, seed)
    models = {name: load(run) for name, run in runs.items()}
    cfg = resolve_config(Path(runs["whitening"]) / "config.yaml")
    size = cfg["data"]["size"]
    test = build_datasets(faces, cfg["data"])["test"]
    correlation = {name: feature_correlation(model, test) for name, model in models.items()}
    plain, whitened = (mean_abs_offdiag(correlation[name]) for name in ("baseline2d", "whitening"))
    concepts = list(models["whitening"].concepts)
    sets = concept_datasets(faces, concepts, split="test", size=size)
    per_model = {name: concept_auc(model, sets, resamples=resamples, seed=seed) for name, model in models.items()}
    rows = [
        ("baseline2d test video AUC", *by_level.loc[("baseline2d", "video"), ["auc", "lo", "hi"]]),
        ("whitening test video AUC", *by_level.loc[("whitening", "video"), ["auc", "lo", "hi"]]),
        ("whitening − baseline2d video AUC", *diff),
        ("decorrelation, plain / whitened", plain / whitened, float("nan"), float("nan")),
        ("mean concept AUC (test)", *mean_concept_auc(models["whitening"], sets, resamples=resamples, seed=seed)),
    ]
    claims = []
    for claim, value, lo, hi in rows:
        target, larger = TARGETS[claim]
        exact = claim.startswith("decorrelation")  # every test pixel, no resampling: the value decides
        decided = verdict(value, value, target, larger) if exact else verdict(lo, hi, target, larger)
        claims.append(
            {
                "claim": claim,
                "value": value,
                "lo": lo,
                "hi": hi,
                "target": target,
                "verdict": decided,
                "n": videos.loc[videos["split"] == "test", "identity"].nunique(),
            }
        )
    return WhiteningReport(
        claims=pd.DataFrame(claims),
        auc=auc,
        difference=diff,
        correlation=correlation,
        decorrelation=decorrelation(models["whitening"], test),
        concept_auc=pd.concat({n: t.set_index("concept")[["auc", "lo", "hi"]] for n, t in per_model.items()}, axis=1),
        pointing=pd.concat(
            {n: pointing(m, test_faces, faces, concepts, size).set_index("concept") for n, m in models.items()}, axis=1
        ),
    )
