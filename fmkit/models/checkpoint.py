"""Checkpoints that carry their model's config, so a model can be rebuilt from the file alone.

A checkpoint is a ``torch.save`` dict: ``format``, ``config`` (the model's
``fmkit_config``, i.e. ``{"name": ..., **kwargs}`` as given to ``create_model``),
``model`` (its state dict) and whatever training state the caller adds (optimizer,
epoch, metrics ...). Only tensors and plain Python values are stored, so files load with
``torch.load(weights_only=True)``: loading never runs code from the file.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmkit.errors import FmkitError
from fmkit.io import atomic_path
from fmkit.models.registry import create_model

FORMAT = "fmkit-checkpoint-1"
#: Checkpoints inside a run folder (``fmkit train``): the best epoch on validation, and the last one.
BEST = Path("checkpoints") / "best.pt"
LAST = Path("checkpoints") / "last.pt"


def _plain(value: Any) -> Any:
    """Paths → strings, recursively, so a config survives ``weights_only`` loading."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def model_config(model: nn.Module) -> dict[str, Any]:
    """``model.fmkit_config`` (set by ``create_model``); FmkitError when the model has none."""
    config = getattr(model, "fmkit_config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise FmkitError(
            f"{type(model).__name__} has no fmkit_config: build models with "
            "fmkit.models.create_model(name, **kwargs) so checkpoints can rebuild them"
        )
    return _plain(config)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **state: Any) -> Path:
    """Write ``model`` (weights + config) and ``state`` to ``path`` atomically."""
    payload = {"format": FORMAT, "config": model_config(model), "model": model.state_dict(), **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The stored dict of a checkpoint file (FmkitError when missing, corrupt or not fmkit's)."""
    path = Path(path)
    if not path.is_file():
        raise FmkitError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise FmkitError(f"checkpoint {path} is corrupt or unreadable: {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FmkitError(f"{path} is not an fmkit checkpoint (expected a file written by fmkit train)")
    return payload


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file as given, or a run folder's ``checkpoints/best.pt``."""
    path = Path(path)
    if path.is_dir():
        best = path / BEST
        if not best.is_file():
            raise FmkitError(f"run folder {path} has no {BEST} (has `fmkit train` finished an epoch there?)")
        return best
    return path


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model of a run folder (its best checkpoint) or a checkpoint file, in eval mode."""
    file = checkpoint_path(path)
    payload = read_checkpoint(file)
    config = dict(payload["config"])
    for initial in ("checkpoint", "pretrained"):  # initial backbone weights: the state dict below replaces them
        config.pop(initial, None)
    model = create_model(config.pop("name"), **config)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise FmkitError(f"checkpoint {file} does not fit model {payload['config']['name']!r}: {first}") from None
    return model.to(device).eval()
