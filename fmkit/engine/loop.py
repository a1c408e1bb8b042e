"""The inner loops: one training epoch, prediction and evaluation.

``predict`` and ``evaluate`` work on any model and dataset of the engine's interface and
are what the CLI's ``evaluate``/``predict`` commands and the notebooks call. When a
process group is active (``torchrun``), each rank scores its share of the items and
the results are gathered, in dataset order, on every rank.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from fmkit.console import progress_bar
from fmkit.engine import distributed
from fmkit.engine.data import eval_loader
from fmkit.engine.hooks import TrainContext, call_hooks
from fmkit.errors import FmkitError
from fmkit.metrics import compute_metrics
from fmkit.models.modes import eval_mode


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision (float16) on CUDA when ``enabled``; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` as a float vector of N logits (accepts (N,) or (N, 1) outputs)."""
    out = model(x)
    if out.numel() != x.shape[0]:
        raise FmkitError(
            f"a detector must return one logit per item: got shape {tuple(out.shape)} for a batch of {x.shape[0]}"
        )
    return out.reshape(-1).float()


class LossModule(nn.Module):
    """``batch → loss`` of a model: its ``training_step`` or BCE on its logits.

    Wrapping this (not the bare model) in DistributedDataParallel makes custom
    ``training_step`` hooks synchronise gradients like a plain forward does.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> torch.Tensor | Mapping[str, torch.Tensor]:
        step = getattr(self.model, "training_step", None)
        if callable(step):
            return step(batch)
        x, y = batch[0], batch[1]
        return F.binary_cross_entropy_with_logits(logits_of(self.model, x), y.reshape(-1).float())


def split_loss(out: torch.Tensor | Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A ``training_step`` result → (the loss to optimise, the other logged scalars)."""
    extras: dict[str, torch.Tensor] = {}
    if isinstance(out, Mapping):
        if "loss" not in out:
            raise FmkitError("training_step returned a mapping without a 'loss' entry")
        extras = {k: v.detach().float().mean() for k, v in out.items() if k != "loss"}
        out = out["loss"]
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise FmkitError(f"the training loss must be a scalar tensor, got {getattr(out, 'shape', type(out).__name__)}")
    return out.reshape(()), extras


def _batch_size(batch: Any) -> int:
    """Items in a batch: the length of its first tensor (tuple, list or mapping batches)."""
    if isinstance(batch, Mapping):
        batch = next(iter(batch.values()))
    elif isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0])


