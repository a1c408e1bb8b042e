"""Datasets and DataLoaders of a training run.

``build_datasets`` turns a faces folder into the ``train``/``val``/``test`` datasets of
``fmkit.data.datasets`` (frames or clips, per the ``data`` config). Any dataset with
the same interface works with the engine: items ``(x, y)`` and a ``video_ids`` list
aligned with the items.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fmkit.engine.distributed import DistEnv
from fmkit.engine.rng import loader_generator, worker_init
from fmkit.errors import FmkitError

SPLITS = ("train", "val", "test")


class Resize:
    """Resize the last two (spatial) dimensions of a frame (3, H, W) or clip (3, T, H, W)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        flat = x.reshape(1, -1, *x.shape[-2:])
        out = F.interpolate(flat, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return out.reshape(*x.shape[:-2], self.size, self.size)


class RandomHFlip:
    """Mirror a frame or a whole clip left-right with probability 1/2 (torch's global RNG)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1) if torch.rand(()) < 0.5 else x


class Compose:
    """Apply transforms in order."""

    def __init__(self, *transforms: Any) -> None:
        self.transforms = transforms

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x


def _transform(cfg: Mapping[str, Any], train: bool) -> Compose:
    steps: list[Any] = [Resize(cfg["size"])] if cfg["size"] else []
    if train and cfg["hflip"]:
        steps.append(RandomHFlip())
    return Compose(*steps)


def build_datasets(data: str | os.PathLike, cfg: Mapping[str, Any]) -> dict[str, Dataset]:
    """The split datasets of a faces folder (or its ``faces.csv``) for the ``data`` config."""
    from fmkit.data.datasets import ClipDataset, FrameDataset
    from fmkit.data.preprocess import read_faces

    path = Path(data)
    frame = read_faces(path)
    root = path if path.is_dir() else path.parent
    out: dict[str, Dataset] = {}
    for split in SPLITS:
        transform = _transform(cfg, train=split == "train")
        if cfg["kind"] == "frame":
            out[split] = FrameDataset(frame, split=split, transform=transform, root=root)
        else:
            out[split] = ClipDataset(frame, clip_len=cfg["clip_len"], split=split, transform=transform,
                                     stride=cfg["clip_stride"], root=root)
    return out


def check_datasets(datasets: Mapping[str, Dataset], source: str) -> None:
    """Training needs train and val items, and video ids for each split (FmkitError otherwise)."""
    for split in ("train", "val"):
        if split not in datasets or len(datasets[split]) == 0:
            raise FmkitError(f"no {split} items in {source}: training needs train items and val items "
                             "(checkpoints are chosen on validation)")
    for split, ds in datasets.items():
        if split not in SPLITS:
            raise FmkitError(f"unknown split {split!r} in the datasets: expected {', '.join(SPLITS)}")
        if len(getattr(ds, "video_ids", ())) != len(ds):
            raise FmkitError(f"the {split} dataset needs a video_ids list with one id per item")


def train_loader(ds: Dataset, cfg: Mapping[str, Any], seed: int, epoch: int, env: DistEnv,
                 pin_memory: bool) -> DataLoader:
    """The shuffled loader of one training epoch (this rank's shard), reproducible from (seed, epoch)."""
    sampler = DistributedSampler(ds, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return DataLoader(ds, batch_size=cfg["batch_size"], sampler=sampler, num_workers=cfg["num_workers"],
                      drop_last=len(sampler) > cfg["batch_size"], pin_memory=pin_memory,
                      generator=loader_generator(seed, epoch), worker_init_fn=worker_init)


def eval_loader(ds: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """An in-order loader for evaluation (touches no global random state)."""
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory,
                      generator=loader_generator(0, 0), worker_init_fn=worker_init)
