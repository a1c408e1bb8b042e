"""K-fold cross-validation over persons: the folds, a faces folder per fold, and pooled video AUCs.

A held-out split of 20 persons gives intervals of about ±0.05 AUC; testing **every** person
once, in k folds, uses all of them. The protocol (``benchmarks/claims.py``):

1. :func:`person_folds` splits the persons (the index's ``source_id``) into ``k`` test groups;
   in fold ``f`` group ``f`` is the test split, and a validation split is carved from the other
   persons (``val_fraction`` of them), the rest is the training split. Every person is tested
   exactly once, no person is in two splits of one fold, and a fold's validation persons are
   never its test persons. Checkpoints are chosen on validation only (the engine does this).
2. :func:`write_fold_faces` writes the fold as a new faces folder: its ``faces.csv`` and
   ``errors.csv`` are the original's rows with the ``split`` column set by the fold, and its
   ``crops/`` and ``masks/`` are symbolic links to the original's, so the fold's manifest points
   at the same crops (crop paths are relative to the faces folder) and nothing is copied. The
   original faces folder is only read. Training, evaluation and every other part of fmkit take
   the fold folder like any faces folder: the splits reach training through its manifest.
3. Each fold is trained (with its own seed) and scored on its own test persons;
   :func:`pooled_video_auc` and :func:`pooled_video_auc_difference` pool the folds' video scores
   (:func:`fmkit.engine.compare.video_scores` of each fold with a ``fold`` column) with
   :func:`fmkit.metrics.pooled_bootstrap`: the AUC per fold, averaged over folds, with a 95 %
   interval resampling persons across all folds (paired for differences).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fmkit.data.schema import ERRORS_FILE, FACES_FILE, LABEL_REAL, SPLITS, faces_root, read_errors, read_faces
from fmkit.engine.coverage import folder_videos
from fmkit.errors import FmkitError
from fmkit.io import write_csv, write_json
from fmkit.metrics import pooled_auc, pooled_auc_difference

#: The folders of a faces folder that a fold folder links to (those that exist).
LINKED = ("crops", "masks")
#: What a fold folder records about itself.
FOLD_FILE = "fold.json"
#: ``fakes`` of :func:`pooled_video_auc`: every fake.
ALL = "all"


def person_folds(
    persons: Sequence[Hashable], k: int = 5, seed: int = 0, val_fraction: float = 0.2
) -> list[dict[str, str]]:
    """``k`` folds over ``persons``: one dict per fold, person → ``train``, ``val`` or ``test``.

    The persons (duplicates ignored, compared as strings) are shuffled by ``seed`` and cut into
    ``k`` test groups whose sizes differ by at most one; fold ``f`` tests group ``f``. Of the other
    persons, ``round(val_fraction × their number)`` (at least one when ``val_fraction`` > 0), drawn
    by (``seed``, ``f``), are the fold's validation split, the rest its training split (at least
    one). Deterministic under ``seed``.
    """
    unique = sorted({str(p) for p in persons})
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise FmkitError(f"k-fold cross-validation needs k >= 2 folds, got {k!r}")
    if len(unique) < k:
        raise FmkitError(f"{len(unique)} person(s) cannot make {k} folds: every fold needs a test person")
    if not 0.0 <= val_fraction < 1.0:
        raise FmkitError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    groups = np.array_split(np.asarray(order, dtype=object), k)
    folds = []
    for f, test in enumerate(groups):
        tested = set(test)
        rest = [p for p in order if p not in tested]
        n_val = int(round(val_fraction * len(rest)))
        n_val = max(n_val, 1) if val_fraction > 0 else 0
        if len(rest) - n_val < 1:
            raise FmkitError(
                f"fold {f}: {len(rest)} person(s) outside its test split cannot give {n_val} validation "
                "person(s) and at least one training person; use fewer folds or more persons"
            )
        drawn = np.random.default_rng([seed, f]).permutation(len(rest))[:n_val]
        val = {rest[i] for i in drawn}
        split = {p: "test" if p in tested else "val" if p in val else "train" for p in unique}
        folds.append(dict(sorted(split.items())))
    return folds


def folder_persons(faces: str | os.PathLike) -> list[str]:
    """The persons (``source_id``) of every video a faces folder was made from, faceless videos included."""
    return sorted(folder_videos(faces)["identity"].astype(str).unique())


def _assign(df: pd.DataFrame, assignment: Mapping[str, str], source: str) -> pd.DataFrame:
    persons = df["source_id"].astype(str)
    missing = sorted(set(persons) - set(assignment))
    if missing:
        raise FmkitError(f"person {missing[0]!r} of {source} is in no split of the fold ({len(missing)} missing)")
    return df.assign(split=persons.map(assignment).to_numpy())


def write_fold_faces(faces: str | os.PathLike, assignment: Mapping[str, str], out: str | os.PathLike) -> Path:
    """A faces folder ``out`` for one fold: the crops of ``faces`` with the splits of ``assignment``.

    ``assignment``: person (``source_id``) → split, e.g. one fold of :func:`person_folds`; every
    person of the manifest and of ``errors.csv`` needs one. Writes ``out/faces.csv`` and
    ``out/errors.csv`` (the original rows, ``split`` replaced), ``out/preprocess.json`` (the
    original's settings, when present), ``out/fold.json`` (the source folder and the persons per
    split) and symbolic links ``out/crops`` and ``out/masks`` to the original's folders. ``faces``
    itself is never written to (``out`` may not be it or lie inside it). Re-writing the same fold
    gives the same files, so a packed crop cache (:mod:`fmkit.data.cache`) and finished runs on it
    are reused.
    """
    source = faces_root(Path(faces)).resolve()
    out = Path(out).resolve()
    if out == source or source in out.parents:
        raise FmkitError(f"a fold folder may not be the faces folder {source} or lie inside it: choose another {out}")
    bad = sorted({s for s in assignment.values() if s not in SPLITS})
    if bad:
        raise FmkitError(f"bad split {bad[0]!r} in the fold: expected one of {', '.join(SPLITS)}")
    manifest = _assign(read_faces(source), assignment, str(source / FACES_FILE))
    errors = read_errors(source)
    known = errors["source_id"].notna()
    if known.any():
        errors.loc[known, "split"] = _assign(errors[known], assignment, str(source / ERRORS_FILE))["split"]
    out.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        target = source / name
        link = out / name
        if not target.is_dir():
            continue
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.exists() or link.is_symlink():
            raise FmkitError(f"{link} exists and is not a link to {target}: write the fold into a new folder")
        link.symlink_to(target, target_is_directory=True)
    settings = source / "preprocess.json"
    if settings.is_file():
        write_json(json.loads(settings.read_text()), out / "preprocess.json")
    write_csv(manifest, out / FACES_FILE)
    write_csv(errors, out / ERRORS_FILE)
    counts = pd.Series(assignment).value_counts()
    write_json(
        {"source": str(source), "persons": {s: int(counts.get(s, 0)) for s in SPLITS}, "assignment": dict(assignment)},
        out / FOLD_FILE,
    )
    return out


def _subset(scores: pd.DataFrame, fakes: str) -> pd.DataFrame:
    """Real videos and the fakes of method ``fakes`` (every fake for :data:`ALL`)."""
    if fakes == ALL:
        return scores
    return scores[(scores["label"] == LABEL_REAL) | (scores["method"] == fakes)]


def _check_scores(scores: pd.DataFrame) -> None:
    missing = [c for c in ("fold", "model", "video_id", "label", "prob", "identity", "method") if c not in scores]
    if missing:
        raise FmkitError(f"pooled video scores need the column(s) {', '.join(missing)} (video_scores + a fold column)")


def pooled_video_auc(
    scores: pd.DataFrame, model: str, fakes: str = ALL, resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float, int]:
    """Video AUC of ``model`` on its folds' test videos: (value, lo, hi, persons).

    ``scores``: :func:`fmkit.engine.compare.video_scores` of every fold with a ``fold`` column
    (one fit per fold). ``fakes``: a manipulation method (real videos against that method's fakes)
    or :data:`ALL`. The AUC per fold averaged over folds, 95 % interval resampling persons across
    folds (:func:`fmkit.metrics.pooled_bootstrap`). No such fake: all NaN and 0 persons.
    """
    _check_scores(scores)
    s = _subset(scores[scores["model"] == model], fakes)
    if s.empty or not (s["label"] != LABEL_REAL).any():
        return float("nan"), float("nan"), float("nan"), 0
    value, lo, hi = pooled_auc(
        s["prob"], s["label"], s["identity"].astype(str), s["fold"], resamples=resamples, seed=seed
    )
    return value, lo, hi, int(s["identity"].nunique())


def pooled_video_auc_difference(
    scores: pd.DataFrame, model_a: str, model_b: str, fakes: str = ALL, resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float, int]:
    """Video AUC of ``model_a`` minus ``model_b`` on the same videos of every fold: (value, lo, hi, persons),
    paired (both on the same resampled persons); as :func:`pooled_video_auc` otherwise."""
    _check_scores(scores)
    a = _subset(scores[scores["model"] == model_a], fakes).set_index(["fold", "video_id"]).sort_index()
    b = _subset(scores[scores["model"] == model_b], fakes).set_index(["fold", "video_id"]).sort_index()
    if a.empty or not (a["label"] != LABEL_REAL).any():
        return float("nan"), float("nan"), float("nan"), 0
    if not a.index.equals(b.index):
        raise FmkitError(f"{model_a!r} and {model_b!r} scored different videos: pair them on the same test videos")
    folds = a.index.get_level_values("fold")
    value, lo, hi = pooled_auc_difference(
        a["prob"], b["prob"], a["label"], a["identity"].astype(str), folds, resamples=resamples, seed=seed
    )
    return value, lo, hi, int(a["identity"].nunique())
