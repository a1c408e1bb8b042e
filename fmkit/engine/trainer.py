"""``train``: the one training run of every fmkit model, into a run folder.

Run folder ``out``::

    config.yaml              the resolved config
    checkpoints/last.pt      model + optimizer, scheduler, scaler, RNG states, epoch, history
    checkpoints/best.pt      model of the best epoch on validation (``monitor``), its val metrics
    metrics.csv              one row per finished epoch (rewritten atomically)
    metrics.json             at the end: best epoch, its val metrics, TEST metrics of best.pt
                             (video level over every test video of the faces folder, those without
                             items scored 0.5 and counted in ``fallback_videos``; and the videos a
                             clip dataset left out, ``skipped_videos``)
    test_predictions.csv     video_id, label, prob of every test item (best.pt)
    val_predictions.csv      the same on validation, written at the best epoch (thresholds are chosen
                             there, never on test)
    learning_curves.png

Each epoch ends by writing metrics.csv, ``last.pt``, then ``best.pt`` when the epoch
improved ``monitor`` (``last.pt`` records that, so a kill in between is repaired on
resume). Checkpoints are chosen on validation only; test is scored once, at the end,
with ``best.pt``. A killed run resumes from ``last.pt`` (``resume=True``) and repeats
the uninterrupted run exactly on CPU: weights, optimizer, scheduler, scaler and RNG
states are restored and the data order depends on (seed, epoch) only. A NaN/inf loss
raises FmkitError before the optimizer step, so ``last.pt`` still holds the last good
epoch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from fmkit.config import MONITORS, RESUMABLE_CHANGES, config_changes, dump_yaml, resolve_config
from fmkit.engine import distributed
from fmkit.engine.callbacks import build_callbacks
from fmkit.engine.coverage import metrics_with_fallback, split_videos, video_table
from fmkit.engine.data import build_datasets, check_datasets, release_loaders, train_loader
from fmkit.engine.distributed import DistEnv
from fmkit.engine.hooks import TrainContext, call_hooks, is_detector
from fmkit.engine.loop import LossModule, mean_loss, predict, train_epoch
from fmkit.engine.report import save_learning_curves, write_history, write_summary
from fmkit.engine.rng import get_rng_state, seed_everything, set_rng_state
from fmkit.errors import FmkitError
from fmkit.io import atomic_path, write_csv
from fmkit.metrics import compute_metrics
from fmkit.models.checkpoint import BEST, LAST, read_checkpoint, save_checkpoint
from fmkit.models.registry import create_model

CONFIG = "config.yaml"
HISTORY = "metrics.csv"
SUMMARY = "metrics.json"
PREDICTIONS = "test_predictions.csv"
VAL_PREDICTIONS = "val_predictions.csv"
CURVES = "learning_curves.png"

#: Validation metrics copied into each metrics.csv row (as ``val_<key>``).
ROW_METRICS = ("loss", "auc", "acc", "ap", "eer", "video_auc", "video_acc")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; FmkitError for CUDA without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FmkitError(f"config device {name} but CUDA is not available here (use device: auto or cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise FmkitError(f"config device {name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _run_config(
    config: Mapping[str, Any] | str | os.PathLike | None, run: Path, state: dict[str, Any] | None, epochs: int | None
) -> dict[str, Any]:
    """The config of this run: the given one, checked against the stored one when resuming."""
    overrides = {"epochs": epochs} if epochs is not None else {}
    if state is None:
        if config is None:
            raise FmkitError("train needs a config (at least a model name)")
        return resolve_config(config, **overrides)
    stored = resolve_config(state["train_config"])
    cfg = resolve_config(config if config is not None else stored, **overrides)
    changed = [k for k in config_changes(stored, cfg) if k not in RESUMABLE_CHANGES]
    if changed:
        raise FmkitError(
            f"cannot resume {run}: the config differs from the run's in {', '.join(changed)} "
            f"(only {', '.join(RESUMABLE_CHANGES)} may change)"
        )
    return cfg


def lr_factor(scheduler: str, warmup: int, epochs: int) -> Callable[[int], float]:
    """lr multiplier of epoch ``e`` (0-based): linear warm-up from 1/10 over ``warmup`` epochs, then
    constant (``none``) or a half cosine from 1 towards 0 over the remaining epochs (``cosine``)."""

    def factor(e: int) -> float:
        if e < warmup:
            return 0.1 + 0.9 * e / warmup
        if scheduler == "none":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (e - warmup) / max(epochs - warmup, 1)))

    return factor


def _better(value: float, best: float | None, larger: bool) -> bool:
    if math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best if larger else value < best


class Trainer:
    """One training run; ``fit`` runs it. Build it through ``train``."""

    def __init__(
        self,
        cfg: dict[str, Any],
        datasets: Mapping[str, Dataset],
        data: Path | None,
        run: Path,
        env: DistEnv,
        device: torch.device,
        state: dict[str, Any] | None,
        callbacks: Sequence[object],
        progress: bool | None = None,
    ) -> None:
        self.cfg, self.datasets, self.run, self.env, self.device = cfg, datasets, run, env, device
        self.progress = progress
        seed_everything(cfg["seed"])
        kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
        self.model = create_model(cfg["model"]["name"], **kwargs).to(device)
        self.detector = is_detector(self.model)
        monitor = cfg["monitor"]
        if monitor == "auto":
            clips = cfg["data"]["kind"] == "clip"
            monitor = ("val_video_auc" if clips else "val_auc") if self.detector else "val_loss"
        if not self.detector and monitor != "val_loss":
            raise FmkitError(f"monitor {monitor} needs a detector; {cfg['model']['name']} is not one (use val_loss)")
        self.monitor, self.larger = monitor, MONITORS[monitor]
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.amp = cfg["amp"] and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        step_module: nn.Module = LossModule(self.model)
        if env.enabled:
            ids = [device.index] if device.type == "cuda" else None
            step_module = DistributedDataParallel(step_module, device_ids=ids)
        self.step_module = step_module
        self.hooks: list[object] = [self.model, *build_callbacks(cfg["model"]["name"], cfg["callbacks"], callbacks)]
        self.ctx = TrainContext(
            config=cfg,
            run_dir=run,
            data=data,
            datasets=datasets,
            model=self.model,
            optimizer=self.optimizer,
            device=device,
            env=env,
        )
        self.epoch, self.best_epoch, self.best_value = 0, None, None
        self.history: list[dict[str, Any]] = []
        if state is not None:
            self._restore(state)

    def _optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg["optim"]
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise FmkitError(f"model {self.cfg['model']['name']!r} has no trainable parameters")
        if o["optimizer"] == "sgd":
            return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
        cls = torch.optim.AdamW if o["optimizer"] == "adamw" else torch.optim.Adam
        return cls(params, lr=o["lr"], weight_decay=o["weight_decay"])

    def _scheduler(self) -> torch.optim.lr_scheduler.LambdaLR | None:
        o = self.cfg["optim"]
        if o["scheduler"] == "none" and not o["warmup_epochs"]:
            return None
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(o["scheduler"], o["warmup_epochs"], self.cfg["epochs"])
        )

    def _restore(self, state: dict[str, Any]) -> None:
        """Continue from a ``last.pt`` payload (and rewrite ``best.pt`` if a kill lost it)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            self.scheduler.last_epoch = state["epoch"] - 1  # re-derive the next lr from this run's
            self.scheduler.step()  # schedule (epochs may have grown)
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.device)
        self.epoch, self.ctx.global_step = state["epoch"], state["global_step"]
        self.best_epoch, self.best_value = state["best_epoch"], state["best_value"]
        self.history = [dict(row) for row in state["history"]]
        best_file = self.run / BEST
        if (
            self.best_epoch == self.epoch
            and self.env.is_main
            and (not best_file.is_file() or read_checkpoint(best_file)["epoch"] != self.epoch)
        ):
            self._save_best(state["val"])

    def _score(self, split: str) -> tuple[dict[str, float], pd.DataFrame | None]:
        """Metrics of the current model on a split (and a detector's predictions)."""
        data = self.cfg["data"]
        kw = {
            "batch_size": data["eval_batch_size"] or data["batch_size"],
            "device": self.device,
            "num_workers": data["num_workers"],
            "amp": self.amp,
        }
        if not self.detector:
            return mean_loss(self.model, self.datasets[split], **kw), None
        pred = predict(self.model, self.datasets[split], **kw)
        metrics = compute_metrics(pred["prob"].to_numpy(), pred["label"].to_numpy(), pred["video_id"].tolist())
        return {"loss": metrics["logloss"], **metrics}, pred

    def _test_metrics(self, pred: pd.DataFrame) -> dict[str, float]:
        """Test metrics of a detector: items as they are; videos: every test video of the faces folder
        (:mod:`fmkit.engine.coverage`; only the scored ones when the run was given datasets, not a folder)."""
        videos = split_videos(self.ctx.data, "test") if self.ctx.data is not None else None
        return metrics_with_fallback(pred, video_table(pred, videos, "the test split"))

    def _check_weights(self) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise FmkitError(
                f"weights became NaN/inf during epoch {self.epoch + 1}; the last good checkpoint is "
                f"kept in {self.run / 'checkpoints'}; try a lower optim.lr or set optim.grad_clip"
            )

    def _train_one(self, epoch: int) -> tuple[dict[str, Any], dict[str, float], pd.DataFrame | None]:
        """Train and validate one epoch: its metrics.csv row and its full validation metrics."""
        start = time.perf_counter()
        self.ctx.epoch, self.ctx.step = epoch, 0
        call_hooks(self.hooks, "on_epoch_start", self.ctx)
        loader = train_loader(
            self.datasets["train"],
            self.cfg["data"],
            self.cfg["seed"],
            epoch,
            self.env,
            pin_memory=self.device.type == "cuda",
        )
        lr = self.optimizer.param_groups[0]["lr"]
        row: dict[str, Any] = {
            "epoch": epoch,
            **train_epoch(
                self.ctx,
                self.step_module,
                loader,
                self.hooks,
                self.scaler,
                self.amp,
                self.cfg["optim"]["grad_clip"],
                self.progress,
            ),
        }
        if self.scheduler is not None:
            self.scheduler.step()
        # DDP sends rank 0's buffers at each forward, so after the last step each rank holds its own
        # running statistics: take rank 0's before the sharded validation and the checkpoint
        distributed.broadcast_(list(self.model.buffers()))
        val, val_pred = self._score("val")
        row.update({f"val_{k}": val[k] for k in ROW_METRICS if k in val})
        row["lr"] = lr
        call_hooks(self.hooks, "on_epoch_end", self.ctx, row)
        self._check_weights()
        row["seconds"] = round(time.perf_counter() - start, 3)
        return row, val, val_pred

    def _save_best(self, val: Mapping[str, float]) -> None:
        save_checkpoint(
            self.run / BEST,
            self.model,
            epoch=self.epoch,
            metrics=dict(val),
            monitor=self.monitor,
            train_config=self.cfg,
        )

    def _end_epoch(self, row: dict[str, Any], val: dict[str, float], val_pred: pd.DataFrame | None) -> None:
        """Record a finished epoch: metrics.csv (and val_predictions.csv when it improved), then last.pt,
        then best.pt when it improved."""
        self.epoch = row["epoch"]
        self.history.append(row)
        improved = self.best_epoch is None or _better(row[self.monitor], self.best_value, self.larger)
        if improved:
            self.best_epoch, self.best_value = self.epoch, row[self.monitor]
        if self.env.is_main:
            write_history(self.history, self.run / HISTORY)
            if improved and val_pred is not None:  # the best epoch's validation scores, for thresholds
                write_csv(val_pred, self.run / VAL_PREDICTIONS)
            save_checkpoint(
                self.run / LAST,
                self.model,
                epoch=self.epoch,
                global_step=self.ctx.global_step,
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
                scaler=self.scaler.state_dict(),
                rng=get_rng_state(self.device),
                best_epoch=self.best_epoch,
                best_value=self.best_value,
                val=val,
                history=self.history,
                train_config=self.cfg,
            )
            if improved:
                self._save_best(val)
            keys = dict.fromkeys(("train_loss", "val_loss", "val_auc", self.monitor))
            shown = " ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
            tqdm.write(
                f"epoch {self.epoch}/{self.cfg['epochs']} {shown} ({row['seconds']:.1f} s)"
                f"{' *best' if improved else ''}"
            )
        distributed.barrier()

    def fit(self) -> Path:
        """Train the remaining epochs, then evaluate ``best.pt`` on test and write the reports."""
        if self.env.is_main:
            with atomic_path(self.run / CONFIG) as tmp:
                tmp.write_text(dump_yaml(self.cfg))
            if self.history:  # resumed: drop a row a killed epoch left
                write_history(self.history, self.run / HISTORY)
        distributed.barrier()
        call_hooks(self.hooks, "on_train_start", self.ctx)
        for epoch in range(self.epoch + 1, self.cfg["epochs"] + 1):
            self._end_epoch(*self._train_one(epoch))
        self._finish()
        return self.run

    def _finish(self) -> None:
        best = read_checkpoint(self.run / BEST)
        self.model.load_state_dict(best["model"])
        summary: dict[str, Any] = {
            "model": self.cfg["model"]["name"],
            "monitor": self.monitor,
            "best_epoch": best["epoch"],
            "epochs": self.epoch,
            "val": best["metrics"],
            "test": None,
            "seconds": round(sum(r["seconds"] for r in self.history), 3),
        }
        skipped = {split: dict(ds.skipped) for split, ds in self.datasets.items() if getattr(ds, "skipped", None)}
        if skipped:  # videos a clip dataset left out (short_videos: skip): video_id → face crops
            summary["skipped_videos"] = skipped
        if self.ctx.data is not None:
            summary["data"] = str(self.ctx.data)
        pred = None
        if len(self.datasets.get("test", ())):
            summary["test"], pred = self._score("test")
            if pred is not None:  # video level over every test video, 0.5 for one without items
                summary["test"] = {"loss": summary["test"]["loss"], **self._test_metrics(pred)}
        if self.env.is_main:
            if pred is not None:
                write_csv(pred, self.run / PREDICTIONS)
            save_learning_curves(self.history, self.run / CURVES)
            write_summary(summary, self.run / SUMMARY)
        distributed.barrier()


