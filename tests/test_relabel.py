"""Re-label distillation, Captum baselines and faithfulness metrics on teachers with a known answer."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import PixelVAE
from torch import Tensor, nn

import fmkit.models.vae  # noqa: F401  (registers "vae")
from fmkit.errors import FmkitError
from fmkit.interpret.attribution import METHODS, attribute, gradcam_layer
from fmkit.interpret.faithfulness import blur, curve, deletion_auc, insertion_auc, mask_agreement, pointing_game
from fmkit.interpret.relabel import ReLabelDistiller, as_teacher
from fmkit.models.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32
HALF = SIZE // 2


def region_teacher(threshold: float, sign: float = 1.0, k: float = 50.0) -> Callable[[Tensor], Tensor]:
    """Fake probability σ(sign · k · (mean of the top-left quadrant − threshold)): only that quadrant matters."""

    def teacher(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return torch.sigmoid(sign * k * (x[:, :, : h // 2, : w // 2].mean((1, 2, 3)) - threshold))

    return teacher


def image_with_quadrant(level: float, seed: int = 0, size: int = SIZE) -> Tensor:
    """Uniform noise with a top-left quadrant around ``level`` (± 0.1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, size, size, generator=g)
    x[:, : size // 2, : size // 2] = level + 0.2 * (torch.rand(3, size // 2, size // 2, generator=g) - 0.5)
    return x


def quadrant_mean(x: Tensor) -> float:
    h, w = x.shape[-2:]
    return float(x[:, : h // 2, : w // 2].mean())


def share_in_quadrant(saliency: np.ndarray) -> float:
    a = np.abs(saliency)
    h, w = a.shape
    return float(a[: h // 2, : w // 2].sum() / a.sum())


def quadrant_mask(size: int = SIZE) -> np.ndarray:
    m = np.zeros((size, size))
    m[: size // 2, : size // 2] = 1
    return m


# --- teachers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    torch.manual_seed(0)
    return create_model("baseline2d", backbone="resnet18")


def test_as_teacher_gives_probabilities_in_eval_mode(detector: nn.Module) -> None:
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    detector.train()
    p = as_teacher(detector, batch_size=2)(x)
    assert detector.training  # mode restored
    assert p.shape == (5,) and p.dtype == torch.float32 and not p.requires_grad
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    with torch.no_grad():
        expected = torch.sigmoid(detector.eval()(x))
    torch.testing.assert_close(p, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(as_teacher(detector, batch_size=64)(x), p, rtol=1e-4, atol=1e-5)
    with pytest.raises(FmkitError, match=r"\(N, 3, H, W\)"):
        as_teacher(detector)(x[0])


class StillClipModel(nn.Module):
    """A video model: clips (N, 3, T, H, W) → logits; it checks it gets T = clip_len frames."""

    clip_len = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 3, padding=1)
        self.head = nn.Linear(2, 1)

    def forward(self, x: Tensor) -> Tensor:
        assert x.dim() == 5 and x.shape[2] == (self.clip_len or 2), x.shape
        return self.head(self.conv(x).mean((2, 3, 4))).squeeze(-1)


def test_video_models_see_still_clips() -> None:
    torch.manual_seed(0)
    model = StillClipModel()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        expected = torch.sigmoid(model(x.unsqueeze(2).expand(-1, -1, 4, -1, -1)))
    torch.testing.assert_close(as_teacher(model)(x), expected)
    cam = attribute("gradcam", model, x[0])
    assert cam.shape == (16, 16) and np.isfinite(cam).all()
    model.clip_len = None  # a video model without the attribute (td3dcnn takes any T): clip_len given
    with torch.no_grad():
        expected = torch.sigmoid(model(x.unsqueeze(2).expand(-1, -1, 2, -1, -1)))
    torch.testing.assert_close(as_teacher(model, clip_len=2)(x), expected)
    assert attribute("ig", model, x[0], clip_len=2, steps=2).shape == (16, 16)
    with pytest.raises(FmkitError, match="clip_len"):
        as_teacher(model, clip_len=0)


# --- re-label distillation ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["residual", "decoded"])
def test_relabel_map_finds_the_region_the_teacher_reads(mode: str) -> None:
    x = image_with_quadrant(0.7)
    teacher = region_teacher(quadrant_mean(x) - 0.01)  # fake, p ≈ 0.62: some neighbours flip
    exp = ReLabelDistiller(teacher, PixelVAE(), n_samples=600, seed=0, mode=mode).explain(x)
    assert exp.map.shape == (SIZE, SIZE) and np.isfinite(exp.map).all()
    assert exp.label == 1 and exp.prob == pytest.approx(float(teacher(x[None])[0]))
    assert 0 < exp.n_flipped < exp.n_samples == 600 and exp.sigmas == (1.0,)
    assert exp.fidelity["auc"] > 0.9 and exp.fidelity["acc"] > 0.8 and exp.fidelity["n"] == 120
    assert share_in_quadrant(exp.map) > 0.7  # the quadrant is 25 % of the image
    assert share_in_quadrant(attribute("random", teacher, x, seed=0)) < 0.5  # the same check fails by chance


@pytest.mark.parametrize(
    ("sign", "level", "label"),
    [(1.0, 0.7, 1), (-1.0, 0.3, 1), (-1.0, 0.7, 0)],
    ids=["fake-because-bright", "fake-because-dark", "real-because-bright"],
)
def test_relabel_map_is_positive_where_content_supports_the_decision(sign: float, level: float, label: int) -> None:
    x = image_with_quadrant(level, seed=1)
    offset = 0.01 if label == 1 else -0.01
    teacher = region_teacher(quadrant_mean(x) - sign * offset, sign=sign)
    exp = ReLabelDistiller(teacher, PixelVAE(), n_samples=400, seed=0, reference="gray").explain(x)
    assert exp.label == label
    inside, outside = exp.map[:HALF, :HALF], exp.map[HALF:, HALF:]
    assert (inside > 0).mean() > 0.9 and inside.mean() > 5 * np.abs(outside).mean()


def test_relabel_is_deterministic_under_seed() -> None:
    x = image_with_quadrant(0.7)
    teacher = region_teacher(quadrant_mean(x) - 0.01)
    a = ReLabelDistiller(teacher, PixelVAE(), n_samples=200, seed=3).explain(x)
    b = ReLabelDistiller(teacher, PixelVAE(), n_samples=200, seed=3).explain(x)
    c = ReLabelDistiller(teacher, PixelVAE(), n_samples=200, seed=4).explain(x)
    np.testing.assert_array_equal(a.map, b.map)
    assert a.fidelity == b.fidelity and a.n_flipped == b.n_flipped
    assert not np.array_equal(a.map, c.map)


def test_relabel_escalates_when_nothing_flips() -> None:
    x = image_with_quadrant(0.7)
    teacher = region_teacher(quadrant_mean(x) - 0.05)  # p ≈ 0.92: at sigma 0.2 nothing flips
    exp = ReLabelDistiller(teacher, PixelVAE(), n_samples=100, sigma=0.2, seed=0, escalate=3).explain(x)
    assert exp.sigmas[:2] == (0.2, 0.4) and exp.n_samples == 100 + 25 * (len(exp.sigmas) - 1)
    assert exp.n_flipped > 0
    none = ReLabelDistiller(teacher, PixelVAE(), n_samples=100, sigma=0.2, seed=0, escalate=0).explain(x)
    assert none.n_flipped == 0 and np.isnan(none.fidelity["auc"]) and none.sigmas == (0.2,)


def test_relabel_with_a_conv_vae_of_another_size() -> None:
    vae = create_model("vae", size=64, latent=8, width=4)
    x = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0))
    teacher = region_teacher(quadrant_mean(x))
    exp = ReLabelDistiller(teacher, vae, n_samples=40, batch_size=16, seed=0, escalate=0).explain(x)
    assert exp.map.shape == (40, 48) and np.isfinite(exp.map).all() and exp.weights.shape == (3, 8, 8)
    assert 0 <= exp.recon_prob <= 1 and exp.n_samples == 40


def test_relabel_rejects_bad_input() -> None:
    teacher = region_teacher(0.5)
    with pytest.raises(FmkitError, match="encode and decode"):
        ReLabelDistiller(teacher, object())
    with pytest.raises(FmkitError, match="holdout"):
        ReLabelDistiller(teacher, PixelVAE(), holdout=1.0)
    distiller = ReLabelDistiller(teacher, PixelVAE(), n_samples=20)
    with pytest.raises(FmkitError, match=r"\(3, H, W\)"):
        distiller.explain(torch.rand(1, 3, SIZE, SIZE))
    with pytest.raises(FmkitError, match=r"\[0, 1\]"):
        distiller.explain(torch.rand(3, SIZE, SIZE) * 255)
    with pytest.raises(FmkitError, match="probabilities"):
        ReLabelDistiller(lambda x: torch.full((len(x),), 3.0), PixelVAE(), n_samples=20).explain(torch.rand(3, 32, 32))


# --- Captum baselines -------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_attribution_methods_give_finite_maps(detector: nn.Module, method: str) -> None:
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    kw = {"steps": 4, "n_samples": 30, "window": 16}
    a = attribute(method, detector, x, seed=1, **kw)
    assert a.shape == (64, 64) and a.dtype == np.float64 and np.isfinite(a).all()
    np.testing.assert_allclose(attribute(method, detector, x, seed=1, **kw), a, rtol=1e-5, atol=1e-7)
    if method == "gradcam":
        assert a.min() >= 0
    if method in ("random", "lime"):
        assert not np.allclose(attribute(method, detector, x, seed=2, **kw), a)


def test_gradcam_reads_the_last_feature_stage(detector: nn.Module) -> None:
    assert gradcam_layer(detector) is detector.backbone.layer4
    assert gradcam_layer(detector, "layer3") is detector.backbone.layer3
    with pytest.raises(FmkitError, match="nolayer"):
        gradcam_layer(detector, "nolayer")


def test_teacher_methods_find_the_region_and_gradient_methods_need_a_model() -> None:
    x = image_with_quadrant(0.7)
    teacher = region_teacher(quadrant_mean(x) - 0.05)
    occ = attribute("occlusion", teacher, x, window=4)
    assert share_in_quadrant(occ) > 0.9 and occ[:HALF, :HALF].mean() > 0
    smooth = region_teacher(quadrant_mean(x) / 2, k=5.0)  # LIME's masks black out whole cells: keep p unsaturated
    lime = attribute("lime", smooth, x, superpixels="grid", segments=16, n_samples=100)
    assert share_in_quadrant(lime) > 0.7 and lime[:HALF, :HALF].mean() > 0
    for method in ("gradcam", "ig"):
        with pytest.raises(FmkitError, match="nn.Module detector"):
            attribute(method, teacher, x)
    with pytest.raises(FmkitError, match="unknown attribution method"):
        attribute("shap", teacher, x)


# --- faithfulness ---------------------------------------------------------------------------


def test_deletion_and_insertion_rank_the_true_region_first() -> None:
    x = image_with_quadrant(0.7)
    teacher = region_teacher(quadrant_mean(x) - 0.05)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    true_map = quadrant_mask()
    elsewhere = (yy + xx).astype(float)  # brightest far from the top-left corner
    d_true, d_else = deletion_auc(teacher, x, true_map, steps=16), deletion_auc(teacher, x, elsewhere, steps=16)
    i_true = insertion_auc(teacher, x, true_map, steps=16, baseline="zeros")
    i_else = insertion_auc(teacher, x, elsewhere, steps=16, baseline="zeros")
    assert d_true < d_else - 0.3 and i_true > i_else + 0.3
    assert min(d_true, d_else, i_true, i_else) >= 0 and max(d_true, d_else, i_true, i_else) <= 1
    frac, probs = curve(teacher, x, true_map, "deletion", steps=4)
    np.testing.assert_allclose(frac, [0, 0.25, 0.5, 0.75, 1])
    assert probs[0] == pytest.approx(float(teacher(x[None])[0]))  # nothing deleted yet: the decision probability
    assert probs[1] == pytest.approx(float(teacher(torch.zeros(1, 3, SIZE, SIZE))[0]))  # the quadrant is gone
    # a real decision records 1 − p: deleting the region of a "real because dark" teacher raises p
    dark = region_teacher(quadrant_mean(x) + 0.05)
    assert float(dark(x[None])[0]) < 0.5
    _, real_probs = curve(dark, x, true_map, "deletion", steps=4)
    assert real_probs[0] == pytest.approx(1 - float(dark(x[None])[0]))


def test_insertion_default_starts_from_the_blurred_image() -> None:
    x = image_with_quadrant(0.7)
    calls: list[Tensor] = []

    def teacher(images: Tensor) -> Tensor:
        calls.append(images)
        return torch.full((len(images),), 0.9)

    frac, _ = curve(teacher, x, quadrant_mask(), "insertion", steps=2)
    start = calls[-1][0]
    torch.testing.assert_close(start, blur(x))
    assert not torch.allclose(start, x) and float((start - x).abs().mean()) > 0.05
    with pytest.raises(FmkitError, match="shape"):
        deletion_auc(teacher, x, np.zeros((SIZE, SIZE + 1)))


def test_mask_agreement_hand_computed() -> None:
    s = np.array([[9.0, -8.0, 0.0, 0.0], [0.0, 0.0, 7.0, 0.0], [0.0, 0.0, 0.0, 6.0], [0.0, 0.0, 0.0, 0.0]])
    mask = np.zeros((4, 4))
    mask[0, :2] = 1  # holds 9 and −8
    mask[2, 3] = 1  # holds 6
    assert mask_agreement(s, mask, top=0.25) == pytest.approx(3 / 4)  # top 4 by |s|: 9, −8, 7, 6
    assert mask_agreement(s, mask, top=1 / 8) == pytest.approx(1.0)  # top 2: 9, −8
    assert mask_agreement(s, mask, top=3 / 16) == pytest.approx(2 / 3)  # top 3: 9, −8, 7
    assert np.isnan(mask_agreement(s, np.zeros((4, 4))))
    with pytest.raises(FmkitError, match="shape"):
        mask_agreement(s, np.zeros((5, 4)))
    with pytest.raises(FmkitError, match="top"):
        mask_agreement(s, mask, top=0)


def test_pointing_game_hand_computed() -> None:
    mask = np.zeros((4, 4))
    mask[:2, :2] = 1
    s = np.zeros((4, 4))
    s[1, 1] = 5
    assert pointing_game(s, mask) == 1.0
    s[3, 3] = 6
    assert pointing_game(s, mask) == 0.0
    s[2, 2] = 6  # a tie: one of the two maxima lies next to the mask
    assert pointing_game(s, mask) == 0.0 and pointing_game(s, mask, tolerance=1) == 0.5
    assert pointing_game(np.ones((4, 4)), mask) == pytest.approx(0.25)  # a flat map scores the mask's area
    assert np.isnan(pointing_game(s, np.zeros((4, 4))))
    with pytest.raises(FmkitError, match="shape"):
        pointing_game(np.zeros((3, 3)), mask)
