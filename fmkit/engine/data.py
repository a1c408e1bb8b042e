"""Datasets and DataLoaders of a training run.

``build_datasets`` turns a faces folder into the ``train``/``val``/``test`` datasets of
``fmkit.data.datasets`` (frames or clips, per the ``data`` config), reading its manifest
once and, with ``data.cache``, the crops from one packed, memory-mapped cache
(:mod:`fmkit.data.cache`). Any dataset with the same interface works with the engine:
items ``(x, y)`` and a ``video_ids`` list aligned with the items.

Loaders. With ``num_workers`` > 0 the worker processes are persistent: the loader of a
dataset is kept (:func:`train_loader` and :func:`eval_loader` return the same DataLoader
for the same dataset and settings, at most :data:`MAX_LOADERS` of them, the least
recently used shut down first; :func:`release_loaders` shuts them all down), so its
workers start once per run instead of once per epoch and keep their state (e.g. the
in-memory crops of :class:`fmkit.data.sbi.SelfBlendPairs`). Each index a kept loader
yields carries the pass's epoch and worker seed (:class:`EpochItems`): a worker calls
the dataset's ``set_epoch`` and reseeds its random generators at the start of each pass
exactly as a fresh DataLoader's workers are seeded (``loader_generator(seed, epoch)``), so
the items, augmentations included, are those of a new loader per epoch and a resumed run
still repeats an uninterrupted one. The workers keep the dataset as it was when they
started: a dataset changed in place (another ``transform``) needs :func:`release_loaders`
first. ``pin_memory`` is on for CUDA (the trainer and ``predict`` pass it), and
``data.prefetch_factor`` sets the batches each worker loads ahead (null: torch's 2).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
    SequentialSampler,
    Subset,
    get_worker_info,
)

from fmkit.data.cache import open_cache
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
    index)); validation and test keep the dataset's own fakes. The manifest is read once;
    ``data.cache`` (``auto`` or a folder; see :mod:`fmkit.data.cache`) opens, or builds,
    the packed crop cache once for every split.
    """
    path = Path(data)
    frame = read_faces(path)
    root = faces_root(path)
    cache = open_cache(frame, root, cfg.get("cache"))
    out: dict[str, Dataset] = {}
    for split in SPLITS:
        train = split == "train"
        if cfg["kind"] == "frame" and train and cfg["sbi"]:  # the pair flips itself, masks included
            augment = {**cfg["augment"], "hflip": False}
            transform = build_transform(cfg["size"], True, **augment)
            crops = FrameDataset(frame, split=split, transform=transform, root=root, cache=cache)
            out[split] = SelfBlendPairs(crops, seed=seed, hflip=cfg["augment"]["hflip"])
            continue
        transform = build_transform(cfg["size"], train, **cfg["augment"])
        if cfg["kind"] == "frame":
            out[split] = FrameDataset(frame, split=split, transform=transform, root=root, cache=cache)
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
                cache=cache,
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


#: Loaders kept for their persistent workers, least recently used first: key → DataLoader.
_LOADERS: OrderedDict[Hashable, DataLoader] = OrderedDict()
#: At most this many loaders are kept (a training run uses two at a time: train and val).
MAX_LOADERS = 4


class EpochItems(Dataset):
    """A dataset read through ``(pass, base_seed, epoch, index)`` tuples (the indices of :class:`PassSampler`).

    At the first item of a new pass a worker sets the dataset's epoch (``set_epoch``, when
    ``epoch`` is not None) and seeds torch, NumPy and Python with ``base_seed + worker id``
    as a DataLoader seeds a fresh worker (then :func:`fmkit.engine.rng.worker_init`).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._pass: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, tag: tuple[int, int, int | None, int]) -> Any:
        pass_no, base_seed, epoch, i = tag
        if pass_no != self._pass:
            self._pass = pass_no
            if epoch is not None and callable(getattr(self.dataset, "set_epoch", None)):
                self.dataset.set_epoch(epoch)
            info = get_worker_info()
            if info is not None:
                torch.manual_seed(base_seed + info.id)
                worker_init(info.id)
        return self.dataset[i]


class PassSampler(Sampler[tuple[int, int, int | None, int]]):
    """The sampler of a kept loader: the indices of the sampler it follows, tagged with the pass.

    :meth:`follow` sets the sampler, epoch and seed generator of the next passes; each pass
    draws its workers' base seed from the generator as a fresh DataLoader would.
    """

    def __init__(self) -> None:
        self.sampler: Sampler[int] | None = None
        self.generator = torch.Generator()
        self.epoch: int | None = None
        self.passes = 0

    def follow(self, sampler: Sampler[int], generator: torch.Generator, epoch: int | None) -> None:
        self.sampler, self.generator, self.epoch = sampler, generator, epoch

    def __iter__(self) -> Iterator[tuple[int, int, int | None, int]]:
        if self.sampler is None:
            raise RuntimeError("PassSampler.follow was not called")
        self.passes += 1
        base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        for i in self.sampler:
            yield self.passes, base_seed, self.epoch, i

    def __len__(self) -> int:
        return len(self.sampler) if self.sampler is not None else 0


def _close(loader: DataLoader) -> None:
    """Shut down a kept loader's workers."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def release_loaders() -> None:
    """Shut down the workers of every kept loader and forget the loaders (and their datasets)."""
    while _LOADERS:
        _close(_LOADERS.popitem()[1])


