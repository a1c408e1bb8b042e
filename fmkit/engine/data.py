"""Datasets and DataLoaders of a training run.

``build_datasets`` turns a faces folder into the ``train``/``val``/``test`` datasets of
``fmkit.data.datasets`` (frames or clips, per the ``data`` config). Any dataset with
the same interface works with the engine: items ``(x, y)`` and a ``video_ids`` list
aligned with the items.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from fmkit.data.datasets import ClipDataset, FrameDataset
from fmkit.data.sbi import SelfBlendPairs, collate_pairs
from fmkit.data.schema import SPLITS, faces_root, read_faces
from fmkit.data.transforms import build_transform
from fmkit.engine.distributed import DistEnv
from fmkit.engine.rng import loader_generator, worker_init
from fmkit.errors import FmkitError


def build_datasets(data: str | os.PathLike, cfg: Mapping[str, Any], seed: int = 0) -> dict[str, Dataset]:
    """The split datasets of a faces folder (or its ``faces.csv``) for the ``data`` config.

    With ``data.sbi`` the training split is :class:`fmkit.data.sbi.SelfBlendPairs` over its
    real crops (each real crop and a fresh self-blend of it, drawn by (``seed``, epoch,
    index)); validation and test keep the dataset's own fakes.
    """
    path = Path(data)
    frame = read_faces(path)
    root = faces_root(path)
    out: dict[str, Dataset] = {}
    for split in SPLITS:
        train = split == "train"
        if cfg["kind"] == "frame" and train and cfg["sbi"]:  # the pair flips itself, masks included
            augment = {**cfg["augment"], "hflip": False}
            crops = FrameDataset(frame, split=split, transform=build_transform(cfg["size"], True, **augment), root=root)
            out[split] = SelfBlendPairs(crops, seed=seed, hflip=cfg["augment"]["hflip"])
            continue
        transform = build_transform(cfg["size"], train, **cfg["augment"])
        if cfg["kind"] == "frame":
            out[split] = FrameDataset(frame, split=split, transform=transform, root=root)
        else:
            out[split] = ClipDataset(
                frame,
                clip_len=cfg["clip_len"],
                split=split,
                transform=transform,
                clips_per_video=cfg["clips_per_video"] if train else cfg["eval_clips"],
                sampling="random" if train else "even",
                seed=seed,
                short_videos=cfg["short_videos"],
                root=root,
            )
    return out


def check_datasets(datasets: Mapping[str, Dataset], source: str) -> None:
    """Training needs train and val items, and video ids for each split (FmkitError otherwise)."""
    for split in ("train", "val"):
        if split not in datasets or len(datasets[split]) == 0:
            raise FmkitError(
                f"no {split} items in {source}: training needs train items and val items "
                "(checkpoints are chosen on validation)"
            )
    for split, ds in datasets.items():
        if split not in SPLITS:
            raise FmkitError(f"unknown split {split!r} in the datasets: expected {', '.join(SPLITS)}")
        if len(getattr(ds, "video_ids", ())) != len(ds):
            raise FmkitError(f"the {split} dataset needs a video_ids list with one id per item")


class BalancedSampler(Sampler[int]):
    """Class-balanced sampling: each epoch draws ``len(labels)`` items with replacement, each class
    (real, fake) equally likely, and yields this rank's share (every ``world``-th draw).

    The draw depends on (seed, epoch) only, so a resumed run repeats it. With 3 fakes per
    real video (the synthetic data, FF++'s methods) a plain shuffle shows the model three
    fakes for every real face; this shows it as many of each.
    """

    def __init__(self, labels: torch.Tensor, seed: int, rank: int = 0, world: int = 1) -> None:
        labels = torch.as_tensor(labels).reshape(-1).long()
        counts = torch.bincount(labels, minlength=2).double()
        if (counts == 0).any():
            raise FmkitError("data.balance needs both real and fake training items")
        self.weights = (1.0 / counts)[labels]
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        drawn = torch.multinomial(self.weights, len(self.weights), replacement=True, generator=g)
        return iter(drawn[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, len(self.weights), self.world))


def train_loader(
    ds: Dataset, cfg: Mapping[str, Any], seed: int, epoch: int, env: DistEnv, pin_memory: bool
) -> DataLoader:
    """The shuffled (or class-balanced, ``data.balance``) loader of one training epoch, this rank's shard,
    reproducible from (seed, epoch)."""
    pairs = isinstance(ds, SelfBlendPairs)  # (real, fake) per item: balanced already, half as many items a batch
    if callable(getattr(ds, "set_epoch", None)):  # fresh self-blends, fresh random clips
        ds.set_epoch(epoch)
    if cfg["balance"] and not pairs:
        if not isinstance(getattr(ds, "labels", None), torch.Tensor):
            raise FmkitError("data.balance needs a training dataset with a labels tensor (FrameDataset, ClipDataset)")
        sampler: Sampler[int] = BalancedSampler(ds.labels, seed, env.rank, env.world_size)
    else:
        sampler = DistributedSampler(ds, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    batch_size = max(1, cfg["batch_size"] // 2) if pairs else cfg["batch_size"]
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_pairs if pairs else None,
        num_workers=cfg["num_workers"],
        drop_last=len(sampler) > batch_size,
        pin_memory=pin_memory,
        generator=loader_generator(seed, epoch),
        worker_init_fn=worker_init,
    )


def eval_loader(ds: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """An in-order loader for evaluation (touches no global random state)."""
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=loader_generator(0, 0),
        worker_init_fn=worker_init,
    )
