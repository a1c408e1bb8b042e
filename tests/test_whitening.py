"""FeatureWhitening: ZCA decorrelation (IterNorm / exact), running statistics, concept rotation."""

import pytest
import torch

from fmkit.models.whitening import FeatureWhitening, _InvSqrtEigh

C = 16


def correlated(n: int = 64, c: int = C, hw: int = 4, seed: int = 0) -> torch.Tensor:
    """(n, c, hw, hw) features sharing a strong common factor (mean |corr| ≈ 0.8).

    The mixing is fixed; ``seed`` draws the samples.
    """
    mix = torch.randn(c, c, generator=torch.Generator().manual_seed(12345)) + 2.0
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, hw, hw, c, generator=g) @ mix.T + 3.0
    return z.permute(0, 3, 1, 2).contiguous()


def ill_conditioned(n: int = 128, c: int = C, seed: int = 0) -> torch.Tensor:
    """Post-ReLU (n, c, 3, 3) features dominated by three directions (condition ~1e9)."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([100.0, 50.0, 20.0] + [1e-3] * (c - 3))
    basis = torch.linalg.qr(torch.randn(c, c, generator=g))[0]
    z = torch.randn(n, 3, 3, c, generator=g) * scales @ basis.T
    return torch.relu(z).permute(0, 3, 1, 2).contiguous()


def channels(x: torch.Tensor) -> torch.Tensor:
    """(N, C, *S) → (C, m)."""
    return x.transpose(0, 1).reshape(x.shape[1], -1).double()


def mean_offdiag_corr(x: torch.Tensor) -> float:
    corr = torch.corrcoef(channels(x))
    return corr[~torch.eye(len(corr), dtype=torch.bool)].abs().mean().item()


def cov_error(x: torch.Tensor) -> float:
    """‖cov(x) − I‖_F / √C over channels."""
    f = channels(x)
    f = f - f.mean(1, keepdim=True)
    cov = f @ f.T / f.shape[1]
    return ((cov - torch.eye(len(cov), dtype=cov.dtype)).norm() / len(cov) ** 0.5).item()


@pytest.mark.parametrize(("mode", "limit"), [("exact", 0.05), ("iterative", 0.1)])
def test_training_output_is_decorrelated(mode, limit):
    x = correlated()
    layer = FeatureWhitening(C, mode=mode).train()
    y = layer(x)
    before, after = mean_offdiag_corr(x), mean_offdiag_corr(y)
    msg = f"{mode}: mean |off-diagonal corr| before {before:.4f}, after {after:.4f}"
    assert before > 0.5, msg
    assert after < limit and after < before / 10, msg
    assert torch.isfinite(layer.whitening_error)
    if mode == "exact":
        assert after < 1e-3, msg
        assert cov_error(y) < 1e-3


def test_iterative_converges_to_exact_and_reports_its_error():
    x = correlated(c=8)
    exact = FeatureWhitening(8, mode="exact")
    y_exact = exact(x)
    errors = []
    for T in (3, 10, 60):
        layer = FeatureWhitening(8, mode="iterative", T=T)
        y = layer(x)
        errors.append(layer.whitening_error.item())
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[0] > 0.1  # few Newton steps under-whiten, and the buffer says so
    assert errors[2] < 1e-6
    assert torch.allclose(y, y_exact, atol=1e-4)


def test_whitening_error_is_measured_in_training_only():
    layer = FeatureWhitening(C, T=3)
    assert torch.isnan(layer.whitening_error)
    layer(correlated())
    err = layer.whitening_error.item()
    assert 0 < err < 10
    layer.eval()(correlated(seed=1))
    assert layer.whitening_error.item() == err


@pytest.mark.parametrize("statistics", ["covariance", "matrix"])
@pytest.mark.parametrize("mode", ["exact", "iterative"])
def test_eval_uses_running_statistics(mode, statistics):
    layer = FeatureWhitening(C, mode=mode, momentum=0.1, statistics=statistics).train()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(correlated(seed=0))
    for k in ("running_mean", "running_wm", "running_cov"):
        assert not torch.equal(layer.state_dict()[k], before[k]), f"{k} not updated in train"
    for seed in range(1, 60):
        layer(correlated(seed=seed))
    layer.eval()
    frozen = {k: v.clone() for k, v in layer.state_dict().items()}

    x = correlated(seed=100) * 5.0 + 7.0  # other statistics than training
    y = layer(x)
    for k, v in layer.state_dict().items():
        assert torch.equal(v, frozen[k]), f"{k} changed in eval"
    xc = channels(x).float() - layer.running_mean[:, None]
    wm = layer.running_wm[0]
    if statistics == "covariance":  # the symmetric (ZCA) inverse square root of the running covariance
        lam, u = torch.linalg.eigh(layer.running_cov[0].double())
        wm = (u @ torch.diag(lam.rsqrt()) @ u.T).float()
    manual = (layer.rotation[0] @ wm @ xc).reshape(C, x.shape[0], 4, 4)
    assert torch.allclose(y, manual.transpose(0, 1), atol=1e-4)
    assert torch.allclose(layer(x[:3]), y[:3], atol=1e-5)  # no dependence on the batch
    assert cov_error(y) > 1.0  # the scaled batch is not whitened by its own statistics
    assert not torch.allclose(layer.train()(x[:8])[:3], layer.train()(x)[:3], atol=1e-3)

    layer.eval()
    fresh = correlated(seed=200)  # same distribution as training: whitened by running stats
    before, after = mean_offdiag_corr(fresh), mean_offdiag_corr(layer(fresh))
    assert after < 0.1, f"eval: mean |off-diagonal corr| before {before:.3f}, after {after:.3f}"


@pytest.mark.parametrize("mode", ["exact", "iterative"])
def test_gradients_flow_to_the_input(mode):
    x = correlated().requires_grad_()
    layer = FeatureWhitening(C, mode=mode)
    y = layer(x)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().max() > 1e-3


def test_exact_backward_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    spd = (a @ a.mT / 8 + 0.1 * torch.eye(5, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: _InvSqrtEigh.apply(0.5 * (s + s.mT)), (spd,))
    # repeated eigenvalues: the gradient stays finite (autograd through eigh would not)
    eye = torch.eye(5, dtype=torch.float64).expand(1, 5, 5).clone().requires_grad_()
    _InvSqrtEigh.apply(eye).sum().backward()
    assert torch.isfinite(eye.grad).all()


@pytest.mark.parametrize("shape", [(32, C), (8, C, 5, 5), (4, C, 3, 4, 4)])
def test_shapes(shape):
    x = torch.randn(*shape)
    layer = FeatureWhitening(C, mode="exact")
    y = layer(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert cov_error(y) < 1e-3
    assert layer.eval()(x).shape == x.shape
    with pytest.raises(ValueError, match="expected input"):
        layer(torch.randn(4, C + 1))


@pytest.mark.parametrize("T", [10, 100])
def test_iterative_is_finite_on_ill_conditioned_features(T):
    x = ill_conditioned().requires_grad_()
    layer = FeatureWhitening(C, mode="iterative", T=T)
    y = layer(x)
    assert torch.isfinite(y).all() and torch.isfinite(layer.whitening_error)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all()
    before, after = mean_offdiag_corr(x), mean_offdiag_corr(y)
    assert after < before, f"T={T}: |corr| before {before:.3f} after {after:.3f}"
    if T == 100:
        assert layer.whitening_error.item() < 1e-3


def test_autocast_computes_in_full_precision():
    x = correlated().bfloat16()
    layer = FeatureWhitening(C, mode="exact")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    assert layer.whitening_error.item() < 1e-6
    assert mean_offdiag_corr(y.float()) < 0.05


def test_group_whitening_whitens_each_group():
    x = correlated()
    layer = FeatureWhitening(C, mode="exact", group_size=4)
    assert layer.rotation.shape == (4, 4, 4)
    y = layer(x)
    for g in range(4):
        assert cov_error(y[:, 4 * g : 4 * g + 4]) < 1e-3
    with pytest.raises(ValueError, match="divide"):
        FeatureWhitening(C, group_size=5)


def test_rotation_is_applied_to_the_output():
    x = correlated()
    layer = FeatureWhitening(C, mode="exact")
    assert torch.equal(layer.rotation[0], torch.eye(C))
    y = layer.eval()(x)
    perm = torch.randperm(C)
    layer.rotation.copy_(torch.eye(C)[perm][None])
    assert torch.allclose(layer(x), y[:, perm], atol=1e-5)


def concept_features(k: int, directions: torch.Tensor, n: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, C, 3, 3) noise with direction k planted at one random position per example."""
    g = torch.Generator().manual_seed(seed * 100 + k)
    x = 0.3 * torch.randn(n, C, 3, 3, generator=g)
    pos = torch.randint(0, 9, (n,), generator=g)
    x.view(n, C, 9)[torch.arange(n), :, pos] += 3.0 * directions[:, k]
    return x


