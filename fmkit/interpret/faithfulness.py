r"""How faithful and how well placed a saliency map is: deletion/insertion AUC, mask agreement, pointing game.

Deletion and insertion follow RISE (Petsiuk, Das & Saenko 2018). Pixels are ranked by the
saliency map, most salient first (ties in row-major order). After k of the H·W pixels:

- *deletion*: the image with its k most salient pixels (all channels) replaced by the
  baseline image's pixels;
- *insertion*: the baseline image with the image's k most salient pixels put back.

At each of ``steps`` + 1 equally spaced fractions f = k / (H·W) ∈ [0, 1], the teacher scores
the image and we record its probability of its *decision on the original image*
(label = prob >= 0.5): p for a fake decision, 1 − p for a real one. The AUC is the trapezoid
area under that curve over f ∈ [0, 1] (a mean probability). A faithful map makes the decision
collapse early when deleting (low deletion AUC) and recover early when inserting (high
insertion AUC). Baselines (as in RISE): deletion replaces pixels by zeros (black); insertion
starts from a Gaussian blur of the image (σ = max(H, W) / 45 px, i.e. RISE's σ = 5 at 224 px)
— both can be set to ``"zeros"``, ``"blur"`` or a given image. Note that a blurred start keeps
the image's coarse colours, so a teacher that looks only at mean brightness barely notices
insertion from it. All curve images go through the teacher in batches.

:func:`mask_agreement` and :func:`pointing_game` compare a map with a ground-truth mask (e.g.
the manipulated region): both are NaN for an empty mask, and FmkitError for shapes that do not match.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fmkit.errors import FmkitError
from fmkit.interpret.relabel import Teacher, check_image, decision_scores, teacher_probs

Baseline = str | Tensor | np.ndarray


def _saliency(saliency: Tensor | np.ndarray, hw: tuple[int, int], name: str = "saliency") -> np.ndarray:
    s = np.asarray(saliency.detach().cpu().numpy() if isinstance(saliency, Tensor) else saliency, dtype=np.float64)
    if s.shape != hw:
        raise FmkitError(f"{name} map has shape {s.shape}, expected {hw} (the image's or mask's H × W)")
    if not np.isfinite(s).all():
        raise FmkitError(f"{name} map holds NaN or inf values")
    return s


def blur(image: Tensor) -> Tensor:
    """RISE's insertion baseline: a Gaussian blur of ``image`` (3, H, W), σ = max(H, W) / 45 px, reflect padding."""
    from torchvision.transforms.functional import gaussian_blur

    sigma = max(image.shape[-2:]) / 45.0
    k = 2 * math.ceil(3 * sigma) + 1
    k = min(k, 2 * ((min(image.shape[-2:]) - 1) // 2) + 1)  # reflect padding needs k // 2 < side
    return gaussian_blur(image[None], [k, k], [sigma, sigma])[0] if k > 1 else image.clone()


def _baseline(baseline: Baseline, x: Tensor) -> Tensor:
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(x)
        if baseline == "blur":
            return blur(x)
        raise FmkitError(f"baseline must be 'zeros', 'blur' or an image (3, H, W), got {baseline!r}")
    b = check_image(baseline, "baseline image")
    if b.shape != x.shape:
        raise FmkitError(f"baseline image is {tuple(b.shape)}, the image {tuple(x.shape)}")
    return b


def curve(
    teacher: Teacher,
    image: Tensor | np.ndarray,
    saliency: Tensor | np.ndarray,
    kind: str = "deletion",
    steps: int = 50,
    baseline: Baseline | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """The deletion or insertion curve: (fractions (steps + 1,) in [0, 1], decision probabilities (steps + 1,)).

    ``kind``: ``"deletion"`` or ``"insertion"``; ``baseline``: None (``"zeros"`` for deletion,
    ``"blur"`` for insertion), ``"zeros"``, ``"blur"`` or an image (3, H, W) in [0, 1]. See the
    module docstring.
    """
    if kind not in ("deletion", "insertion"):
        raise FmkitError(f"curve kind must be 'deletion' or 'insertion', got {kind!r}")
    if steps < 1:
        raise FmkitError(f"steps must be >= 1, got {steps}")
    x = check_image(image)
    hw = (x.shape[1], x.shape[2])
    s = _saliency(saliency, hw)
    base = _baseline(baseline if baseline is not None else ("zeros" if kind == "deletion" else "blur"), x)
    label = int(float(teacher_probs(teacher, x[None])[0]) >= 0.5)
    n = hw[0] * hw[1]
    order = torch.from_numpy(np.argsort(-s.reshape(-1), kind="stable").copy())
    counts = np.rint(np.linspace(0, n, steps + 1)).astype(np.int64)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)  # rank[i]: position of pixel i in the saliency order
    start, end = (x, base) if kind == "deletion" else (base, x)
    scores = []
    for chunk in np.array_split(counts, max(1, math.ceil(len(counts) / batch_size))):
        changed = (rank[None, :] < torch.from_numpy(chunk)[:, None]).view(-1, 1, *hw)  # (B, 1, H, W)
        images = torch.where(changed, end[None], start[None])
        scores.append(decision_scores(teacher_probs(teacher, images, batch_size), label))
    return counts / n, torch.cat(scores).numpy()


def deletion_auc(
    teacher: Teacher,
    image: Tensor | np.ndarray,
    saliency: Tensor | np.ndarray,
    steps: int = 50,
    baseline: Baseline = "zeros",
    batch_size: int = 64,
) -> float:
    """RISE deletion AUC in [0, 1]: mean decision probability while the most salient pixels are
    replaced by ``baseline`` (default zeros); lower = more faithful. See the module docstring."""
    frac, probs = curve(teacher, image, saliency, "deletion", steps, baseline, batch_size)
    return float(np.trapezoid(probs, frac))


def insertion_auc(
    teacher: Teacher,
    image: Tensor | np.ndarray,
    saliency: Tensor | np.ndarray,
    steps: int = 50,
    baseline: Baseline = "blur",
    batch_size: int = 64,
) -> float:
    """RISE insertion AUC in [0, 1]: mean decision probability while the most salient pixels are put
    back into ``baseline`` (default the blurred image); higher = more faithful. See the module docstring."""
    frac, probs = curve(teacher, image, saliency, "insertion", steps, baseline, batch_size)
    return float(np.trapezoid(probs, frac))


def _mask(mask: Tensor | np.ndarray) -> np.ndarray:
    m = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, Tensor) else mask, dtype=np.float64)
    if m.ndim != 2:
        raise FmkitError(f"mask must be (H, W), got shape {m.shape}")
    return m > 0.5