def train_epoch(
    ctx: TrainContext,
    step_module: nn.Module,
    loader: Iterable[Any],
    hooks: list[object],
    scaler: torch.amp.GradScaler,
    amp: bool,
    grad_clip: float | None,
    progress: bool | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns ``train_loss`` and any extra ``train_<key>`` means.

    ``progress``: a bar over the batches on the main process (None: on a terminal only,
    :func:`fmkit.console.progress_enabled`).

    A non-finite loss (on any rank) stops the run before the optimizer step with an
    FmkitError naming the epoch and step; nothing is written by this function.
    """
    step_module.train()
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    totals: dict[str, torch.Tensor] = {}
    seen = 0
    bar = progress_bar(
        loader,
        progress=progress,
        desc=f"epoch {ctx.epoch}/{ctx.config['epochs']}",
        leave=False,
        disable=not ctx.env.is_main,
    )
    for ctx.step, batch in enumerate(bar, start=1):
        batch = to_device(batch, ctx.device)
        with autocast(ctx.device, amp):
            loss, extras = split_loss(step_module(batch))
        value = float(distributed.all_sum(loss.detach().float().reshape(1))[0])
        if not math.isfinite(value):
            raise FmkitError(
                f"loss became {'NaN' if math.isnan(value) else 'inf'} at epoch {ctx.epoch} "
                f"step {ctx.step} (global step {ctx.global_step + 1}); the last good checkpoint is "
                f"kept in {ctx.run_dir / 'checkpoints'}; try a lower optim.lr or set optim.grad_clip"
            )
        ctx.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(ctx.optimizer)
            nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(ctx.optimizer)
        scaler.update()
        ctx.global_step += 1
        n = _batch_size(batch)
        seen += n
        for key, v in {"loss": loss.detach().float(), **extras}.items():
            totals[key] = totals.get(key, torch.zeros((), device=ctx.device)) + v * n
        bar.set_postfix(loss=f"{value / ctx.env.world_size:.4f}")
        call_hooks(hooks, "on_train_batch_end", ctx, batch)
    keys = sorted(totals)
    sums = distributed.all_sum(torch.stack([totals[k] for k in keys] + [torch.tensor(float(seen), device=ctx.device)]))
    return {f"train_{k}": float(s / sums[-1]) for k, s in zip(keys, sums[:-1])}


def _shard(dataset: Dataset) -> tuple[Dataset, np.ndarray]:
    rank, size = distributed.world()
    idx = np.arange(rank, len(dataset), size)
    return (dataset if size == 1 else Subset(dataset, idx.tolist())), idx


def _model_device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def _gathered(idx: np.ndarray, columns: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    parts = distributed.all_gather((idx, columns))
    order = np.concatenate([p[0] for p in parts])
    if not np.array_equal(np.sort(order), np.arange(n)):
        raise RuntimeError(f"the ranks scored {order.size} items of {n}, not each item once")
    out = {}
    for key in columns:
        values = np.empty(n, dtype=np.float64)
        values[order] = np.concatenate([p[1][key] for p in parts])
        out[key] = values
    return out


def predict(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    amp: bool = True,
    progress: bool | None = False,
) -> pd.DataFrame:
    """Fake probabilities of every item: a DataFrame with ``video_id``, ``label``, ``prob``.

    ``device`` defaults to the model's; ``amp`` uses float16 autocast on CUDA only; ``progress``: a
    bar over batches (None: on a terminal only, :func:`fmkit.console.progress_enabled`).
    """
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    shard, idx = _shard(dataset)
    probs, labels = [], []
    with eval_mode(model):
        for batch in progress_bar(
            eval_loader(shard, batch_size, num_workers, device.type == "cuda"),
            progress=progress,
            desc="predict",
            leave=False,
            disable=distributed.world()[0] != 0,
        ):
            x, y = to_device(batch[0], device), batch[1]
            with autocast(device, amp):
                probs.append(torch.sigmoid(logits_of(model, x)).cpu().numpy())
            labels.append(np.asarray(y, dtype=np.float64).reshape(-1))
    cols = _gathered(
        idx,
        {
            "prob": np.concatenate(probs) if probs else np.zeros(0),
            "label": np.concatenate(labels) if labels else np.zeros(0),
        },
        len(dataset),
    )
    ids = getattr(dataset, "video_ids", None)
    ids = range(len(dataset)) if ids is None else ids
    return pd.DataFrame(
        {"video_id": [str(v) for v in ids], "label": cols["label"].astype(np.int64), "prob": cols["prob"]}
    )


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    amp: bool = True,
    reduce: str = "mean",
    progress: bool | None = False,
) -> dict[str, float]:
    """Frame-level (item-level) and video-level metrics of a detector on ``dataset``.

    See ``fmkit.metrics.compute_metrics`` for the keys; video metrics aggregate items by
    ``dataset.video_ids`` with ``reduce``.
    """
    pred = predict(
        model, dataset, batch_size=batch_size, device=device, num_workers=num_workers, amp=amp, progress=progress
    )
    ids = pred["video_id"].tolist() if getattr(dataset, "video_ids", None) is not None else None
    return compute_metrics(pred["prob"].to_numpy(), pred["label"].to_numpy(), ids, reduce=reduce)


def mean_loss(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    amp: bool = True,
) -> dict[str, float]:
    """``{"loss": ...}``: the mean ``training_step`` loss in eval mode (for non-detectors, e.g. a VAE)."""
    device = torch.device(device) if device is not None else _model_device(model)
    step_module = LossModule(model.to(device))
    shard, _ = _shard(dataset)
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (loss sum, items)
    with eval_mode(model):
        for batch in eval_loader(shard, batch_size, num_workers, device.type == "cuda"):
            batch = to_device(batch, device)
            with autocast(device, amp):
                loss, _ = split_loss(step_module(batch))
            n = _batch_size(batch)
            total[0] += loss.detach().double() * n
            total[1] += n
    total = distributed.all_sum(total)
    return {"loss": float(total[0] / total[1]) if total[1] else float("nan"), "n": int(total[1])}