def train(
    config: Mapping[str, Any] | str | os.PathLike | None,
    data: str | os.PathLike | Mapping[str, Dataset],
    out: str | os.PathLike,
    *,
    resume: bool = False,
    epochs: int | None = None,
    callbacks: Sequence[object] = (),
    progress: bool | None = None,
) -> Path:
    """Train a registered model and write the run folder ``out``; returns its path.

    ``config``: a config dict or YAML file (see ``fmkit.engine.config``); may be None when
    resuming (the run's stored config is used). ``data``: a faces folder (or its
    faces.csv), or a mapping ``{"train": ds, "val": ds, "test": ds}`` of datasets with the
    engine's interface. ``epochs`` overrides the total number of epochs (resuming with a
    larger value trains on). ``resume``: continue from ``out/checkpoints/last.pt`` when
    it exists (a finished run is left as is); without it a folder that already holds a
    run is an error. ``callbacks``: objects with hooks (see ``fmkit.engine.hooks``). ``progress``: a
    bar over each epoch's batches (None: on a terminal only, :func:`fmkit.console.progress_enabled`); a line per
    finished epoch is printed either way.
    """
    run = Path(out)
    if not resume and (run / LAST).exists():
        raise FmkitError(f"{run} already holds a training run ({LAST}); resume it (--resume) or choose a new folder")
    state = read_checkpoint(run / LAST) if resume and (run / LAST).is_file() else None
    cfg = _run_config(config, run, state, epochs)
    if state is not None and state["epoch"] >= cfg["epochs"] and (run / SUMMARY).is_file():
        return run
    if isinstance(data, Mapping):
        datasets, folder, source = dict(data), None, "the given datasets"
    else:
        folder = Path(data)
        datasets, source = build_datasets(folder, cfg["data"], cfg["seed"]), str(folder)
    check_datasets(datasets, source)
    device = resolve_device(cfg["device"])
    env = distributed.init_distributed(device.type == "cuda")
    if env.enabled and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
    try:
        return Trainer(cfg, datasets, folder, run, env, device, state, callbacks, progress).fit()
    finally:
        release_loaders()  # the persistent DataLoader workers of this run
        distributed.shutdown(env)