def axis_activation(layer: FeatureWhitening, k: int, x: torch.Tensor) -> float:
    """Mean over examples of the max over space of output axis k."""
    return layer(x)[:, k].flatten(1).amax(1).mean().item()


def test_alignment_increases_concept_activation_and_keeps_r_orthogonal():
    torch.manual_seed(0)
    layer = FeatureWhitening(C, mode="exact")
    for _seed in range(10):
        layer(torch.randn(64, C, 3, 3))
    layer.eval()
    directions = torch.linalg.qr(torch.randn(C, C))[0]
    concepts = range(3)
    before = [axis_activation(layer, k, concept_features(k, directions, seed=99)) for k in concepts]
    for step in range(300):
        for k in concepts:
            layer.accumulate_concept(k, concept_features(k, directions, seed=step))
        result = layer.update_rotation()
        assert result.after >= result.before
    after = [axis_activation(layer, k, concept_features(k, directions, seed=99)) for k in concepts]
    msg = f"axis activation before {before}, after {after}"
    assert all(a > b + 1.5 for a, b in zip(after, before)), msg
    rot = layer.rotation[0]
    assert not torch.allclose(rot, torch.eye(C), atol=0.1)
    orth = (rot.T @ rot - torch.eye(C)).norm().item()
    assert orth < 1e-4, f"‖RᵀR − I‖ = {orth:.2e}"


