r"""Feature whitening: ZCA decorrelation (IterNorm) followed by a concept-aligned rotation.

This is the Concept Whitening layer of Chen, Bei & Rudin (2020), "Concept whitening for
interpretable image recognition" (Nature Machine Intelligence 2, 772-782), built on the
ZCA whitening of IterNorm (Huang et al., CVPR 2019). It replaces one BatchNorm of a CNN.

**Decorrelation.** A batch x of shape (N, C, *S) (``S`` = spatial dims, possibly none) is
flattened to a C × m matrix X (m = N·∏S) and centred, X_c = X − μ. Per group of
``group_size`` channels (one group of C channels by default):

.. math::
    Σ = εI + \tfrac1m X_c X_cᵀ,\quad Σ_N = Σ / \operatorname{tr}Σ,\quad
    P_0 = I,\quad P_{k+1} = \tfrac32 P_k − \tfrac12 P_k^3 Σ_N\ (k < T),\quad
    W = P_T / \sqrt{\operatorname{tr}Σ},\quad x̂ = W X_c.

``mode="exact"`` replaces the Newton iterations by the exact ZCA matrix
W = U Λ^{-1/2} Uᵀ from the eigendecomposition Σ = U Λ Uᵀ, back-propagated with the
Daleckii-Krein formula (stable even for repeated eigenvalues). In training, running
estimates μ̄ ← (1−α)μ̄ + αμ and W̄ ← (1−α)W̄ + αW (α = ``momentum``) are kept; eval
uses x̂ = W̄ (X − μ̄).

**Numerical safety.** All whitening math runs in float64 with autocast disabled; the
output is cast back to the input's dtype. The Newton iterations run in their coupled
form (Higham 1997): Y_0 = Σ_N, T_k = ½(3I − P_k Y_k), Y_{k+1} = Y_k T_k,
P_{k+1} = T_k P_k, with both iterates symmetrised, M ← (M + Mᵀ)/2. In exact arithmetic
Y_k = Σ_N P_k and P_k is exactly IterNorm's P_k above; in floating point the uncoupled
recursion amplifies rounding errors by about κ(Σ)/4 per step near convergence, and on
ill-conditioned features it reached NaN within 30 steps even in float64, while the
coupled one stayed finite and kept converging (tested up to T = 100). Σ itself must be
float64: a float32 covariance of rank-deficient features has negative eigenvalues below
−ε, on which the iteration diverges.

**Whitening error.** Each training forward stores, in the buffer ``whitening_error``,
e = ‖W Σ Wᵀ − I‖_F / √C (summed over groups). For the iterative mode W is a polynomial
in Σ, so e is the root-mean-square over the C eigen-directions of (whitened variance − 1):
e = 0.3 means the directions are whitened to variances about 30 % off 1.

**Constraint.** The output is z = R x̂ with R an orthogonal C × C matrix (block diagonal,
one G × G block per group), a buffer initialised to I and not trained by back-prop.
Axis k is aligned with concept k by maximising (Concept Whitening, Algorithm 1)

.. math::
    J(R) = \sum_k \frac{1}{n_k} \sum_{i ∈ \text{concept } k} \max_{s} (R x̂_i)_{k,s},

on the Stiefel manifold: with G = −∂J/∂R (row k: minus the mean of x̂_i at the arg-max
position of axis k), A = G Rᵀ − R Gᵀ and the Cayley transform
Q(τ) = (I + τ/2·A)^{-1} (I − τ/2·A), R ← Q(τ) R. The step is an ascent direction of J
(dJ/dτ at 0 is ½‖A‖²_F ≥ 0). τ starts at ``step / ‖A‖_F`` (so no rotation angle
exceeds 2·atan(step/2)) and is halved until the objective improves. The objective
compared is J linearised at the current arg-max positions; the true J (max over
positions) is never below it, so an accepted step never lowers the true J.
Use :meth:`accumulate_concept` for each concept's examples, then :meth:`update_rotation`.

**How well it whitens (measured).** Features: the input of timm ``resnet18``
(pretrained=False, so random weights) ``layer4.1.bn2``, C = 512, the network in train
mode after 20 warm-up forwards; images are random noise or crops of scikit-image photos
(astronaut, coffee, chelsea, ...). e is the whitening error above; |r| the mean
|off-diagonal correlation| of the layer's output (the input's in the last column):

==========================================  =======  =======  =======  =====  ========
features (m = columns of X)                 exact e  T=5 e    T=10 e   T=20 e input |r|
==========================================  =======  =======  =======  =====  ========
noise, 32 × 224 px (m = 1568)               7e-15    0.91     0.15     5e-15  0.050
photos, 32 × 224 px (m = 1568)              1e-14    0.92     0.27     1e-14  0.083
photos, post-ReLU layer4 output (m = 1568)  1e-13    0.95     0.62     2e-13  0.176
photos, 16 × 112 px (m = 256 < C)           6e-11    0.93     0.73     0.49   0.098
==========================================  =======  =======  =======  =====  ========

Output |r| for the same rows: exact 0.000 / 0.000 / 0.000 / 0.035; iterative T = 10
0.005 / 0.009 / 0.025 / 0.037. So the default T = 10 under-whitens the small-eigenvalue
directions (its e of 0.15-0.73 says they are left with variances well below 1: each
Newton step scales them by at most 1.5) but still removes most correlation; T = 20 or
the exact mode whiten to rounding error when m > C. With m < C the covariance is
rank-deficient: the exact mode whitens the data subspace (the ε-regularised rest holds
no data) and no mode can make the sample correlations vanish. Group-wise whitening
(G = 64, T = 10) whitens each group almost exactly (e ≤ 5e-3) but leaves the
cross-group correlation (output |r| 0.027-0.054). In eval, the running W̄ after 30
batches applied to a new batch of photo features gave ‖cov(x̂) − I‖_F/√C = 1.2 (exact)
and 0.84 (iterative, T = 10), |r| 0.026 for both: the exact inverse square root
fully amplifies the small-eigenvalue directions, whose batch estimates are noisy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Mode = Literal["iterative", "exact"]


def _sym(a: Tensor) -> Tensor:
    """(A + Aᵀ)/2 over the last two dims."""
    return 0.5 * (a + a.transpose(-1, -2))


class _InvSqrtEigh(torch.autograd.Function):
    """Σ^{-1/2} of a batch of SPD matrices (g, G, G) by eigendecomposition, in float64.

    Backward (Daleckii-Krein): dL/dΣ = U [(Uᵀ Ḡ U) ∘ K] Uᵀ with Ḡ the output gradient and
    K_ij = (λ_i^{-1/2} − λ_j^{-1/2}) / (λ_i − λ_j) = −1 / (s_i s_j (s_i + s_j)), s = √λ:
    no division by eigenvalue gaps, so it is stable for repeated eigenvalues. K is
    symmetric, so a symmetric Ḡ gives a symmetric dL/dΣ.
    """

    @staticmethod
    def forward(ctx, sigma: Tensor) -> Tensor:
        lam, u = torch.linalg.eigh(sigma)
        s = lam.clamp_min(torch.finfo(lam.dtype).tiny).sqrt()
        ctx.save_for_backward(s, u)
        return (u / s.unsqueeze(-2)) @ u.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        s, u = ctx.saved_tensors
        k = -1.0 / (s.unsqueeze(-1) * s.unsqueeze(-2) * (s.unsqueeze(-1) + s.unsqueeze(-2)))
        return u @ ((u.transpose(-1, -2) @ grad @ u) * k) @ u.transpose(-1, -2)


@dataclass(frozen=True)
class RotationStep:
    """Result of :meth:`FeatureWhitening.update_rotation`.

    ``before``/``after``: the (linearised) concept objective J summed over groups before
    and after the step; ``taus``: the accepted step size per group (0.0: no step taken).
    """

    before: float
    after: float
    taus: tuple[float, ...]


class FeatureWhitening(nn.Module):
    """ZCA whitening (IterNorm or exact) plus an orthogonal concept rotation; see module doc.

    Args:
        num_features: C, the channel count (dim 1 of the input).
        T: Newton iterations of the iterative mode.
        eps: ε added to the covariance diagonal.
        momentum: α of the running mean and running whitening matrix.
        mode: ``"iterative"`` (IterNorm) or ``"exact"`` (float64 eigendecomposition).
        group_size: G; whiten (and rotate) each group of G consecutive channels on its own.
            None: one group of all C channels. Cost is O(C·G·m) instead of O(C²·m) and
            correlations between groups are left as they are.

    Shapes: input (N, C) or (N, C, *S) such as (N, C, H, W); output the same shape and dtype.

    Buffers: ``running_mean`` (C,), ``running_wm`` (C/G, G, G), ``rotation`` R (C/G, G, G),
    ``whitening_error`` (scalar, NaN until the first training forward), ``fallbacks``
    (training batches the iterative mode handed to the exact one, non-finite iterates).
    """

    def __init__(
        self,
        num_features: int,
        *,
        T: int = 10,
        eps: float = 1e-5,
        momentum: float = 0.1,
        mode: Mode = "iterative",
        group_size: int | None = None,
    ) -> None:
        super().__init__()
        group_size = group_size or num_features
        if mode not in ("iterative", "exact"):
            raise ValueError(f"mode must be 'iterative' or 'exact', got {mode!r}")
        if num_features % group_size:
            raise ValueError(f"group_size {group_size} must divide num_features {num_features}")
        if T < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        self.num_features, self.T, self.eps, self.momentum = num_features, T, eps, momentum
        self.mode, self.group_size = mode, group_size
        self.num_groups = num_features // group_size
        self._warned_rank = False
        eye = torch.eye(group_size).expand(self.num_groups, -1, -1).clone()
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_wm", eye.clone())
        self.register_buffer("rotation", eye)
        self.register_buffer("whitening_error", torch.tensor(float("nan")))
        self.register_buffer("fallbacks", torch.zeros((), dtype=torch.long))
        # Concept statistics: row j of group g sums x̂ at the arg-max of axis g·G + j.
        self.register_buffer("concept_sum", torch.zeros_like(eye), persistent=False)
        self.register_buffer(
            "concept_count", torch.zeros(self.num_groups, group_size), persistent=False
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, mode={self.mode}, T={self.T}, eps={self.eps}, "
            f"momentum={self.momentum}, group_size={self.group_size}"
        )

    # -- whitening -----------------------------------------------------------------------

    def _grouped(self, x: Tensor) -> Tensor:
        """(N, C, *S) or (N, C) → (g, G, m), m = N·∏S, as float64."""
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"expected input (N, {self.num_features}, ...), got {tuple(x.shape)}"
            )
        return x.double().transpose(0, 1).reshape(self.num_groups, self.group_size, -1)

    def _whitening_matrix(self, sigma: Tensor) -> Tensor:
        """W for a batch of covariances (g, G, G), float64, differentiable.

        The iterative mode falls back to the exact one for a batch whose Newton iterates
        are not finite, and counts it in the ``fallbacks`` buffer.
        """
        if self.mode == "exact":
            return _InvSqrtEigh.apply(sigma)
        wm = self._newton_matrix(sigma)
        if not bool(torch.isfinite(wm).all()):
            self.fallbacks += 1
            return _InvSqrtEigh.apply(sigma)
        return wm

    def _newton_matrix(self, sigma: Tensor) -> Tensor:
        """IterNorm's W = P_T / √tr Σ, by the coupled Newton iterations (module docstring)."""
        trace = sigma.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
        eye = torch.eye(self.group_size, dtype=sigma.dtype, device=sigma.device)
        y, p = sigma / trace, eye.expand_as(sigma)  # Y_0 = Σ_N, P_0 = I
        for _ in range(self.T):
            t = 1.5 * eye - 0.5 * p @ y  # coupled form: Y_k = Σ_N P_k, so P_{k+1} = P_k T_k
            y, p = _sym(y @ t), _sym(t @ p)
        return p / trace.sqrt()

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            xg = self._grouped(x)
            if self.training:
                if xg.shape[-1] < self.group_size and not self._warned_rank:
                    self._warned_rank = True
                    warnings.warn(f"FeatureWhitening: a training batch gives {xg.shape[-1]} feature columns "
                                  f"(N·h·w) for groups of {self.group_size} channels: its covariance is singular "
                                  "and the running whitening will not whiten new images; use larger batches or "
                                  "images, an earlier layer, or a smaller group_size", stacklevel=2)
                mean = xg.mean(-1, keepdim=True)
                xc = xg - mean
                eye = torch.eye(self.group_size, dtype=torch.float64, device=x.device)
                sigma = self.eps * eye + xc @ xc.transpose(-1, -2) / xc.shape[-1]
                wm = self._whitening_matrix(sigma)
                self._update_running(mean.reshape(-1), wm, sigma)
            else:
                xc = xg - self.running_mean.reshape(self.num_groups, self.group_size, 1).double()
                wm = self.running_wm.double()
            out = (self.rotation.double() @ wm) @ xc
        return out.reshape(x.shape[1], x.shape[0], *x.shape[2:]).transpose(0, 1).to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: Tensor, wm: Tensor, sigma: Tensor) -> None:
        self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
        self.running_wm.lerp_(wm.detach().to(self.running_wm.dtype), self.momentum)
        eye = torch.eye(self.group_size, dtype=sigma.dtype, device=sigma.device)
        err = wm @ sigma @ wm.transpose(-1, -2) - eye
        self.whitening_error.copy_((err.square().sum() / self.num_features).sqrt())

    # -- concept rotation ----------------------------------------------------------------

    @torch.no_grad()
    def accumulate_concept(self, concept: int, x: Tensor) -> None:
        """Add examples of ``concept`` (the axis it is aligned with) to the rotation statistics.

        ``x`` is this layer's *input* for the concept's examples, (N, C, *S) or (N, C); it
        is whitened with the running statistics (as in eval mode). For each example the
        arg-max position s* of axis k in z = R x̂ is found and x̂[:, s*] is accumulated:
        that is ∂/∂R_k of the max-pooled activation, the gradient the Cayley step uses.
        """
        if not 0 <= concept < self.num_features:
            raise ValueError(f"concept axis must be in [0, {self.num_features}), got {concept}")
        g, j = divmod(concept, self.group_size)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xg = self._grouped(x)[g] - self.running_mean.reshape(self.num_groups, -1, 1)[g].double()
            xhat = (self.running_wm[g].double() @ xg).reshape(self.group_size, x.shape[0], -1)
            z = torch.einsum("c,cns->ns", self.rotation[g, j].double(), xhat)
            best = z.argmax(-1)  # (N,)
            picked = xhat.gather(2, best.view(1, -1, 1).expand(self.group_size, -1, 1))
        self.concept_sum[g, j] += picked.squeeze(-1).sum(1).to(self.concept_sum.dtype)
        self.concept_count[g, j] += x.shape[0]

    @torch.no_grad()
    def update_rotation(self, step: float = 2.0, max_halvings: int = 30) -> RotationStep:
        """One Cayley-transform step of R towards the accumulated concepts; resets them.

        ``step`` sets the first τ = step / ‖A‖_F; τ is halved until the objective improves
        (at most ``max_halvings`` times, else R is kept for that group).
        """
        counts = self.concept_count.double()
        mean = self.concept_sum.double() / counts.clamp_min(1).unsqueeze(-1)  # = −G
        rot = self.rotation.double()
        rot = 1.5 * rot - 0.5 * rot @ rot.transpose(-1, -2) @ rot  # re-orthonormalise
        grad = -mean
        a = grad @ rot.transpose(-1, -2) - rot @ grad.transpose(-1, -2)
        norm = torch.linalg.matrix_norm(a)  # (g,)
        before = (rot * mean).sum((-1, -2))
        tau = torch.where(norm > 0, step / norm.clamp_min(1e-300), torch.zeros_like(norm))
        best, accepted = rot.clone(), torch.zeros_like(tau)
        todo = norm > 0
        eye = torch.eye(self.group_size, dtype=rot.dtype, device=rot.device)
        for _ in range(max_halvings):
            if not todo.any():
                break
            half = (0.5 * tau)[:, None, None] * a
            cand = torch.linalg.solve(eye + half, eye - half) @ rot
            better = todo & ((cand * mean).sum((-1, -2)) > before)
            best[better], accepted[better] = cand[better], tau[better]
            todo &= ~better
            tau = tau * 0.5
        self.rotation.copy_(best)
        self.concept_sum.zero_()
        self.concept_count.zero_()
        return RotationStep(
            before=before.sum().item(),
            after=(best * mean).sum().item(),
            taus=tuple(accepted.tolist()),
        )
