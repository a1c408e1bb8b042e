"""K-fold cross-validation over persons (fmkit.engine.folds) and the pooled bootstrap (fmkit.metrics)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fmkit import metrics
from fmkit.data.schema import read_errors, read_faces
from fmkit.engine.folds import (
    folder_persons,
    person_folds,
    pooled_video_auc,
    pooled_video_auc_difference,
    write_fold_faces,
)
from fmkit.errors import FmkitError

PERSONS = [f"p{i:02d}" for i in range(23)]


@pytest.mark.parametrize(("k", "val_fraction"), [(5, 0.2), (2, 0.25), (3, 0.0), (23, 0.2)])
def test_every_person_is_tested_exactly_once(k: int, val_fraction: float) -> None:
    folds = person_folds(PERSONS, k=k, seed=3, val_fraction=val_fraction)
    assert len(folds) == k
    tested = [p for fold in folds for p, split in fold.items() if split == "test"]
    assert sorted(tested) == sorted(PERSONS)  # each person once
    sizes = [sum(s == "test" for s in fold.values()) for fold in folds]
    assert max(sizes) - min(sizes) <= 1
    for fold in folds:
        # one split per person (a dict), every person in the fold, only known splits
        assert sorted(fold) == sorted(PERSONS)
        assert set(fold.values()) <= {"train", "val", "test"}
        val = {p for p, s in fold.items() if s == "val"}
        test = {p for p, s in fold.items() if s == "test"}
        assert not val & test
        assert (len(val) > 0) == (val_fraction > 0)
        assert any(s == "train" for s in fold.values())
        if val_fraction:
            assert len(val) == max(1, round(val_fraction * (len(PERSONS) - len(test))))


def test_folds_are_deterministic_and_depend_on_the_seed() -> None:
    assert person_folds(PERSONS, 5, seed=0) == person_folds(list(reversed(PERSONS)) + PERSONS[:3], 5, seed=0)
    assert person_folds(PERSONS, 5, seed=0) != person_folds(PERSONS, 5, seed=1)


def test_bad_fold_settings_are_one_line_errors() -> None:
    with pytest.raises(FmkitError, match="k >= 2"):
        person_folds(PERSONS, k=1)
    with pytest.raises(FmkitError, match="cannot make 5 folds"):
        person_folds(PERSONS[:4], k=5)
    with pytest.raises(FmkitError, match="validation"):
        person_folds(PERSONS[:2], k=2, val_fraction=0.5)  # 1 other person: no room for val and train


def _faces_folder(root: Path) -> Path:
    """A hand-made faces folder: 6 persons, a real and a fake video each (2 crops per video, masks for fakes),
    and one faceless fake of person p6 recorded only in errors.csv."""
    from fmkit.data.schema import ERROR_COLUMNS, FACE_COLUMNS
    from fmkit.io import write_csv, write_json

    rows = []
    for i in range(6):
        for label, method in ((0, "real"), (1, "x")):
            vid = f"v{i}_{method}"
            for frame in range(2):
                crop = f"crops/{vid}/{frame}.jpg"
                mask = f"masks/{vid}/{frame}.png" if label else ""
                for rel in filter(None, (crop, mask)):
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    (root / rel).write_bytes(b"pixels")
                row = dict.fromkeys(FACE_COLUMNS, 0)
                row.update(
                    video_id=vid,
                    path=f"{vid}.mp4",
                    label=label,
                    split="train",
                    method=method,
                    dataset="folder",
                    source_id=f"p{i}",
                    frame_idx=frame,
                    crop_path=crop,
                    mask_path=mask,
                )
                rows.append(row)
    write_csv(pd.DataFrame(rows, columns=FACE_COLUMNS), root / "faces.csv")
    error = {
        "path": "v6_x.mp4",
        "video_id": "v6_x",
        "frame_idx": None,
        "reason": "no face",
        "label": 1,
        "split": "test",
        "method": "x",
        "dataset": "folder",
        "source_id": "p6",
    }
    write_csv(pd.DataFrame([error], columns=ERROR_COLUMNS), root / "errors.csv")
    write_json({"frames": 2, "size": 64}, root / "preprocess.json")
    return root


def test_fold_faces_folder_points_at_the_same_crops(tmp_path: Path) -> None:
    faces = _faces_folder(tmp_path / "faces")
    before = {p: p.stat().st_mtime_ns for p in faces.rglob("*") if p.is_file()}
    persons = folder_persons(faces)
    assert persons == [f"p{i}" for i in range(7)]  # the faceless video's person included
    fold = person_folds(persons, k=3, seed=0, val_fraction=0.25)[1]
    out = write_fold_faces(faces, fold, tmp_path / "folds" / "fold1")
    manifest, original = read_faces(out), read_faces(faces)
    assert manifest["split"].tolist() == original["source_id"].map(fold).tolist()
    assert manifest.drop(columns="split").equals(original.drop(columns="split"))
    for rel in [*manifest["crop_path"], *manifest.loc[manifest["mask_path"] != "", "mask_path"]]:
        assert os.path.samefile(out / rel, faces / rel)  # the same files, through links
    errors = read_errors(out)
    assert errors["split"].tolist() == [fold["p6"]]
    assert (out / "preprocess.json").read_text() == (faces / "preprocess.json").read_text()
    # the original is untouched, and writing the same fold again gives the same manifest
    assert {p: p.stat().st_mtime_ns for p in faces.rglob("*") if p.is_file()} == before
    assert read_faces(write_fold_faces(faces, fold, out)).equals(manifest)
    with pytest.raises(FmkitError, match="may not be the faces folder"):
        write_fold_faces(faces, fold, faces / "fold")
    with pytest.raises(FmkitError, match="in no split"):
        write_fold_faces(faces, {persons[0]: "test"}, tmp_path / "partial")


# --- the pooled bootstrap --------------------------------------------------------------------


def fold_scores(pairs_per_person: list[list[tuple[float, float]]], person_prefix: str) -> pd.DataFrame:
    """One fold: person i has one real and one fake video scored (real, fake) = pairs_per_person[i]."""
    rows = []
    for i, pairs in enumerate(pairs_per_person):
        for j, (real, fake) in enumerate(pairs):
            person = f"{person_prefix}{i}"
            rows.append({"identity": person, "label": 0, "prob": real, "video_id": f"{person}_r{j}", "method": "real"})
            rows.append({"identity": person, "label": 1, "prob": fake, "video_id": f"{person}_f{j}", "method": "x"})
    return pd.DataFrame(rows)


def test_pooled_auc_is_the_mean_of_per_fold_aucs_with_an_interval_around_it() -> None:
    # fold 0: fakes always above reals (AUC 1); fold 1: 4 persons whose scores give AUC 0.75 exactly
    fold0 = fold_scores([[(0.1 * i, 0.5 + 0.1 * i)] for i in range(4)], "a")
    fold1 = fold_scores([[(0.2, 0.55)], [(0.4, 0.3)], [(0.5, 0.9)], [(0.6, 0.7)]], "b")
    assert metrics.auc(fold0["prob"], fold0["label"]) == 1.0
    assert metrics.auc(fold1["prob"], fold1["label"]) == pytest.approx(0.75)
    both = pd.concat([fold0.assign(fold=0), fold1.assign(fold=1)], ignore_index=True)
    value, lo, hi = metrics.pooled_auc(both["prob"], both["label"], both["identity"], both["fold"], resamples=500)
    assert value == pytest.approx((1.0 + 0.75) / 2)  # equal folds: the mean over folds
    assert lo <= value <= hi
    assert hi <= 1.0 and lo < 0.875  # fold 1's persons vary the AUC
    # the pooled rows would give another number: the folds' AUCs are averaged, not their scores pooled
    assert metrics.auc(both["prob"], both["label"]) != pytest.approx(value)


def test_pooled_weights_folds_by_their_persons_and_is_deterministic() -> None:
    fold0 = fold_scores([[(0.1, 0.9)], [(0.2, 0.8)]], "a")  # AUC 1, 2 persons
    fold1 = fold_scores([[(0.9, 0.1)], [(0.8, 0.2)], [(0.7, 0.3)], [(0.6, 0.4)]], "b")  # AUC 0, 4 persons
    both = pd.concat([fold0.assign(fold="x"), fold1.assign(fold="y")], ignore_index=True)
    args = (both["prob"], both["label"], both["identity"], both["fold"])
    value, lo, hi = metrics.pooled_auc(*args, resamples=300, seed=4)
    assert value == pytest.approx((2 * 1.0 + 4 * 0.0) / 6)
    assert (value, lo, hi) == metrics.pooled_auc(*args, resamples=300, seed=4)
    assert 0.0 <= lo <= value <= hi <= 1.0


def test_pooled_difference_of_identical_scores_is_zero() -> None:
    rng = np.random.default_rng(0)
    scores = pd.concat(
        [fold_scores([[tuple(rng.random(2))] for _ in range(6)], f"f{f}_").assign(fold=f, model="a") for f in range(3)],
        ignore_index=True,
    )
    scores = pd.concat([scores, scores.assign(model="b")], ignore_index=True)
    assert pooled_video_auc_difference(scores, "a", "b", resamples=200) == (0.0, 0.0, 0.0, 18)
    value, lo, hi, n = pooled_video_auc(scores, "a", resamples=200)
    assert n == 18 and lo <= value <= hi
    assert pooled_video_auc(scores, "a", "wobble")[3] == 0  # no such fakes: nothing measured


def test_pooled_bootstrap_refuses_a_person_in_two_folds() -> None:
    stat = lambda rows: float(len(rows))
    with pytest.raises(ValueError, match="tested in folds 0 and 1"):
        metrics.pooled_bootstrap([stat, stat], [["a", "b"], ["b", "c"]])


def test_pooled_mean_and_the_value_alone() -> None:
    values = [1.0, 3.0, np.nan, 2.0, 2.0]
    groups = ["a", "b", "b", "c", "d"]
    folds = [0, 0, 0, 1, 1]
    value, lo, hi = metrics.pooled_mean(values, groups, folds, resamples=400)
    assert value == pytest.approx(2.0)  # (2 persons x mean 2 + 2 persons x mean 2) / 4
    assert lo <= 2.0 <= hi
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(metrics.pooled_mean(values, groups, folds, resamples=0)[1])


# --- per-person statistics of the interpretation claims (fmkit.interpret.pooled) -------------


class _Layer(torch.nn.Module):
    """A 'baseline' whose analysed layer is its input with mixed channels (correlated features)."""

    def __init__(self, mix: torch.Tensor) -> None:
        super().__init__()
        self.mix = mix

    def features_at(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bjhw->bihw", self.mix, x)


def _pixels(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return model.features_at(x).transpose(0, 1).flatten(1).double().numpy()  # (C, N·h·w)


def test_layer_moments_give_the_correlation_of_any_draw_of_persons() -> None:
    from fmkit.interpret.pooled import DecorrelationRatio, layer_moments

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 4, 4, generator=gen) * 5 + 2  # a large mean: the centred sums must stay exact
    persons = ["a", "a", "b", "c", "c", "c", "d"]
    data = torch.utils.data.TensorDataset(x, torch.zeros(7))
    plain = _Layer(torch.tensor([[1.0, 0.5, 0.0], [0.3, 1.0, 0.2], [0.0, 0.4, 1.0]]))
    moments = layer_moments(plain, data, persons, batch_size=3)
    assert moments.persons == ["a", "b", "c", "d"]
    assert moments.n.tolist() == [32, 16, 48, 16]
    assert np.allclose(moments.correlation(np.arange(4)), np.corrcoef(_pixels(plain, x)))
    drawn = np.array([0, 0, 2])  # person a twice, c once
    again = torch.cat([x[:2], x[:2], x[3:6]])
    assert np.allclose(moments.correlation(drawn), np.corrcoef(_pixels(plain, again)))
    whitened = layer_moments(_Layer(torch.eye(3)), data, persons)
    ratio = DecorrelationRatio(moments, whitened)
    from fmkit.interpret.concepts import mean_abs_offdiag

    expected = mean_abs_offdiag(np.corrcoef(_pixels(plain, x))) / mean_abs_offdiag(
        np.corrcoef(x.transpose(0, 1).flatten(1).numpy())
    )
    assert ratio(np.arange(4)) == pytest.approx(expected)
    value, lo, hi = metrics.pooled_bootstrap([ratio], [ratio.persons], resamples=200)
    assert value == pytest.approx(expected) and lo <= hi


def test_versus_random_differences_match_versus_random() -> None:
    from fmkit.interpret.explain_eval import versus_random
    from fmkit.interpret.pooled import versus_random_differences

    rng = np.random.default_rng(1)
    rows = []
    for face in range(6):
        for method in ("relabel", "random"):
            rows.append(
                {
                    "face": face,
                    "identity": f"p{face // 2}",
                    "method": method,
                    "deletion": rng.random(),
                    "insertion": rng.random(),
                    "mask_agreement": rng.random() if face % 2 else np.nan,
                }
            )
    scores = pd.DataFrame(rows)
    diffs = versus_random_differences(scores)
    expected = versus_random(scores, resamples=50).set_index("figure")["value"]
    assert diffs.groupby("figure")["value"].mean().to_dict() == pytest.approx(expected.to_dict())


def test_rank_auc_equals_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        p = rng.integers(0, 6, 40) / 5  # many ties
        y = rng.integers(0, 2, 40)
        assert metrics._rank_auc(p, y) == pytest.approx(metrics.auc(p, y))
    assert np.isnan(metrics._rank_auc(np.array([0.1, 0.2]), np.array([1, 1])))