def _kept(
    key: Hashable, make: Callable[[], DataLoader], sampler: Sampler[int], seed: int, epoch: int | None
) -> DataLoader:
    """The kept loader of ``key`` (made when missing), following ``sampler`` with the workers of a
    fresh loader seeded from ``loader_generator(seed, epoch or 0)``."""
    loader = _LOADERS.pop(key, None)
    if loader is None:
        loader = make()
    _LOADERS[key] = loader
    while len(_LOADERS) > MAX_LOADERS:
        _close(_LOADERS.popitem(last=False)[1])
    loader.sampler.follow(sampler, loader_generator(seed, epoch or 0), epoch)
    return loader


def _dataset_key(ds: Dataset) -> Hashable:
    """Identity of a dataset for keeping its loader (a Subset: its dataset and indices, rebuilt alike each call)."""
    if isinstance(ds, Subset):
        return ("subset", id(ds.dataset), tuple(int(i) for i in ds.indices))
    return id(ds)


def _loader(
    ds: Dataset,
    sampler: Sampler[int],
    seed: int,
    epoch: int | None,
    persistent: bool,
    **options: Any,
) -> DataLoader:
    """A DataLoader of ``ds`` in ``sampler``'s order whose workers are seeded from (seed, epoch): a kept one
    (persistent workers) when ``persistent`` and ``options["num_workers"]`` > 0, else a new one."""
    if not (persistent and options["num_workers"] > 0):
        return DataLoader(ds, sampler=sampler, generator=loader_generator(seed, epoch or 0), **options)
    key = (_dataset_key(ds), len(sampler), *sorted(options.items()))
    make = lambda: DataLoader(  # the generator only seeds the first start of the workers; passes reseed them
        EpochItems(ds), sampler=PassSampler(), generator=torch.Generator(), persistent_workers=True, **options
    )
    return _kept(key, make, sampler, seed, epoch)


def _prefetch(num_workers: int, prefetch_factor: int | None) -> int | None:
    return prefetch_factor if num_workers > 0 else None


def train_loader(
    ds: Dataset, cfg: Mapping[str, Any], seed: int, epoch: int, env: DistEnv, pin_memory: bool
) -> DataLoader:
    """The shuffled (or class-balanced, ``data.balance``) loader of one training epoch, this rank's shard,
    reproducible from (seed, epoch).

    With ``num_workers`` > 0 it is the kept loader of ``ds`` (persistent workers; see the
    module doc), set to this epoch. ``cfg`` is the ``data`` config (``batch_size``,
    ``num_workers``, ``balance``; ``prefetch_factor`` optional).
    """
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
    return _loader(
        ds,
        sampler,
        seed,
        epoch,
        persistent=True,
        batch_size=batch_size,
        collate_fn=collate_pairs if pairs else None,
        num_workers=cfg["num_workers"],
        drop_last=len(sampler) > batch_size,
        pin_memory=pin_memory,
        worker_init_fn=worker_init,
        prefetch_factor=_prefetch(cfg["num_workers"], cfg.get("prefetch_factor")),
    )


def eval_loader(
    ds: Dataset,
    batch_size: int,
    num_workers: int,
    pin_memory: bool = False,
    *,
    prefetch_factor: int | None = None,
    persistent: bool = True,
) -> DataLoader:
    """An in-order loader for evaluation (touches no global random state).

    With ``num_workers`` > 0 and ``persistent``, the kept loader of ``ds`` (persistent
    workers; see the module doc); ``prefetch_factor``: batches each worker loads ahead
    (None: torch's 2).
    """
    return _loader(
        ds,
        SequentialSampler(ds),
        0,
        None,
        persistent=persistent,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=worker_init,
        prefetch_factor=_prefetch(num_workers, prefetch_factor),
    )