def mask_agreement(saliency: Tensor | np.ndarray, mask: Tensor | np.ndarray, top: float = 0.1) -> float:
    """Share of the top ``top`` fraction of pixels by |saliency| that lie inside ``mask`` (> 0.5 = inside).

    k = max(1, round(top · H · W)) pixels, ties in row-major order. Chance level is the mask's
    area share. NaN for an empty mask; FmkitError for a shape mismatch or ``top`` outside (0, 1].
    """
    m = _mask(mask)
    s = _saliency(saliency, m.shape)
    if not 0 < top <= 1:
        raise FmkitError(f"top must be a fraction in (0, 1], got {top}")
    if not m.any():
        return float("nan")
    k = max(1, round(top * m.size))
    idx = np.argsort(-np.abs(s).reshape(-1), kind="stable")[:k]
    return float(m.reshape(-1)[idx].mean())


def pointing_game(saliency: Tensor | np.ndarray, mask: Tensor | np.ndarray, tolerance: int = 0) -> float:
    """Pointing game (Zhang et al. 2016): 1.0 when the map's maximum lies inside ``mask``, else 0.0.

    The maximum of the signed map (the strongest evidence for the decision). ``tolerance`` px
    grows the mask by a square of that radius first. When several pixels tie for the maximum
    the score is the share of them inside (a constant map scores the mask's area). NaN for an
    empty mask; FmkitError for a shape mismatch.
    """
    m = _mask(mask)
    s = _saliency(saliency, m.shape)
    if tolerance < 0:
        raise FmkitError(f"tolerance must be >= 0 px, got {tolerance}")
    if not m.any():
        return float("nan")
    if tolerance:
        grown = F.max_pool2d(torch.from_numpy(m).double()[None, None], 2 * tolerance + 1, 1, tolerance)
        m = grown[0, 0].numpy() > 0.5
    return float(m[s == s.max()].mean())
