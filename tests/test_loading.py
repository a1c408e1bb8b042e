"""Data loading: the packed crop cache (bit-identical items, rebuilt when stale, where it goes) and persistent
DataLoader workers (epochs, seeds)."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fmkit.config import resolve_config
from fmkit.data import cache as packed
from fmkit.data.datasets import ClipDataset, FrameDataset, read_rgb
from fmkit.data.schema import read_faces
from fmkit.data.transforms import build_transform
from fmkit.engine.data import BalancedSampler, build_datasets, eval_loader, release_loaders, train_loader
from fmkit.engine.distributed import DistEnv
from fmkit.engine.rng import loader_generator, worker_init
from fmkit.errors import FmkitError


@pytest.fixture(autouse=True)
def _release() -> Iterator[None]:
    yield
    release_loaders()  # no worker outlives its test


@pytest.fixture
def faces(synth_faces: Path, tmp_path: Path) -> Path:
    """A private copy of the session's synthetic faces folder (the cache may be written into it)."""
    return Path(shutil.copytree(synth_faces, tmp_path / "faces"))


def data_cfg(**data: object) -> dict:
    return resolve_config({"model": "baseline2d", "data": data})["data"]


def items(ds: torch.utils.data.Dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every item, torch's global RNG (training augmentations) seeded by the item's index."""
    out = []
    for i in range(len(ds)):
        torch.manual_seed(i)
        out.append(ds[i])
    return out


def assert_same_items(a: torch.utils.data.Dataset, b: torch.utils.data.Dataset) -> None:
    assert len(a) == len(b) > 0
    for (xa, ya), (xb, yb) in zip(items(a), items(b)):
        assert xa.dtype == xb.dtype and xa.is_contiguous() and xb.is_contiguous()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "frame"},
        {"kind": "frame", "size": 32},
        {"kind": "clip", "clip_len": 3, "clips_per_video": 2, "eval_clips": 2, "short_videos": "skip"},
    ],
    ids=["frames", "frames-resized", "clips"],
)
def test_cached_items_are_bit_identical_to_decoded_ones(faces: Path, tmp_path: Path, data: dict) -> None:
    plain = build_datasets(faces, data_cfg(**data), seed=3)
    cached = build_datasets(faces, data_cfg(**data, cache=str(tmp_path / "cache")), seed=3)
    assert list(tmp_path.joinpath("cache").glob("crops-faces-*.npy"))
    for split in plain:
        assert plain[split].cache is None and cached[split].cache is not None
        assert plain[split].video_ids == cached[split].video_ids
        for ds in (plain[split], cached[split]):
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(2)
        assert_same_items(plain[split], cached[split])


def test_cached_items_match_under_random_augmentation(faces: Path) -> None:
    augment = build_transform(32, train=True, hflip=True, color_jitter=0.4, blur=0.5)
    plain = ClipDataset(faces, clip_len=2, clips_per_video=2, sampling="random", seed=1, transform=augment)
    cached = ClipDataset(
        faces, clip_len=2, clips_per_video=2, sampling="random", seed=1, transform=augment, cache="auto"
    )
    assert_same_items(plain, cached)


def test_auto_cache_lives_in_the_faces_folder_and_is_reused(faces: Path) -> None:
    first = FrameDataset(faces, cache="auto").cache
    files = list(faces.glob("crops.*.npy"))
    assert files == [first.path] and first.path.parent == faces
    df = read_faces(faces)
    assert first.array.shape == (len(df), 64, 64, 3) and first.array.dtype == np.uint8
    assert np.array_equal(first.array[5], read_rgb(faces / df["crop_path"].iloc[5]))
    before = first.path.stat().st_mtime_ns
    again = FrameDataset(faces, split="val", cache="auto").cache
    assert again.path == first.path and again.path.stat().st_mtime_ns == before, "a fresh cache is not rebuilt"
    restored = pickle.loads(pickle.dumps(again))  # DataLoader workers under spawn: the path, not the pixels
    assert restored._array is None and np.array_equal(restored.array, first.array)


def test_cache_is_rebuilt_when_the_manifest_changes(faces: Path) -> None:
    old = FrameDataset(faces, cache="auto").cache.path
    df = read_faces(faces)
    crop = faces / df["crop_path"].iloc[0]
    Image.fromarray(read_rgb(crop)[::-1].copy()).save(crop)  # a new crop, and a new manifest row for it
    df.loc[0, "prob"] = 0.5
    df.iloc[:-1].to_csv(faces / "faces.csv", index=False)  # and one crop fewer
    new = FrameDataset(faces, cache="auto")
    assert new.cache.path != old and not old.exists() and list(faces.glob("crops.*.npy")) == [new.cache.path]
    assert_same_items(new, FrameDataset(faces))
    # crops rewritten without a new manifest are not noticed (documented): the manifest is the key
    assert FrameDataset(faces, cache="auto").cache.path == new.cache.path


def test_read_only_faces_folder_caches_in_the_user_cache(faces: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    writable = packed._writable
    monkeypatch.setattr(packed, "_writable", lambda folder: folder.resolve() != faces.resolve() and writable(folder))
    ds = FrameDataset(faces, cache="auto")
    assert ds.cache.path.parent == tmp_path / "xdg" / "fmkit" and ds.cache.path.name.startswith("crops-faces-")
    assert not list(faces.glob("crops*.npy"))
    assert_same_items(ds, FrameDataset(faces))


def test_a_cache_that_does_not_fit_falls_back_or_fails(faces: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(packed.shutil, "disk_usage", lambda _: SimpleNamespace(total=1, used=1, free=0))
    with pytest.warns(UserWarning, match="MiB free"):
        assert FrameDataset(faces, cache="auto").cache is None
    with pytest.raises(FmkitError, match="MiB free"):
        FrameDataset(faces, cache=tmp_path / "cache")


def test_crops_of_several_sizes_are_not_packed(faces: Path, tmp_path: Path) -> None:
    df = read_faces(faces)
    df.loc[0, "crop_size"] = 32
    with pytest.warns(UserWarning, match="several sizes"):
        assert FrameDataset(df, root=faces, cache="auto").cache is None
    df = read_faces(faces)
    crop = faces / df["crop_path"].iloc[0]
    Image.fromarray(read_rgb(crop)[:32, :32].copy()).save(crop)
    with pytest.raises(FmkitError, match="not the manifest's crop_size 64"):
        FrameDataset(faces, cache=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy")), "a failed build leaves no file"


def reference_loader(ds, cfg: dict, seed: int, epoch: int) -> DataLoader:
    """What train_loader built before persistent workers: a new DataLoader per epoch."""
    ds.set_epoch(epoch)
    sampler = BalancedSampler(ds.labels, seed)
    sampler.set_epoch(epoch)
    return DataLoader(
        ds,
        batch_size=cfg["batch_size"],
        sampler=sampler,
        num_workers=cfg["num_workers"],
        drop_last=True,
        generator=loader_generator(seed, epoch),
        worker_init_fn=worker_init,
    )


def test_persistent_workers_serve_two_epochs_like_fresh_loaders(synth_faces: Path) -> None:
    cfg = data_cfg(kind="clip", clip_len=2, batch_size=4, num_workers=2, prefetch_factor=1, balance=True)
    augment = build_transform(None, train=True, hflip=True, color_jitter=0.4)
    ds = ClipDataset(synth_faces, clip_len=2, clips_per_video=2, sampling="random", seed=5, transform=augment)
    loaders, batches, pids = [], [], []
    for epoch in (1, 2):
        loader = train_loader(ds, cfg, 5, epoch, DistEnv(), pin_memory=False)
        assert loader.persistent_workers and loader.prefetch_factor == 1
        batches.append([(x.clone(), y.clone()) for x, y in loader])
        loaders.append(loader)
        pids.append([w.pid for w in loader._iterator._workers])
    assert loaders[0] is loaders[1] and pids[0] == pids[1], "the same workers serve both epochs"
    for epoch, got in zip((1, 2), batches):
        want = list(reference_loader(ds, cfg, 5, epoch))
        assert len(got) == len(want) == len(ds) // 4
        for (x, y), (wx, wy) in zip(got, want):
            assert torch.equal(x, wx) and torch.equal(y, wy)
    assert not torch.equal(batches[0][0][0], batches[1][0][0]), "new clips and augmentations each epoch"


def test_eval_loader_keeps_its_workers_and_order(synth_faces: Path) -> None:
    ds = FrameDataset(synth_faces, split="val")
    first = eval_loader(ds, 5, 2)
    assert eval_loader(ds, 5, 2) is first and eval_loader(ds, 5, 0) is not first
    for _ in range(2):
        x = torch.cat([b[0] for b in first])
        assert torch.equal(x, torch.stack([ds[i][0] for i in range(len(ds))]))


def test_loader_config_keys_are_validated() -> None:
    cfg = data_cfg()
    assert cfg["cache"] is None and cfg["prefetch_factor"] is None
    assert data_cfg(cache="auto", prefetch_factor=4)["cache"] == "auto"
    for bad, match in [
        ({"cache": 3}, "data.cache"),
        ({"cache": ""}, "data.cache"),
        ({"prefetch_factor": 0}, "data.prefetch_factor"),
    ]:
        with pytest.raises(FmkitError, match=match):
            data_cfg(**bad)


def test_manifest_key_follows_the_manifest(faces: Path) -> None:
    df = read_faces(faces)
    key = packed.manifest_key(df, 64)
    assert key == packed.manifest_key(read_faces(faces), 64) and len(key) == 16
    assert key != packed.manifest_key(df, 32)
    assert key != packed.manifest_key(pd.concat([df.iloc[1:], df.iloc[:1]]), 64)
