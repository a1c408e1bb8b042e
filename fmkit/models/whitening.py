r"""Feature whitening: ZCA decorrelation (IterNorm or exact), then a concept-aligned rotation.

The Concept Whitening layer of Chen, Bei & Rudin (2020), "Concept whitening for
interpretable image recognition" (Nature Machine Intelligence 2, 772-782), built on the
ZCA whitening of IterNorm (Huang et al., CVPR 2019). :class:`FeatureWhitening` replaces one
BatchNorm of a CNN: input x of shape (N, C) or (N, C, *S) (``S`` = spatial dims), output
z = R x̂ of the same shape and dtype. How well it whitens real features (whitening error
and correlation per mode, T and group size) is measured in ``docs/measurements.md``.

**Decorrelation.** x is flattened to a C × m matrix X (m = N·∏S) and centred,
X_c = X − μ. Per group of ``group_size`` channels (one group of C channels by default):

.. math::
    Σ = εI + \tfrac1m X_c X_cᵀ,\quad Σ_N = Σ / \operatorname{tr}Σ,\quad
    P_0 = I,\quad P_{k+1} = \tfrac32 P_k − \tfrac12 P_k^3 Σ_N\ (k < T),\quad
    W = P_T / \sqrt{\operatorname{tr}Σ},\quad x̂ = W X_c.

``mode="exact"`` replaces the Newton iterations by the exact ZCA matrix
W = U Λ^{-1/2} Uᵀ from the eigendecomposition Σ = U Λ Uᵀ, back-propagated with the
Daleckii-Krein formula (stable even for repeated eigenvalues). In training, running
estimates μ̄ ← (1−α)μ̄ + αμ, Σ̄ ← the covariance of the mixture (1−α)·(old μ̄, Σ̄) + α·(μ, Σ)
and W̄ ← (1−α)W̄ + αW (α = ``momentum``) are kept. Eval uses x̂ = W_eval (X − μ̄) with, by ``statistics``,
W_eval = Σ̄^{-1/2} (``"covariance"``, the default: the inverse square root of the running
population covariance, exact, float64) or W_eval = W̄ (``"matrix"``: IterNorm's running
average of the batch whitening matrices, which whitens held-out features less well, see
``docs/measurements.md``). A training batch with fewer columns m than channels per group
has a singular covariance; the layer warns once.

**Numerical safety.** All whitening math runs in float64 (Σ included) with autocast
disabled; the output is cast back to the input's dtype. The Newton iterations run in their
coupled form (Higham 1997): Y_0 = Σ_N, T_k = ½(3I − P_k Y_k), Y_{k+1} = Y_k T_k,
P_{k+1} = T_k P_k, with both iterates symmetrised, M ← (M + Mᵀ)/2; in exact arithmetic
Y_k = Σ_N P_k and P_k is IterNorm's P_k above. A training batch whose iterates are not
finite is whitened by the exact mode instead and counted in the buffer ``fallbacks``.
Why the coupled form and a float64 Σ: ``docs/measurements.md``.

**Whitening error.** Each training forward stores, in the buffer ``whitening_error``,
e = ‖W Σ Wᵀ − I‖_F / √C (summed over groups). For the iterative mode W is a polynomial
in Σ, so e is the root-mean-square over the C eigen-directions of (whitened variance − 1):
e = 0.3 means the directions are whitened to variances about 30 % off 1.

**Constraint.** The output is z = R x̂ with R an orthogonal C × C matrix (block diagonal,
one block per group), a buffer initialised to I and not trained by back-prop.
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
Use :meth:`FeatureWhitening.accumulate_concept` for each concept's examples, then
:meth:`FeatureWhitening.update_rotation`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Mode = Literal["iterative", "exact"]
Statistics = Literal["covariance", "matrix"]


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
        statistics: what eval mode whitens with: ``"covariance"`` (Σ̄^{-1/2} of the running
            covariance) or ``"matrix"`` (the running average W̄ of the batch matrices).
        group_size: G; whiten (and rotate) each group of G consecutive channels on its own.
            None: one group of all C channels. Cost is O(C·G·m) instead of O(C²·m) and
            correlations between groups are left as they are.

    Shapes: input (N, C) or (N, C, *S) such as (N, C, H, W); output the same shape and dtype.

    Buffers: ``running_mean`` (C,), ``running_wm`` and ``running_cov`` (C/G, G, G), ``rotation`` R (C/G, G, G),
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
        statistics: Statistics = "covariance",
    ) -> None:
        super().__init__()
        group_size = group_size or num_features
        if mode not in ("iterative", "exact"):
            raise ValueError(f"mode must be 'iterative' or 'exact', got {mode!r}")
        if statistics not in ("covariance", "matrix"):
            raise ValueError(f"statistics must be 'covariance' or 'matrix', got {statistics!r}")
        self.statistics = statistics
        self._eval_cache: tuple[tuple[int, int], Tensor] | None = None
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
        self.register_buffer("running_cov", eye.clone())
        self.register_buffer("rotation", eye)
        self.register_buffer("whitening_error", torch.tensor(float("nan")))
        self.register_buffer("fallbacks", torch.zeros((), dtype=torch.long))
        # Concept statistics: row j of group g sums x̂ at the arg-max of axis g·G + j.
        self.register_buffer("concept_sum", torch.zeros_like(eye), persistent=False)
        self.register_buffer("concept_count", torch.zeros(self.num_groups, group_size), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, mode={self.mode}, T={self.T}, eps={self.eps}, "
            f"momentum={self.momentum}, group_size={self.group_size}, statistics={self.statistics}"
        )

    # -- whitening -----------------------------------------------------------------------

    def _grouped(self, x: Tensor) -> Tensor:
        """(N, C, *S) or (N, C) → (g, G, m), m = N·∏S, as float64."""
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input (N, {self.num_features}, ...), got {tuple(x.shape)}")
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
                    warnings.warn(
                        f"FeatureWhitening: a training batch gives {xg.shape[-1]} feature columns "
                        f"(N·h·w) for groups of {self.group_size} channels: its covariance is singular "
                        "and the running whitening will not whiten new images; use larger batches or "
                        "images, an earlier layer, or a smaller group_size",
                        stacklevel=2,
                    )
                mean = xg.mean(-1, keepdim=True)
                xc = xg - mean
                eye = torch.eye(self.group_size, dtype=torch.float64, device=x.device)
                sigma = self.eps * eye + xc @ xc.transpose(-1, -2) / xc.shape[-1]
                wm = self._whitening_matrix(sigma)
                self._update_running(mean.reshape(-1), wm, sigma)
            else:
                xc = xg - self.running_mean.reshape(self.num_groups, self.group_size, 1).double()
                wm = self.eval_matrix()
            out = (self.rotation.double() @ wm) @ xc
        return out.reshape(x.shape[1], x.shape[0], *x.shape[2:]).transpose(0, 1).to(x.dtype)

    @torch.no_grad()
    def eval_matrix(self) -> Tensor:
        """W_eval (g, G, G), float64: Σ̄^{-1/2} (``statistics="covariance"``) or W̄ (``"matrix"``).

        Σ̄^{-1/2} is computed once per state of ``running_cov`` (its in-place version and
        storage), not once per eval batch.
        """
        if self.statistics == "matrix":
            return self.running_wm.double()
        key = (self.running_cov._version, self.running_cov.data_ptr())
        if self._eval_cache is None or self._eval_cache[0] != key:
            self._eval_cache = (key, _InvSqrtEigh.apply(_sym(self.running_cov.double())))
        return self._eval_cache[1]

    @torch.no_grad()
    def _update_running(self, mean: Tensor, wm: Tensor, sigma: Tensor) -> None:
        # Σ̄, μ̄ ← the covariance and mean of the mixture (1 − α)·old + α·batch (exact, any α)
        shape = (self.num_groups, self.group_size, 1)
        old_mean = self.running_mean.reshape(shape).to(sigma.dtype)
        batch_mean = mean.detach().reshape(shape)
        new_mean = old_mean + self.momentum * (batch_mean - old_mean)
        d_old, d_batch = old_mean - new_mean, batch_mean - new_mean
        self.running_cov.copy_(
            (1 - self.momentum) * (self.running_cov.to(sigma.dtype) + d_old @ d_old.transpose(-1, -2))
            + self.momentum * (sigma.detach() + d_batch @ d_batch.transpose(-1, -2))
        )
        self.running_mean.copy_(new_mean.reshape(-1))
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
            xhat = (self.eval_matrix()[g] @ xg).reshape(self.group_size, x.shape[0], -1)
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
