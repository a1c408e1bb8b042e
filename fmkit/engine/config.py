"""Training configuration: defaults, merging and validation.

A config is a plain, YAML-able dict. ``resolve_config`` lays a user config (a dict or a
YAML file) over ``DEFAULTS`` and checks every value; an unknown key or a bad value is a
one-line ``FmkitError``. ``model`` is the one open section: besides ``name`` its keys
are passed to ``fmkit.models.create_model(name, **kwargs)``, which checks them.

Keys (defaults in ``DEFAULTS``):

- ``model``: ``name`` of a registered model, plus its keyword arguments (a bare string
  is taken as the name).
- ``data``: ``kind`` (``frame`` or ``clip``), ``size`` (resize crops to size × size;
  null keeps the crop size), ``clip_len`` and ``clip_stride`` (clips), ``batch_size``,
  ``eval_batch_size`` (null: ``batch_size``), ``num_workers``, ``hflip`` (random
  horizontal flips in training).
- ``optim``: ``optimizer`` (``adam``, ``adamw``, ``sgd``), ``lr``, ``weight_decay``,
  ``momentum`` (sgd), ``scheduler`` (``none`` or ``cosine`` over the epochs),
  ``grad_clip`` (max gradient norm; null: off).
- ``epochs`` (total, counting epochs already done when resuming), ``seed``,
  ``device`` (``auto``: CUDA when available, else CPU; or ``cpu``, ``cuda``, ``cuda:1``),
  ``amp`` (mixed precision; used on CUDA only), ``monitor`` (the validation value that
  picks ``best``: ``val_auc``, ``val_video_auc``, ``val_ap``, ``val_acc``, ``val_loss``,
  ``val_eer``; ``auto`` is ``val_auc`` for detectors and ``val_loss`` otherwise).
"""
from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from fmkit.errors import FmkitError

DEFAULTS: dict[str, Any] = {
    "model": {"name": None},
    "data": {"kind": "frame", "size": None, "clip_len": 8, "clip_stride": None, "batch_size": 32,
             "eval_batch_size": None, "num_workers": 0, "hflip": True},
    "optim": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "scheduler": "none",
              "grad_clip": None},
    "epochs": 10,
    "seed": 0,
    "device": "auto",
    "amp": True,
    "monitor": "auto",
}

#: Monitored validation values and whether larger is better.
MONITORS: dict[str, bool] = {"val_auc": True, "val_video_auc": True, "val_ap": True, "val_acc": True,
                             "val_loss": False, "val_eer": False}

#: Keys that may change when a run is resumed (they do not change the result).
RESUMABLE_CHANGES = ("epochs", "device", "data.num_workers")

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _int(minimum: int, nullable: bool = False) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            null = " or null" if nullable else ""
            raise FmkitError(f"config {key} must be an integer >= {minimum}{null}, got {value!r}")
        return value
    return check


def _float(minimum: float, strict: bool, nullable: bool = False) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        try:                                   # YAML reads 1e-3 (no dot) as a string
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < minimum or (strict and number == minimum):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise FmkitError(f"config {key} must be a number {bound}{' or null' if nullable else ''}, got {value!r}")
        return number
    return check


def _choice(*options: str) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value not in options:
            raise FmkitError(f"config {key} must be one of {', '.join(options)}, got {value!r}")
        return value
    return check


def _bool(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise FmkitError(f"config {key} must be true or false, got {value!r}")
    return value


def _device(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not _DEVICE.match(value):
        raise FmkitError(f"config {key} must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "data.kind": _choice("frame", "clip"),
    "data.size": _int(1, nullable=True),
    "data.clip_len": _int(1),
    "data.clip_stride": _int(1, nullable=True),
    "data.batch_size": _int(1),
    "data.eval_batch_size": _int(1, nullable=True),
    "data.num_workers": _int(0),
    "data.hflip": _bool,
    "optim.optimizer": _choice("adam", "adamw", "sgd"),
    "optim.lr": _float(0.0, strict=True),
    "optim.weight_decay": _float(0.0, strict=False),
    "optim.momentum": _float(0.0, strict=False),
    "optim.scheduler": _choice("none", "cosine"),
    "optim.grad_clip": _float(0.0, strict=True, nullable=True),
    "epochs": _int(1),
    "seed": _int(0),
    "device": _device,
    "amp": _bool,
    "monitor": _choice("auto", *MONITORS),
}


def _merge(base: dict[str, Any], user: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``user`` laid over ``base`` key by key; ``model`` is open, every other key must exist."""
    out = copy.deepcopy(base)
    for key, value in user.items():
        name = f"{prefix}{key}"
        if name == "model" and isinstance(value, str):
            value = {"name": value}
        if key not in base:
            raise FmkitError(f"unknown config key {name!r} (known: {', '.join(base)})")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise FmkitError(f"config {name} must be a mapping, got {value!r}")
            if name == "model":
                out[key] = {**out[key], **copy.deepcopy(dict(value))}
            else:
                out[key] = _merge(base[key], value, f"{name}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (FmkitError when missing, unreadable or not a mapping)."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise FmkitError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise FmkitError(f"config {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise FmkitError(f"config {path} must hold a mapping of keys, got {type(loaded).__name__}")
    return loaded


def resolve_config(config: Mapping[str, Any] | str | os.PathLike | None = None,
                   **overrides: Any) -> dict[str, Any]:
    """Defaults ← ``config`` (a dict or a YAML file) ← ``overrides``; validated.

    ``overrides`` are top-level keys (``epochs=3``, ``model="whitening"``, ``data={...}``);
    nested mappings merge key by key.
    """
    user = read_yaml(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    return validate(_merge(_merge(DEFAULTS, user), overrides))


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check every value of a full config; returns it with numbers normalised."""
    name = cfg["model"].get("name")
    if not isinstance(name, str) or not name:
        raise FmkitError("config model.name is missing: name a registered model (e.g. model: {name: whitening})")
    for key, check in CHECKS.items():
        section, _, leaf = key.rpartition(".")
        holder = cfg[section] if section else cfg
        holder[leaf] = check(key, holder[leaf])
    return cfg


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` → ``{"optim.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Flattened keys whose values differ between two configs."""
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def dump_yaml(cfg: Mapping[str, Any]) -> str:
    """The config as YAML text (key order kept)."""
    return yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=False)
