"""The ``vae`` model: shapes, loss, registry entry, recipe, its figures callback and a run through the engine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

import fmkit.models.vae  # noqa: F401  (registers "vae")
from fmkit.config import train_config
from fmkit.engine import train
from fmkit.engine.callbacks import CALLBACKS, VAEFigures, build_callbacks
from fmkit.engine.distributed import DistEnv
from fmkit.engine.hooks import TrainContext
from fmkit.errors import FmkitError
from fmkit.models.registry import create_model, model_callbacks
from fmkit.models.vae import ConvVAE

pytestmark = pytest.mark.usefixtures("one_thread")


class Blobs(Dataset):
    """Smooth random colour blobs (64 px): learnable by a tiny VAE, with the engine's interface."""

    def __init__(self, n: int, seed: int, size: int = 64) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bilinear")
        self.y = torch.zeros(n)
        self.video_ids = [f"s{seed}v{i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def tiny(**kw: object) -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE(**{"size": 64, "latent": 8, "width": 4, **kw})


def test_shapes_and_ranges() -> None:
    vae = tiny()
    x = Blobs(5, 0).x
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, 8)
    with torch.no_grad():
        out = vae.decode(torch.randn(5, 8))
    assert out.shape == (5, 3, 64, 64) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert vae(x).shape == (5, 3, 64, 64)
    torch.testing.assert_close(vae(x), vae.decode(mu))  # forward: the posterior mean, no sampling
    assert not vae.is_detector
    big = ConvVAE(size=128, latent=4, width=2)
    assert big.decode(torch.zeros(1, 4)).shape == (1, 3, 128, 128)
    with pytest.raises(FmkitError, match=r"\(N, 3, 64, 64\)"):
        vae.encode(torch.rand(2, 3, 32, 32))


def test_sample_is_seeded() -> None:
    vae = tiny()
    a = vae.sample(3, generator=torch.Generator().manual_seed(1))
    b = vae.sample(3, generator=torch.Generator().manual_seed(1))
    c = vae.sample(3, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 3, 64, 64) and not a.requires_grad
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_loss_reduction_is_per_image_sum_averaged_over_batch() -> None:
    vae = tiny(beta=0.5).eval()  # eval: z = mu, deterministic
    x = Blobs(4, 0).x
    out = vae.training_step((x, torch.zeros(4)))
    mu, logvar = vae.encode(x)
    recon = F.binary_cross_entropy(vae.decode(mu), x, reduction="sum") / 4
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum() / 4
    torch.testing.assert_close(out["recon"], recon, rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(out["kl"], kl, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["loss"], recon + 0.5 * kl, rtol=1e-4, atol=1e-2)


def test_loss_finite_and_decreasing() -> None:
    vae = tiny()
    x = Blobs(8, 0).x
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)

    def eval_loss() -> float:
        with torch.no_grad():
            return float(vae.eval().training_step((x, None))["loss"])

    floor = float(F.binary_cross_entropy(x, x, reduction="sum")) / len(x)  # BCE's minimum: the targets' entropy
    before = eval_loss()
    vae.train()
    for _ in range(80):
        out = vae.training_step((x, None))
        assert all(torch.isfinite(v) for v in out.values())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = eval_loss()
    assert after - floor < 0.8 * (before - floor), (floor, before, after)


def test_registry_entry_and_bad_sizes() -> None:
    vae = create_model("vae", size=64, latent=8)
    assert isinstance(vae, ConvVAE) and vae.latent == 8 and vae.fmkit_config == {"name": "vae", "size": 64, "latent": 8}
    assert model_callbacks("vae") == ("vae_figures",)
    assert CALLBACKS["vae_figures"] is VAEFigures
    assert [type(c) for c in build_callbacks("vae", {})] == [VAEFigures]
    for size in (32, 72, 256):
        with pytest.raises(FmkitError, match="multiple of 16"):
            create_model("vae", size=size)


def test_recipe_resolves_to_the_model() -> None:
    cfg = train_config("vae", None, ())
    assert cfg["model"]["name"] == "vae" and cfg["monitor"] == "val_loss"
    assert cfg["data"]["size"] == cfg["model"]["size"] == 64 and cfg["data"]["batch_size"] == 64
    vae = create_model(**cfg["model"])
    assert isinstance(vae, ConvVAE) and vae.size == cfg["data"]["size"]


def context(tmp_path: Path, model: torch.nn.Module, rank: int = 0) -> TrainContext:
    return TrainContext(
        config={"seed": 0},
        run_dir=tmp_path,
        data=None,
        datasets={"val": Blobs(6, 1)},
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        device=torch.device("cpu"),
        env=DistEnv(rank=rank, world_size=2 if rank else 1),
        epoch=1,
    )


def test_figures_are_deterministic_and_rank_zero_only(tmp_path: Path) -> None:
    vae = tiny().train()
    cb = VAEFigures(n=4, seed=3)
    ctx = context(tmp_path / "a", vae)
    cb.on_train_start(ctx)
    state = torch.get_rng_state()
    cb.on_epoch_end(ctx, {})
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched
    assert vae.training  # mode restored
    first = {n: (tmp_path / "a" / n).read_bytes() for n in ("reconstructions.png", "samples.png")}
    assert all(b.startswith(b"\x89PNG") for b in first.values())
    cb.on_epoch_end(ctx, {})
    assert {n: (tmp_path / "a" / n).read_bytes() for n in first} == first
    assert not list((tmp_path / "a").glob(".*tmp*"))  # atomic writes leave no temporary files
    cb.on_epoch_end(context(tmp_path / "b", vae, rank=1), {})
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    with pytest.raises(FmkitError, match="sample"):
        cb.on_train_start(context(tmp_path / "c", torch.nn.Linear(2, 2)))


def test_trains_through_the_engine(tmp_path: Path) -> None:
    cfg = {
        "model": {"name": "vae", "size": 64, "latent": 8, "width": 4},
        "callbacks": {"vae_figures": {"n": 3}},
        "data": {"batch_size": 8},
        "optim": {"lr": 3e-3},
        "epochs": 2,
        "device": "cpu",
    }
    run = train(cfg, {"train": Blobs(16, 0), "val": Blobs(8, 1), "test": Blobs(4, 2)}, tmp_path / "run")
    history = pd.read_csv(run / "metrics.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"train_loss", "train_recon", "train_kl", "val_loss"} <= set(history.columns)
    assert "val_auc" not in history.columns
    assert history["val_loss"].notna().all() and history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    assert (run / "reconstructions.png").is_file() and (run / "samples.png").is_file()
