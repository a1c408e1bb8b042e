"""Explanation methods compared on held-out faces (fmkit.interpret.explain_eval), the distiller's
neighbours, and the explanation figures."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import PixelVAE
from matplotlib.figure import Figure
from torch import Tensor, nn

from fmkit import plots
from fmkit.data.schema import read_faces
from fmkit.errors import FmkitError
from fmkit.interpret import explain_eval as ee
from fmkit.interpret.relabel import Explanation, ReLabelDistiller, as_teacher
from fmkit.metrics import MetricWarning
from fmkit.models.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32
HALF = SIZE // 2


class QuadrantNet(nn.Module):
    """A detector whose logit is k · (mean of a 1×1 convolution over the top-left quadrant − threshold)."""

    def __init__(self, threshold: float, k: float = 50.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 3)
            self.conv.bias.zero_()
        self.threshold, self.k = threshold, k

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return self.k * (self.conv(x)[:, 0, : h // 2, : w // 2].mean((1, 2)) - self.threshold)


def quadrant_face(i: int, level: float, identity: str, label: int = 1) -> dict:
    """Noise with a top-left quadrant around ``level``; the mask is that quadrant (fakes)."""
    g = torch.Generator().manual_seed(i)
    x = torch.rand(3, SIZE, SIZE, generator=g)
    x[:, :HALF, :HALF] = level + 0.2 * (torch.rand(3, HALF, HALF, generator=g) - 0.5)
    mask = torch.zeros(SIZE, SIZE)
    mask[:HALF, :HALF] = 1
    return {
        "image": x,
        "mask": mask if label else None,
        "video_id": f"v{i}",
        "identity": identity,
        "method": "quadrant" if label else "real",
        "label": label,
    }


# --- faces --------------------------------------------------------------------------------


def test_explanation_faces_are_balanced_one_per_video_and_deterministic(synth_faces) -> None:
    faces = ee.explanation_faces(synth_faces, 5, seed=0, size=SIZE)
    manifest = read_faces(synth_faces)
    test = manifest[manifest["split"] == "test"]
    assert len(faces) == 5 == test["video_id"].nunique()  # 1 real, 4 fakes: the fakes fill the real's place
    assert [f["label"] for f in faces] == [1, 0, 1, 1, 1]  # fakes and reals alternate while both last
    assert len({f["video_id"] for f in faces}) == 5 and {f["video_id"] for f in faces} <= set(test["video_id"])
    for f in faces:
        assert f["image"].shape == (3, SIZE, SIZE) and 0 <= float(f["image"].min()) <= float(f["image"].max()) <= 1
        row = test[(test["video_id"] == f["video_id"]) & (test["crop_path"] == f["crop_path"])].iloc[0]
        assert f["identity"] == row["source_id"] and f["method"] == row["method"] and f["label"] == row["label"]
        if f["label"] == 0:
            assert f["mask"] is None and f["method"] == "real"
        else:  # every synthetic fake has a blend mask; it is scaled to a maximum of 1
            assert f["mask"].shape == (SIZE, SIZE) and float(f["mask"].max()) == pytest.approx(1.0, abs=0.05)
    again = ee.explanation_faces(synth_faces, 5, seed=0, size=SIZE)
    assert [f["crop_path"] for f in again] == [f["crop_path"] for f in faces]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(again, faces))
    two = ee.explanation_faces(synth_faces, 2, seed=1)
    assert sorted(f["label"] for f in two) == [0, 1] and two[0]["image"].shape == (3, 64, 64)  # crop size kept
    with pytest.raises(FmkitError, match="n >= 1"):
        ee.explanation_faces(synth_faces, 0)


# --- neighbours ------------------------------------------------------------------------------


class Recorder:
    """A teacher reading the top-left quadrant that keeps every batch it scores."""

    def __init__(self, threshold: float) -> None:
        self.threshold, self.seen = threshold, []

    def __call__(self, x: Tensor) -> Tensor:
        self.seen.append(x.clone())
        return torch.sigmoid(50 * (x[:, :, :HALF, :HALF].mean((1, 2, 3)) - self.threshold))


@pytest.mark.parametrize("mode", ["residual", "decoded"])
def test_neighbours_are_the_first_the_explanation_draws(mode: str) -> None:
    face = quadrant_face(0, 0.7, "a")["image"]
    threshold = float(face[:, :HALF, :HALF].mean()) - 0.01
    explained = Recorder(threshold)
    ReLabelDistiller(explained, PixelVAE(), n_samples=50, batch_size=16, seed=2, mode=mode).explain(face)
    drawn = torch.cat(explained.seen[1:])  # the first call scores the image and its reconstruction
    distiller = ReLabelDistiller(Recorder(threshold), PixelVAE(), n_samples=50, batch_size=16, seed=2, mode=mode)
    nb = distiller.neighbours(face, n=20)
    assert nb.images.shape == (20, 3, SIZE, SIZE) and nb.probs.shape == nb.relabels.shape == (20,)
    torch.testing.assert_close(nb.images, drawn[:20])
    np.testing.assert_array_equal(nb.relabels, (nb.probs < 0.5).astype(np.int64))  # the image is called fake
    images, probs, relabels = distiller.neighbours(face, n=3)  # a named tuple
    torch.testing.assert_close(images, drawn[:3])
    assert distiller.neighbours(face, n=60).images.shape[0] == 60  # beyond n_samples: more draws
    with pytest.raises(FmkitError, match="n >= 1"):
        distiller.neighbours(face, n=0)


# --- compare_methods and its tables --------------------------------------------------------


@pytest.fixture(scope="module")
def compared() -> tuple[list[dict], dict, pd.DataFrame]:
    faces = []
    for i in range(6):
        fake = i % 3 != 2
        faces.append(quadrant_face(i, 0.75 if fake else 0.25, identity="abc"[i // 2], label=int(fake)))
    model = QuadrantNet(threshold=0.5)
    maps, scores = ee.compare_methods(model, PixelVAE(), faces, n_samples=200, seed=0, steps=20, segments=16)
    return faces, maps, scores


def test_compare_methods_scores_every_face_and_method(compared) -> None:
    faces, maps, scores = compared
    assert list(maps) == list(ee.ALL_METHODS) and all(len(m) == len(faces) for m in maps.values())
    assert all(m.shape == (SIZE, SIZE) and np.isfinite(m).all() for ms in maps.values() for m in ms)
    assert len(scores) == len(faces) * len(ee.ALL_METHODS)
    assert set(scores.groupby("face")["identity"].first()) == {"a", "b", "c"}
    assert (scores["seconds"] >= 0).all() and scores[["deletion", "insertion"]].notna().all().all()
    fake = scores["label"] == 1
    assert scores.loc[fake, ["mask_agreement", "pointing"]].notna().all().all()
    assert scores.loc[~fake, ["mask_agreement", "pointing", "mask_area"]].isna().all().all()
    assert (scores.loc[fake, "mask_area"] == 0.25).all()
    relabel = scores["method"] == "relabel"
    assert (
        scores.loc[relabel, "fidelity_acc"].notna().all()
        and scores.loc[~relabel, list(ee.RELABEL_ONLY)].isna().all().all()
    )
    assert (scores["decision"] == scores["label"]).all()  # the detector is right on every face
    # the detector reads only the top-left quadrant: re-label distillation finds it, the random map does not
    by_method = scores[fake].groupby("method")["mask_agreement"].mean()
    assert by_method["relabel"] > 0.8 and by_method["occlusion"] > 0.8 and by_method["random"] < 0.5
    with pytest.raises(FmkitError, match="unknown explanation method"):
        ee.compare_methods(QuadrantNet(0.5), PixelVAE(), faces[:1], methods=["relabel", "shap"])
    with pytest.raises(FmkitError, match="unknown argument"):
        ee.compare_methods(QuadrantNet(0.5), PixelVAE(), faces[:1], methods=["random"], colour=1)


def test_method_table_has_intervals_resampling_identities(compared) -> None:
    _, _, scores = compared
    table = ee.method_table(scores, resamples=200, seed=0)
    assert list(table.columns) == ["figure", "method", "mean", "lo", "hi", "better", "faces", "identities"]
    assert set(table["figure"]) == set(ee.FIGURES)
    assert set(table.loc[table["figure"].str.startswith("fidelity"), "method"]) <= {"relabel"}
    mask_rows = table[table["figure"] == "mask_agreement"]
    assert (mask_rows["faces"] == 4).all() and (mask_rows["identities"] == 3).all()
    ok = table["lo"].notna()
    assert ok.sum() > len(table) // 2
    assert (table.loc[ok, "lo"] <= table.loc[ok, "mean"] + 1e-12).all()
    assert (table.loc[ok, "mean"] <= table.loc[ok, "hi"] + 1e-12).all()
    row = table[(table["figure"] == "deletion") & (table["method"] == "relabel")].iloc[0]
    s = scores[scores["method"] == "relabel"]
    assert row["mean"] == pytest.approx(s["deletion"].mean()) and row["better"] == "lower"


def test_versus_random_orients_differences_and_needs_a_clear_margin(compared) -> None:
    _, _, scores = compared
    claims = ee.versus_random(scores, resamples=200, seed=0).set_index("figure")
    assert list(claims.index) == list(ee.VERSUS)
    w = scores.pivot(index="face", columns="method", values="deletion")
    assert claims.loc["deletion", "value"] == pytest.approx((w["random"] - w["relabel"]).mean())
    assert claims.loc["mask_agreement", "verdict"] == "MET" and claims.loc["mask_agreement", "lo"] > 0
    assert claims.loc["deletion", "value"] > 0
    assert claims.loc["mask_agreement", "faces"] == 4 and claims.loc["mask_agreement", "identities"] == 3
    # constructed scores: a difference of exactly 0 is no margin; a worse map is MISSED
    rows = []
    for face, identity in enumerate("aabbcc"):
        for method, delta in (("relabel", 0.0), ("random", 0.0), ("worse", -0.2)):
            base = {"face": face, "identity": identity, "method": method}
            rows.append({**base, "deletion": 0.5 - delta, "insertion": 0.5 + delta, "mask_agreement": 0.3 + delta})
    tied = ee.versus_random(pd.DataFrame(rows), resamples=100)
    assert (tied["verdict"] == "UNDECIDED").all() and (tied["lo"] == 0).all()
    worse = ee.versus_random(pd.DataFrame(rows), resamples=100, method="worse")
    assert (worse["verdict"] == "MISSED").all() and np.allclose(worse["value"], -0.2)
    with pytest.raises(FmkitError, match="needs scores"):
        ee.versus_random(pd.DataFrame(rows), method="lime")


def test_one_identity_gives_nan_intervals_and_one_warning(compared) -> None:
    _, _, scores = compared
    one = scores[scores["identity"] == "a"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = ee.method_table(one, resamples=50)
        claims = ee.versus_random(one, resamples=50)
    assert table["lo"].isna().all() and (claims["verdict"] == "UNDECIDED").all()
    assert sum(issubclass(w.category, MetricWarning) for w in caught) == 2


# --- the VAE, runs, explainer -------------------------------------------------------------


def test_reconstruction_error_of_a_vae() -> None:
    torch.manual_seed(0)
    vae = create_model("vae", size=64, latent=8, width=4)
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    err = ee.reconstruction_error(vae, x, batch_size=2)
    with torch.no_grad():
        mse = (vae(x) - x).square().flatten(1).mean(1).double()
    assert err["n"] == 5 and err["mse"] == pytest.approx(float(mse.mean()), rel=1e-5)
    assert err["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-5)
    dataset = [(img, torch.tensor(0.0)) for img in x]
    assert ee.reconstruction_error(vae, dataset)["mse"] == pytest.approx(err["mse"], rel=1e-5)
    small = ee.reconstruction_error(vae, F.interpolate(x, size=32, mode="bilinear"))  # resized to the VAE's side
    assert small["n"] == 5 and math.isfinite(small["psnr"])


def test_trained_reuses_a_finished_run(tmp_path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    assert ee.trained({"model": {"name": "nothing"}}, tmp_path / "faces", tmp_path) == tmp_path


def test_relabel_explainer_reruns_the_distiller() -> None:
    face = quadrant_face(0, 0.75, "a")["image"]
    explain = ee.relabel_explainer(QuadrantNet(0.5), PixelVAE(), seed=1, grid=4)
    exp = explain(face, 0.5, 60)
    assert isinstance(exp, Explanation) and exp.n_samples >= 60 and exp.sigmas[0] == 0.5
    same = ReLabelDistiller(as_teacher(QuadrantNet(0.5)), PixelVAE(), n_samples=60, sigma=0.5, seed=1, grid=4)
    np.testing.assert_array_equal(same.explain(face).map, exp.map)
    with pytest.raises(FmkitError, match="unknown ReLabelDistiller"):
        ee.relabel_explainer(QuadrantNet(0.5), PixelVAE(), colour=1)


# --- figures ---------------------------------------------------------------------------------


def test_explanation_figures(compared) -> None:
    faces, maps, scores = compared
    titles = ee.explanation_titles(faces, scores)
    assert len(titles) == len(faces) and "p(fake)" in titles[0]
    fig = plots.explanation_grid([f["image"] for f in faces], maps, [f["mask"] for f in faces], titles)
    assert isinstance(fig, Figure) and len(fig.axes) == len(faces) * (2 + len(maps))
    nb = ReLabelDistiller(as_teacher(QuadrantNet(0.5)), PixelVAE(), n_samples=20).neighbours(faces[0]["image"], 10)
    fig = plots.neighbour_grid(nb.images, nb.probs, nb.relabels, cols=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 12
    calls = []

    def explain(image: Tensor, sigma: float, n_samples: int) -> np.ndarray:
        calls.append((sigma, n_samples))
        return np.zeros(image.shape[1:])

    fig = plots.browse_explanations([f["image"] for f in faces], explain, sigma=2.0, n_samples=80, interactive=False)
    assert isinstance(fig, Figure) and calls == [(2.0, 80)]
    assert plots.browse_explanations([], explain, interactive=False) is None
