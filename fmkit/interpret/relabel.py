r"""Re-label distillation: explain one detection by a linear student fit on VAE neighbours of the image.

After Hua, Ge & Zhang, "Interpret the Predictions of Deep Networks via Re-label Distillation"
(ICME 2021): the image is projected into the latent space of a VAE; random latent
perturbations decode to synthetic neighbours; each neighbour is *re-labelled* by whether the
teacher (the detector) changes its label on it; a linear student fit to these re-labels is the
explanation. The paper's method section was not available when this was written: the steps
below follow that outline, and every choice marked *inferred* is ours, not the paper's.

Teacher interface: a callable mapping images (N, 3, H, W) in [0, 1] to fake probabilities (N,)
in [0, 1] (:func:`as_teacher` wraps an fmkit detector). The decision on the image is
``label = prob >= 0.5`` (1 fake); the teacher's *decision score* on any image is its probability
of that decision, s = p for a fake decision and 1 − p for a real one (the same quantity the
faithfulness curves of :mod:`fmkit.interpret.faithfulness` record).

:class:`ReLabelDistiller` steps, for one image x (3, H, W):

1. **Project.** x is resized (bilinear, antialiased) to the VAE's side S (``vae.size``; no
   resize when the VAE has no ``size``), encoded to the posterior (mu, std = exp(logvar / 2)),
   and the reconstruction r = decode(mu) is resized back to H × W.
2. **Perturb.** ``n_samples`` latents z = mu + sigma · std ⊙ eps, eps ~ N(0, I) from a
   generator seeded with ``seed``: ``sigma`` is in units of the posterior std, so 1 samples the
   posterior itself. If every neighbour gets the same re-label, up to ``escalate`` extra rounds
   of ⌈n_samples / 4⌉ latents are drawn at 2·sigma, 4·sigma, … until both re-labels occur
   (*inferred*). Decoded in batches of ``batch_size`` and resized to H × W.
   Neighbours (``mode``): ``"decoded"`` — the decoded images themselves, the literal reading of
   the paper; ``"residual"`` (default, *inferred*) — x + (decode(z) − r), clipped to [0, 1]: the
   latent perturbation applied to the image itself, so detail the VAE cannot reconstruct (the
   high-frequency traces deepfake detectors rely on) survives and only the perturbation moves
   the teacher. With a blurry VAE, ``"decoded"`` neighbours can all look "real" to a detector.
   :meth:`ReLabelDistiller.neighbours` returns the first neighbours of this step, their teacher
   probabilities and re-labels, for display.
3. **Re-label.** The teacher scores every neighbour: re-label 1 when its label (prob >= 0.5)
   differs from the teacher's label on x, else 0; the soft score of a neighbour is the teacher's
   probability of the *other* label, q_soft = 1 − s (the flip probability).
4. **Distil.** Student features are each neighbour's change from the base image (x in
   ``"residual"`` mode, r in ``"decoded"`` mode — the difference from the VAE reconstruction),
   average-pooled per channel to a ``grid`` × ``grid`` grid (3·grid² features) and divided by
   one global scale τ (their std over the training neighbours), so that ``alpha`` does not
   depend on sigma. The student is a logistic regression of the flip probability,
   P(flip | d) = σ(b + w · d / τ), fit by minimising
   Σ_i CE(q_i, P(flip | d_i)) + (alpha / 2) ‖w‖² with targets
   q_i = hard_weight · relabel_i + (1 − hard_weight) · q_soft_i — i.e. hard_weight times the
   cross-entropy on the hard re-labels plus (1 − hard_weight) times the cross-entropy on the
   teacher's soft scores, Hinton-style distillation at temperature 1 (*inferred*; the paper
   distils hard labels and soft scores, we do not know its exact loss). The soft term keeps the
   student informed where few or no neighbours flip. A random ``holdout`` share of the
   neighbours is left out of the fit; the student's accuracy and AUC at predicting their
   re-labels is its *fidelity* (NaN when they hold one re-label only).
5. **Explain.** The student's weights w / τ (3, grid, grid) are the sensitivities of the flip
   logit to each pooled cell. Their sign only says which *direction* of change flips the label,
   so the map orients them by the image's content relative to a reference image ρ
   (``reference``; default the VAE's prior-mean image decode(0), the "no particular content"
   of the latent space; *inferred*): per cell, evidence = Σ_c (w_c / τ) · (ρ_c − x_c), the change
   of the student's flip logit when the cell's content is replaced by the reference. Positive:
   removing that content would push the teacher towards flipping — the original content
   supported the teacher's decision (fake evidence for a fake decision, real evidence for a real
   one); negative: it argued against the decision. This is gradient × (input − baseline) of the
   linear student, i.e. its exact Integrated Gradients with baseline ρ. The (grid, grid) evidence
   is upsampled to H × W by nearest neighbour (each pixel shows its cell's total, in logits).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from fmkit.engine.loop import logits_of
from fmkit.errors import FmkitError
from fmkit.metrics import MetricWarning, accuracy, auc
from fmkit.models.modes import eval_mode

#: A teacher: images (N, 3, H, W) in [0, 1] → fake probabilities (N,) in [0, 1].
Teacher = Callable[[Tensor], Tensor]


def _device(module: Any) -> torch.device:
    if isinstance(module, nn.Module):
        return next(iter(module.parameters()), torch.empty(0)).device
    return torch.device("cpu")


def still_clip_len(model: nn.Module, clip_len: int | None = None) -> int | None:
    """Frames of the still clip a model sees per image: ``clip_len``, else the model's int attribute
    ``clip_len``, else None (a frame model: images go in as they are)."""
    if clip_len is None:
        clip_len = getattr(model, "clip_len", None)
        return clip_len if isinstance(clip_len, int) and not isinstance(clip_len, bool) else None
    if isinstance(clip_len, bool) or not isinstance(clip_len, int) or clip_len < 1:
        raise FmkitError(f"clip_len must be an int >= 1 or None, got {clip_len!r}")
    return clip_len


class ModelTeacher:
    """A detector as a teacher: images (N, 3, H, W) in [0, 1] → sigmoid(logits) (N,), float32 on the CPU.

    Built by :func:`as_teacher`; ``model`` is the wrapped detector.
    """

    def __init__(self, model: nn.Module, batch_size: int = 64, clip_len: int | None = None) -> None:
        if batch_size < 1:
            raise FmkitError(f"teacher batch_size must be >= 1, got {batch_size}")
        self.model, self.batch_size = model, batch_size
        self.clip_len = still_clip_len(model, clip_len)

    def __call__(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise FmkitError(f"a teacher takes images (N, 3, H, W), got {tuple(images.shape)}")
        device = _device(self.model)
        out = []
        with eval_mode(self.model):
            for chunk in images.split(self.batch_size):
                x = chunk.to(device, torch.float32)
                if self.clip_len is not None:  # a still clip: the frame repeated over time
                    x = x.unsqueeze(2).expand(-1, -1, self.clip_len, -1, -1)
                out.append(torch.sigmoid(logits_of(self.model, x)).cpu())
        return torch.cat(out) if out else torch.zeros(0)


def as_teacher(model: nn.Module, batch_size: int = 64, clip_len: int | None = None) -> Teacher:
    """Wrap a detector as a teacher: images (N, 3, H, W) in [0, 1] → fake probabilities (N,) on the CPU.

    The model runs in eval mode without gradients (its mode is restored after each call), on its
    own device, ``batch_size`` images at a time; the probability is the sigmoid of its logit.
    fmkit detectors normalise their input themselves, so images go in as they are. A video
    model, taking clips (N, 3, T, H, W), sees each image as a still clip — the frame repeated
    T times — when it has an int attribute ``clip_len`` (T) or ``clip_len`` is given here (it
    wins; e.g. ``as_teacher(create_model("td3dcnn"), clip_len=16)``, whose models accept any T).
    """
    return ModelTeacher(model, batch_size, clip_len)


def check_image(image: Tensor | np.ndarray, name: str = "image") -> Tensor:
    """One image (3, H, W) in [0, 1] as a float32 CPU tensor; FmkitError otherwise."""
    x = torch.as_tensor(image).detach()
    if x.dim() != 3 or x.shape[0] != 3 or x.shape[1] < 1 or x.shape[2] < 1:
        raise FmkitError(f"{name} must be one RGB image (3, H, W), got shape {tuple(x.shape)}")
    x = x.to("cpu", torch.float32)
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise FmkitError(f"{name} must hold finite values in [0, 1]")
    return x


def teacher_probs(teacher: Teacher, images: Tensor, batch_size: int = 128) -> Tensor:
    """The teacher's fake probabilities (N,) of images (N, 3, H, W), queried ``batch_size`` at a time (float64, CPU).

    FmkitError when the teacher returns anything but N probabilities in [0, 1].
    """
    out = []
    for chunk in images.split(max(1, batch_size)):
        p = torch.as_tensor(teacher(chunk)).detach().to("cpu", torch.float64).reshape(-1)
        if p.numel() != chunk.shape[0]:
            raise FmkitError(f"the teacher must return one probability per image: got {p.numel()} for {chunk.shape[0]}")
        if not bool(torch.isfinite(p).all()) or float(p.min()) < 0.0 or float(p.max()) > 1.0:
            raise FmkitError("the teacher must return probabilities in [0, 1] (apply a sigmoid to logits)")
        out.append(p)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def decision_scores(probs: Tensor | np.ndarray, label: int) -> Tensor | np.ndarray:
    """The teacher's probability of decision ``label`` (1 fake, 0 real): p for label 1, 1 − p for label 0."""
    return probs if label == 1 else 1 - probs


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@dataclass
class Explanation:
    """A re-label distillation explanation of one image (see :mod:`fmkit.interpret.relabel`).

    Attributes:
        map: (H, W) float64 evidence map at the image's resolution, in flip logits: positive where
            the image's content supported the teacher's decision (replacing it by the reference
            pushes the student towards a flip), negative where it argued against it.
        label: the teacher's decision on the image (1 fake, 0 real).
        prob: the teacher's fake probability of the image.
        fidelity: the student on the held-out neighbours: ``acc`` (accuracy of predicting their
            re-labels, flip when P(flip) >= 0.5), ``auc`` (NaN when they hold one re-label only), ``n``.
        n_flipped: neighbours (all of them) whose label differs from the image's.
        n_samples: neighbours drawn (more than asked when escalation drew extra rounds).
        sigmas: the perturbation scales used, in posterior stds (the first is ``sigma``).
        recon_prob: the teacher's fake probability of the VAE reconstruction (how well the VAE
            preserves what the teacher sees).
        weights: (3, grid, grid) student weights w / τ: flip logit per unit pooled change of each cell.
    """

    map: np.ndarray
    label: int
    prob: float
    fidelity: dict[str, float]
    n_flipped: int
    n_samples: int
    sigmas: tuple[float, ...]
    recon_prob: float
    weights: np.ndarray = field(repr=False)


