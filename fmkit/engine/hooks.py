"""What a model (or a callback object) can plug into the training loop.

Every hook is optional and found by name (duck typing); the engine calls it on the model
first, then on each object of ``train(..., callbacks=[...])``, in order:

- ``training_step(batch) -> Tensor | Mapping[str, Tensor]`` (the model only): the loss of
  one training batch, already on the device. A mapping must hold ``"loss"`` (what is
  optimised); its other scalars are averaged per epoch and logged as ``train_<key>``.
  Without it the loss is binary cross-entropy of ``model(x)`` (N fake logits) against
  ``y``. It runs under autocast on CUDA and inside DistributedDataParallel when training
  on several processes, so it may call ``self(...)`` freely.
- ``on_train_start(ctx)``: once, after the model, optimizer and any resumed state are set.
- ``on_epoch_start(ctx)``: before each training epoch (``ctx.epoch`` counts from 1).
- ``on_train_batch_end(ctx, batch)``: after each optimizer step (``ctx.step`` within the
  epoch, ``ctx.global_step`` over the run, both from 1). Periodic extra updates go here,
  e.g. the whitening detector's concept alignment every ``align_every`` steps. Derive
  anything periodic from ``ctx.global_step`` so a resumed run repeats it exactly.
- ``on_epoch_end(ctx, row)``: after validation; ``row`` is the epoch's metrics.csv row
  and a hook may add scalar entries to it (e.g. ``row["whitening_error"] = ...``).

A model that is not a fake/real detector (a VAE) sets the attribute
``is_detector = False``: validation then reports the mean ``training_step`` loss only,
and ``best`` is chosen on ``val_loss``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from fmkit.engine.distributed import DistEnv


@dataclass
class TrainContext:
    """The state of a training run that hooks can read."""

    config: dict[str, Any]
    run_dir: Path
    data: Path | None  # the faces folder, when training from one
    datasets: Mapping[str, Dataset]
    model: nn.Module  # the bare model (not the DDP wrapper)
    optimizer: torch.optim.Optimizer
    device: torch.device
    env: DistEnv = field(default_factory=DistEnv)
    epoch: int = 0
    step: int = 0
    global_step: int = 0


def call_hooks(targets: Iterable[object], name: str, *args: Any) -> None:
    """Call ``target.name(*args)`` on every target that defines it."""
    for target in targets:
        hook = getattr(target, name, None)
        if callable(hook):
            hook(*args)


def is_detector(model: nn.Module) -> bool:
    """False for models that declare ``is_detector = False`` (generative models)."""
    return bool(getattr(model, "is_detector", True))
