"""Random state: seeding, capture and restore (so a resumed run repeats an uninterrupted one).

The global generators of Python, NumPy and torch (CPU, and the CUDA device in use) are
saved in every ``last`` checkpoint and restored on resume (under DDP, rank 0's states
on every rank: all ranks start from the same seed and draw alike). Data order does not need saved state: the
training sampler shuffles with ``seed + epoch`` (torch's ``DistributedSampler``
scheme, also used with one process), and each epoch's DataLoader gets its own generator
seeded from ``(seed, epoch)``, which also seeds its worker processes.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def loader_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh generator for one epoch's DataLoader (its worker seeds derive from it)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed NumPy and Python from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def get_rng_state(device: torch.device) -> dict[str, Any]:
    """The global random states (CUDA: ``device``'s only), as tensors and plain values.

    Plain values keep checkpoints loadable with ``torch.load(weights_only=True)``.
    """
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what ``get_rng_state`` returned (the CUDA state onto ``device``)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