def test_update_rotation_without_concepts_is_a_no_op():
    layer = FeatureWhitening(C)
    result = layer.update_rotation()
    assert torch.equal(layer.rotation[0], torch.eye(C))
    assert result.taus == (0.0,)


def test_concepts_in_other_groups_and_bad_axis():
    torch.manual_seed(0)
    layer = FeatureWhitening(C, mode="exact", group_size=8).eval()
    directions = torch.linalg.qr(torch.randn(C, C))[0]
    x = concept_features(9, directions)
    before = axis_activation(layer, 9, x)
    for _ in range(20):
        layer.accumulate_concept(9, x)
        layer.update_rotation()
    assert axis_activation(layer, 9, x) > before
    assert torch.equal(layer.rotation[0], torch.eye(8))  # group 0 has no concept
    with pytest.raises(ValueError, match="concept axis"):
        layer.accumulate_concept(C, x)


def test_state_dict_carries_statistics_and_rotation_only():
    keys = set(FeatureWhitening(C).state_dict())
    assert keys == {"running_mean", "running_wm", "running_cov", "rotation", "whitening_error", "fallbacks"}


@pytest.mark.parametrize("mode", ["exact", "iterative"])
def test_running_covariance_whitens_held_out_features_better_than_the_running_matrix(mode):
    """Small training batches give noisy batch covariances; averaging their inverse square roots
    (IterNorm's running W) is biased, the inverse square root of the running covariance is not."""
    layers = {s: FeatureWhitening(C, mode=mode, statistics=s, momentum=0.05).train() for s in ("covariance", "matrix")}
    for seed in range(120):
        x = correlated(n=2, seed=seed)  # 32 columns per batch for 16 channels
        for layer in layers.values():
            layer(x)
    held_out = correlated(n=512, seed=1000)
    errors = {s: cov_error(layer.eval()(held_out)) for s, layer in layers.items()}
    assert errors["covariance"] < 0.3, errors
    assert errors["covariance"] < 0.5 * errors["matrix"], errors


def test_iterative_mode_falls_back_to_exact_on_non_finite_iterates(monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(64, 8) @ torch.randn(8, 8)
    exact = FeatureWhitening(8, mode="exact").train()(x)
    layer = FeatureWhitening(8, mode="iterative").train()
    monkeypatch.setattr(layer, "_newton_matrix", lambda sigma: torch.full_like(sigma, float("nan")))
    out = layer(x)
    assert torch.isfinite(out).all() and int(layer.fallbacks) == 1
    assert torch.allclose(out, exact, atol=1e-5)


def test_warns_once_when_a_batch_cannot_be_whitened():
    layer = FeatureWhitening(16).train()
    with pytest.warns(UserWarning, match="singular"):
        layer(torch.randn(4, 16, 1, 2))  # 8 columns for 16 channels
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(torch.randn(4, 16, 1, 2))  # said once only
        FeatureWhitening(16).train()(torch.randn(8, 16, 2, 2))  # 32 columns: no warning


def test_eval_matrix_follows_every_change_of_the_running_covariance():
    layer = FeatureWhitening(C, momentum=0.5)
    layer(correlated(seed=0))
    first = layer.eval().eval_matrix().clone()
    assert layer.eval_matrix() is layer.eval_matrix(), "computed once per state"
    layer.train()(correlated(seed=1))
    assert not torch.equal(layer.eval().eval_matrix(), first), "a training step invalidates it"
    fresh = FeatureWhitening(C, momentum=0.5)
    fresh.load_state_dict(layer.state_dict())
    assert torch.allclose(fresh.eval().eval_matrix(), layer.eval_matrix())