Mode = Literal["residual", "decoded"]


class Neighbours(NamedTuple):
    """Neighbours of one image as :meth:`ReLabelDistiller.neighbours` draws them.

    Attributes:
        images: (n, 3, H, W) float32 neighbour images in [0, 1].
        probs: (n,) the teacher's fake probabilities of the neighbours.
        relabels: (n,) 1 where the teacher's label on a neighbour differs from its label on the image, else 0.
    """

    images: Tensor
    probs: np.ndarray
    relabels: np.ndarray


@dataclass
class _Projection:
    """Step 1 of one image: the image x (3, H, W), its side hw, posterior (mu, std), reconstruction
    (1, 3, H, W), the base the student's features are measured from and the VAE's device."""

    x: Tensor
    hw: tuple[int, int]
    mu: Tensor
    std: Tensor
    recon: Tensor
    base: Tensor
    device: torch.device


class ReLabelDistiller:
    """Explain a teacher's decision on one image by re-label distillation (module docstring: the steps).

    Args:
        teacher: images (N, 3, H, W) in [0, 1] → fake probabilities (N,) (:func:`as_teacher`).
        vae: any object with ``encode(x) -> (mu, logvar)`` and ``decode(z) -> images`` in [0, 1]
            (e.g. :class:`fmkit.models.vae.ConvVAE`), optionally ``size`` (its square input side;
            images are resized to it and back). An ``nn.Module`` runs in eval mode on its device.
        n_samples: neighbours of the first round.
        sigma: perturbation scale in units of the posterior std (z = mu + sigma · std ⊙ eps).
        seed: seed of the latent draws and of the holdout split: equal seeds, equal explanations.
        batch_size: latents decoded (and neighbours scored) per batch.
        holdout: share of neighbours left out of the fit to measure fidelity, in (0, 1).
        alpha: L2 strength of the student, on features scaled to unit std (against the summed
            cross-entropy of the ~(1 − holdout) · n_samples training neighbours).
        grid: side of the pooled feature grid (capped at the image's sides). Keep the 3·grid²
            features well below the training neighbours, or the student fits noise: for a teacher
            reading only one quadrant, with 800 training neighbours, grid 16 (768 features, alpha 1)
            put 41 % of the map's mass in that quadrant, grid 8 (192, alpha 10) 95 %.
        hard_weight: weight of the hard re-labels against the soft scores in the student's targets, in [0, 1].
        mode: ``"residual"`` (the image plus the decoded perturbation) or ``"decoded"`` neighbours.
        reference: the image the map measures content against: ``"prior"`` (decode(0)), ``"gray"``
            (0.5 everywhere) or an image (3, H, W) in [0, 1] of the explained image's size.
        escalate: at most this many extra rounds at doubled scale while the re-labels are one-class.
    """

    def __init__(
        self,
        teacher: Teacher,
        vae: Any,
        n_samples: int = 1000,
        sigma: float = 1.0,
        seed: int = 0,
        batch_size: int = 128,
        holdout: float = 0.2,
        alpha: float = 10.0,
        grid: int = 8,
        hard_weight: float = 0.5,
        mode: Mode = "residual",
        reference: str | Tensor = "prior",
        escalate: int = 3,
    ) -> None:
        if not callable(teacher):
            raise FmkitError(f"teacher must be callable (see as_teacher), got {type(teacher).__name__}")
        if not (callable(getattr(vae, "encode", None)) and callable(getattr(vae, "decode", None))):
            raise FmkitError(f"vae must have encode and decode methods, got {type(vae).__name__}")
        if n_samples < 10 or batch_size < 1 or grid < 1 or escalate < 0:
            raise FmkitError(
                f"ReLabelDistiller needs n_samples >= 10, batch_size >= 1, grid >= 1, escalate >= 0; "
                f"got n_samples={n_samples}, batch_size={batch_size}, grid={grid}, escalate={escalate}"
            )
        if not (sigma > 0 and 0 < holdout < 1 and alpha > 0 and 0 <= hard_weight <= 1):
            raise FmkitError(
                f"ReLabelDistiller needs sigma > 0, 0 < holdout < 1, alpha > 0, 0 <= hard_weight <= 1; "
                f"got sigma={sigma}, holdout={holdout}, alpha={alpha}, hard_weight={hard_weight}"
            )
        if mode not in ("residual", "decoded"):
            raise FmkitError(f"mode must be 'residual' or 'decoded', got {mode!r}")
        if not isinstance(reference, Tensor) and (not isinstance(reference, str) or reference not in ("prior", "gray")):
            shown = reference if isinstance(reference, str) else type(reference).__name__
            raise FmkitError(f"reference must be 'prior', 'gray' or an image tensor (3, H, W), got {shown!r}")
        self.teacher, self.vae = teacher, vae
        self.n_samples, self.sigma, self.seed, self.batch_size = n_samples, float(sigma), seed, batch_size
        self.holdout, self.alpha, self.grid, self.hard_weight = holdout, float(alpha), grid, float(hard_weight)
        self.mode, self.reference, self.escalate = mode, reference, escalate

    @contextlib.contextmanager
    def _vae_mode(self) -> Iterator[None]:
        if isinstance(self.vae, nn.Module):
            with eval_mode(self.vae):
                yield
        else:
            with torch.no_grad():
                yield

    def _decode(self, z: Tensor, size: tuple[int, int]) -> Tensor:
        return _resize(self.vae.decode(z).detach().to("cpu", torch.float32), size)

    def _project(self, x: Tensor) -> _Projection:
        """Step 1 for a checked image x (3, H, W); call inside :meth:`_vae_mode`."""
        hw = (x.shape[1], x.shape[2])
        side = getattr(self.vae, "size", None)
        vae_hw = (int(side), int(side)) if side is not None else hw
        device = _device(self.vae)
        mu, logvar = self.vae.encode(_resize(x[None], vae_hw).to(device))
        recon = self._decode(mu, hw)
        base = x[None] if self.mode == "residual" else recon
        return _Projection(x, hw, mu, torch.exp(0.5 * logvar), recon, base, device)

    def _draw(self, proj: _Projection, n: int, scale: float, gen: torch.Generator) -> Iterator[Tensor]:
        """Step 2: ``n`` neighbours (B, 3, H, W) of the projected image at ``scale`` posterior stds, in
        batches of ``batch_size``, from latents drawn with ``gen`` (call inside :meth:`_vae_mode`)."""
        mu = proj.mu
        for start in range(0, n, self.batch_size):
            eps = torch.randn((min(self.batch_size, n - start), *mu.shape[1:]), generator=gen)
            decoded = self._decode(mu + scale * proj.std * eps.to(proj.device, mu.dtype), proj.hw)
            yield (proj.x[None] + decoded - proj.recon).clamp(0, 1) if self.mode == "residual" else decoded

    def neighbours(self, image: Tensor | np.ndarray, n: int = 8) -> Neighbours:
        """The first ``n`` neighbours :meth:`explain` draws for ``image`` (3, H, W) in [0, 1], for display.

        For n <= ``n_samples`` these are exactly the explanation's first n neighbours (its first
        round: scale ``sigma``, latents from a generator seeded with ``seed``); a larger n draws
        further latents at the same scale. Escalation rounds are never shown.
        Returns the neighbour images (n, 3, H, W), the teacher's fake probabilities (n,) and their
        re-labels (n,): 1 where the teacher's label differs from its label on the image.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise FmkitError(f"neighbours needs n >= 1, got {n!r}")
        x = check_image(image)
        gen = torch.Generator().manual_seed(self.seed)
        batches: list[Tensor] = []
        with self._vae_mode():
            proj = self._project(x)
            label = int(float(teacher_probs(self.teacher, x[None])[0]) >= 0.5)
            for neigh in self._draw(proj, max(n, self.n_samples), self.sigma, gen):
                batches.append(neigh)
                if sum(len(b) for b in batches) >= n:
                    break
        images = torch.cat(batches)[:n]
        probs = teacher_probs(self.teacher, images, self.batch_size)
        return Neighbours(images, probs.numpy(), ((probs.numpy() >= 0.5).astype(np.int64) != label).astype(np.int64))

    def explain(self, image: Tensor | np.ndarray) -> Explanation:
        """Explain the teacher's decision on one image (3, H, W) in [0, 1]; see the module docstring."""
        x = check_image(image)
        gen = torch.Generator().manual_seed(self.seed)
        with self._vae_mode():
            proj = self._project(x)
            hw = proj.hw
            grid = min(self.grid, *hw)
            if isinstance(self.reference, Tensor):
                ref = check_image(self.reference, "reference")
                if tuple(ref.shape[1:]) != hw:
                    raise FmkitError(f"reference image is {tuple(ref.shape)}, the explained image {tuple(x.shape)}")
                ref = ref[None]
            elif self.reference == "gray":
                ref = torch.full_like(x[None], 0.5)
            else:
                ref = self._decode(torch.zeros_like(proj.mu), hw)
            p_img, p_recon = teacher_probs(self.teacher, torch.cat([x[None], proj.recon])).tolist()
            label = int(p_img >= 0.5)
            feats: list[Tensor] = []
            probs: list[Tensor] = []

            def draw(n: int, scale: float) -> None:
                for neigh in self._draw(proj, n, scale, gen):
                    feats.append(F.adaptive_avg_pool2d(neigh - proj.base, grid).flatten(1).double())
                    probs.append(teacher_probs(self.teacher, neigh, self.batch_size))

            sigmas = [self.sigma]
            draw(self.n_samples, self.sigma)
            for k in range(1, self.escalate + 1):
                flips = int(((torch.cat(probs) >= 0.5).long() != label).sum())
                if 0 < flips < sum(len(p) for p in probs):
                    break
                sigmas.append(self.sigma * 2**k)
                draw(math.ceil(self.n_samples / 4), sigmas[-1])
        p = torch.cat(probs).numpy()
        features = torch.cat(feats).numpy()
        relabel = ((p >= 0.5).astype(np.int64) != label).astype(np.int64)
        soft = 1.0 - decision_scores(p, label)
        target = self.hard_weight * relabel + (1.0 - self.hard_weight) * soft
        student, tau, hold = self._fit(features, target)
        q_hold = student.predict_proba(features[hold] / tau)[:, 1]
        with warnings.catch_warnings():  # a one-class holdout (no flips) has a NaN AUC, as documented
            warnings.simplefilter("ignore", MetricWarning)
            fidelity = {
                "acc": accuracy(q_hold, relabel[hold]),
                "auc": auc(q_hold, relabel[hold]),
                "n": float(len(hold)),
            }
        weights = torch.from_numpy(student.coef_[0] / tau).view(3, grid, grid)
        content = F.adaptive_avg_pool2d(ref - x[None], grid)[0].double()
        evidence = (weights * content).sum(0)
        full = F.interpolate(evidence[None, None], size=hw, mode="nearest")[0, 0]
        return Explanation(
            map=full.numpy(),
            label=label,
            prob=float(p_img),
            fidelity=fidelity,
            n_flipped=int(relabel.sum()),
            n_samples=len(p),
            sigmas=tuple(sigmas),
            recon_prob=float(p_recon),
            weights=weights.numpy(),
        )

    def _fit(self, features: np.ndarray, target: np.ndarray) -> tuple[LogisticRegression, float, np.ndarray]:
        """The student fit on the non-held-out neighbours: (model, feature scale τ, held-out indices)."""
        n = len(target)
        order = np.random.default_rng(self.seed).permutation(n)
        n_hold = min(max(1, round(self.holdout * n)), n - 2)
        hold, train = order[:n_hold], order[n_hold:]
        tau = float(features[train].std())
        tau = tau if tau > 0 else 1.0
        xs = features[train] / tau
        q = target[train]
        # cross-entropy on soft targets: each neighbour once as "flip" (weight q), once as "no flip" (1 − q)
        student = LogisticRegression(C=1.0 / self.alpha, max_iter=2000)
        student.fit(
            np.concatenate([xs, xs]),
            np.r_[np.ones(len(q)), np.zeros(len(q))],
            sample_weight=np.r_[q, 1.0 - q] + 1e-12,
        )
        return student, tau, hold
