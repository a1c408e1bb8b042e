"""The one config system: typed, validated settings for training, preprocessing, synthesis and pipelines.

A config is a plain, YAML-able nested dict. Each kind has a *schema* here (:data:`TRAIN`,
:data:`PREPROCESS`, :data:`SYNTH`, :data:`PIPELINE`): a nested dict whose leaves are
:class:`Option` (default + check). :func:`resolve` lays layers (dicts or YAML files) over
the defaults key by key and checks every value; an unknown key or a bad value is a
one-line :class:`~fmkit.errors.FmkitError` (an unknown key names the closest valid one).
:class:`Open` sections (``model``, ``callbacks``) also take keys the schema does not list:
they are passed on (model keyword arguments, callback arguments) and checked there.

Command-line overrides are dotted assignments, ``--set optim.lr=3e-4`` (values parsed as
YAML), turned into a layer by :func:`parse_assignments`.

Training keys (``TRAIN``):

- ``model``: ``name`` of a registered model plus its keyword arguments (a bare string is
  the name). ``callbacks``: engine callbacks by name → their keyword arguments
  (e.g. ``concept_alignment: {every: 5}``; see :mod:`fmkit.engine.callbacks`).
- ``data``: ``kind`` (``frame`` or ``clip``), ``size`` (crops resized to size × size px;
  null keeps the crop size), ``clip_len`` (frames per clip; ``kind: clip``; consecutive crops,
  and of one window of consecutive frames when the faces were cropped in windows, ``fmkit
  preprocess --windows``), ``clips_per_video`` (random clips of each training video per epoch),
  ``eval_clips`` (evenly spaced clips per validation/test video, scored by their mean),
  ``short_videos`` (a video without a clip, with fewer face crops than ``clip_len`` or no
  window with as many consecutive face frames: ``error``, or ``skip`` it with a warning,
  recorded in the run's metrics.json), ``batch_size``,
  ``eval_batch_size`` (null: ``batch_size``), ``num_workers`` (DataLoader worker processes;
  persistent over the epochs, see :mod:`fmkit.engine.data`), ``prefetch_factor`` (batches
  each worker loads ahead; null: torch's 2; used with ``num_workers`` > 0), ``cache`` (null:
  decode the JPEG crops; ``auto`` or a folder: read them from one packed, memory-mapped file
  of decoded crops, built once and rebuilt when the manifest changes; ``auto`` keeps it in
  the faces folder, or the user cache when that folder is read-only, and only when it fits
  on disk; see :mod:`fmkit.data.cache`), ``balance`` (class-balanced
  sampling: as many real as fake training items per epoch), ``sbi`` (Self-Blended Images
  training: each real training crop with a fresh self-blend of it, instead of the
  dataset's own fakes; frame models), ``augment`` (training
  augmentations of :func:`fmkit.data.transforms.build_transform`: ``hflip``,
  ``color_jitter`` strength, ``blur`` probability, ``jpeg`` [qmin, qmax] or null, ``rrc``
  minimum area scale or null).
- ``optim``: ``optimizer`` (``adam``, ``adamw``, ``sgd``), ``lr``, ``weight_decay``,
  ``momentum`` (sgd), ``scheduler`` (``none`` or ``cosine`` over the epochs),
  ``warmup_epochs`` (linear warm-up from lr/10), ``grad_clip`` (max gradient norm; null: off).
- ``epochs`` (total), ``seed``, ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``),
  ``amp`` (mixed precision, CUDA only), ``monitor`` (validation value that picks ``best``;
  ``auto``: ``val_auc`` for frame detectors, ``val_video_auc`` for clip detectors (a video
  scored by the mean of its clips), ``val_loss`` otherwise).
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fmkit.errors import FmkitError

Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Option:
    """A leaf of a schema: its default and the check that validates (and normalises) a value."""

    default: Any
    check: Check


class Open(dict):
    """A schema section that also accepts keys it does not list (passed on unchecked)."""


Schema = Mapping[str, Any]


# --- checks ------------------------------------------------------------------------------


def integer(minimum: int, nullable: bool = False, maximum: int | None = None) -> Check:
    """An int in [minimum, maximum] (or null)."""

    def check(key: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise FmkitError(
                f"config {key} must be an integer >= {minimum}{upper}{' or null' if nullable else ''}, got {value!r}"
            )
        return value

    return check


def number(minimum: float, strict: bool = False, nullable: bool = False, maximum: float | None = None) -> Check:
    """A float > minimum (``strict``) or >= minimum, <= maximum (or null). YAML's ``1e-3`` string is accepted."""

    def check(key: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        try:
            x = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x) or x < minimum or (strict and x == minimum) or (maximum is not None and x > maximum):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise FmkitError(
                f"config {key} must be a number {bound}{upper}{' or null' if nullable else ''}, got {value!r}"
            )
        return x

    return check


def choice(*options: Any) -> Check:
    """One of ``options``."""

    def check(key: str, value: Any) -> Any:
        if value not in options:
            raise FmkitError(f"config {key} must be one of {', '.join(map(str, options))}, got {value!r}")
        return value

    return check


def boolean(key: str, value: Any) -> Any:
    """true or false."""
    if not isinstance(value, bool):
        raise FmkitError(f"config {key} must be true or false, got {value!r}")
    return value


def text(nullable: bool = True) -> Check:
    """A non-empty string (a path, a name), or null."""

    def check(key: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise FmkitError(f"config {key} must be a non-empty string{' or null' if nullable else ''}, got {value!r}")
        return value

    return check


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device(key: str, value: Any) -> Any:
    """auto, cpu, cuda or cuda:N."""
    if not isinstance(value, str) or not _DEVICE.match(value):
        raise FmkitError(f"config {key} must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def int_range(low: int, high: int) -> Check:
    """Null, or a pair [a, b] of ints with low <= a <= b <= high."""

    def check(key: str, value: Any) -> Any:
        if value is None:
            return None
        ok = (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and low <= value[0] <= value[1] <= high
        )
        if not ok:
            raise FmkitError(
                f"config {key} must be null or a pair [a, b] with {low} <= a <= b <= {high}, got {value!r}"
            )
        return [int(v) for v in value]

    return check


def subset(options_of: Callable[[], Sequence[str]]) -> Check:
    """A non-empty list of distinct names from ``options_of()`` (read when checked)."""

    def check(key: str, value: Any) -> Any:
        options = tuple(options_of())
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, (list, tuple))
            or not value
            or len(set(value)) != len(value)
            or any(v not in options for v in value)
        ):
            raise FmkitError(f"config {key} must be a list of distinct names from {', '.join(options)}, got {value!r}")
        return list(value)

    return check


def _notebook_steps(key: str, value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise FmkitError(f"config {key} must be a non-empty list of {{name: ..., parameters: {{...}}}}")
    for i, step in enumerate(value):
        if (
            not isinstance(step, Mapping)
            or not isinstance(step.get("name"), str)
            or (set(step) - {"name", "parameters"})
            or not isinstance(step.get("parameters") or {}, Mapping)
        ):
            raise FmkitError(f"config {key}[{i}] must be {{name: NOTEBOOK, parameters: {{...}}}}, got {step!r}")
    return [{"name": s["name"], "parameters": dict(s.get("parameters") or {})} for s in value]


def _layouts() -> Sequence[str]:
    from fmkit.data.index import LAYOUTS

    return LAYOUTS


def _layout(key: str, value: Any) -> Any:
    return choice(*_layouts())(key, value)


def _even_size(key: str, value: Any) -> Any:
    value = integer(32)(key, value)
    if value % 2:
        raise FmkitError(f"config {key} must be even, got {value}")
    return value


# --- schemas -----------------------------------------------------------------------------

#: Monitored validation values and whether larger is better.
MONITORS: dict[str, bool] = {
    "val_auc": True,
    "val_video_auc": True,
    "val_ap": True,
    "val_acc": True,
    "val_loss": False,
    "val_eer": False,
}

TRAIN: Schema = {
    "model": Open({"name": Option(None, text(nullable=True))}),
    "callbacks": Open({}),
    "data": {
        "kind": Option("frame", choice("frame", "clip")),
        "size": Option(None, integer(1, nullable=True)),
        "clip_len": Option(8, integer(1)),
        "clips_per_video": Option(1, integer(1)),
        "eval_clips": Option(4, integer(1)),
        "short_videos": Option("error", choice("error", "skip")),
        "batch_size": Option(32, integer(1)),
        "eval_batch_size": Option(None, integer(1, nullable=True)),
        "num_workers": Option(0, integer(0)),
        "prefetch_factor": Option(None, integer(1, nullable=True)),
        "cache": Option(None, text()),
        "balance": Option(False, boolean),
        "sbi": Option(False, boolean),
        "augment": {
            "hflip": Option(True, boolean),
            "color_jitter": Option(0.0, number(0.0)),
            "blur": Option(0.0, number(0.0, maximum=1.0)),
            "jpeg": Option(None, int_range(1, 100)),
            "rrc": Option(None, number(0.0, strict=True, nullable=True, maximum=1.0)),
        },
    },
    "optim": {
        "optimizer": Option("adam", choice("adam", "adamw", "sgd")),
        "lr": Option(1e-3, number(0.0, strict=True)),
        "weight_decay": Option(0.0, number(0.0)),
        "momentum": Option(0.9, number(0.0)),
        "scheduler": Option("none", choice("none", "cosine")),
        "warmup_epochs": Option(0, integer(0)),
        "grad_clip": Option(None, number(0.0, strict=True, nullable=True)),
    },
    "epochs": Option(10, integer(1)),
    "seed": Option(0, integer(0)),
    "device": Option("auto", device),
    "amp": Option(True, boolean),
    "monitor": Option("auto", choice("auto", *MONITORS)),
}

#: Keys of a training config that may change when a run is resumed (they do not change the result).
RESUMABLE_CHANGES = ("epochs", "device", "data.num_workers", "data.cache", "data.prefetch_factor")

PREPROCESS: Schema = {
    "frames": Option(32, integer(1)),  # frames sampled evenly over each video (when windows is 0)
    # windows of consecutive frames instead (clip models: flicker and jitter show between neighbouring frames):
    # this many windows of window_len consecutive frames each, spread evenly over each video
    # (fmkit.data.video.window_indices); 0: off, `frames` sampled evenly
    "windows": Option(0, integer(0)),
    "window_len": Option(16, integer(1)),
    "size": Option(224, integer(8)),  # crop side, px
    "margin": Option(1.3, number(1.0)),  # crop side / face-box side
    "batch_size": Option(32, integer(1)),  # frames per MTCNN batch
    "min_face_size": Option(20, integer(1)),  # px, MTCNN's smallest face
    "device": Option("cpu", device),
    "jpeg_quality": Option(95, integer(1, maximum=100)),
    # how the main face is found (fmkit.data.faces): "track" detects whole frames on keyframes only and
    # each frame in the region around the tracked face; "full" runs MTCNN on every whole frame
    "detection": Option("track", choice("track", "full")),
    "keyframes": Option(8, integer(1)),  # track: whole-frame detection every this many sampled frames
    "min_face_ratio": Option(0.1, number(0.0, maximum=1.0)),  # track: smallest keyframe face / frame's shorter side
}

#: The fake methods of ``fmkit synth`` (see :mod:`fmkit.data.synth`); here so that the config
#: schema and the synthesizer share one list without importing each other.
SYNTH_METHODS = ("faceswap", "selfblend", "flicker", "wobble")

SYNTH: Schema = {
    "videos": Option(16, integer(3)),  # real videos (one fake per method each)
    "identities": Option(None, integer(3, nullable=True)),  # null: min(8, videos)
    "frames": Option(16, integer(1)),
    "size": Option(128, _even_size),  # frame side, px
    "fps": Option(25, integer(1)),
    "seed": Option(0, integer(0)),
    "methods": Option(list(SYNTH_METHODS), subset(lambda: SYNTH_METHODS)),
}

PIPELINE: Schema = {
    "dataset": {"root": Option(None, text()), "layout": Option("auto", _layout)},
    "synth": SYNTH,
    "notebooks": Option(None, _notebook_steps),
    "notebooks_dir": Option(None, text()),
}


# --- resolving ---------------------------------------------------------------------------


def defaults(schema: Schema) -> dict[str, Any]:
    """The default config of a schema."""
    return {k: defaults(v) if isinstance(v, Mapping) else copy.deepcopy(v.default) for k, v in schema.items()}


def keys(schema: Schema, prefix: str = "") -> list[str]:
    """Every dotted key of a schema (sections and leaves)."""
    out = []
    for k, v in schema.items():
        out.append(f"{prefix}{k}")
        if isinstance(v, Mapping):
            out += keys(v, f"{prefix}{k}.")
    return out


def _unknown(name: str, schema_root: Schema, section: Schema) -> FmkitError:
    close = difflib.get_close_matches(name, keys(schema_root), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known here: {', '.join(section)})"
    return FmkitError(f"unknown config key {name!r}{hint}")


def _merge(schema: Schema, base: dict[str, Any], layer: Mapping[str, Any], root: Schema, prefix: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in layer.items():
        name = f"{prefix}{key}"
        if key not in schema:
            if isinstance(schema, Open):
                out[key] = copy.deepcopy(value)
                continue
            raise _unknown(name, root, schema)
        spec = schema[key]
        if isinstance(spec, Mapping):
            if not isinstance(value, Mapping):
                raise FmkitError(f"config {name} must be a mapping, got {value!r}")
            out[key] = _merge(spec, out.get(key) or {}, value, root, f"{name}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check(schema: Schema, cfg: dict[str, Any], prefix: str) -> None:
    for key, spec in schema.items():
        if isinstance(spec, Mapping):
            _check(spec, cfg[key], f"{prefix}{key}.")
        else:
            cfg[key] = spec.check(f"{prefix}{key}", cfg[key])


def resolve(schema: Schema, *layers: Mapping[str, Any] | str | os.PathLike | None) -> dict[str, Any]:
    """Defaults ← each layer in turn (a dict, a YAML file, or None); every value checked."""
    cfg = defaults(schema)
    for layer in layers:
        if layer is None:
            continue
        cfg = _merge(schema, cfg, read_yaml(layer) if isinstance(layer, (str, os.PathLike)) else layer, schema, "")
    _check(schema, cfg, "")
    return cfg


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["optim.lr=3e-4", "data.size=128"]`` → ``{"optim": {"lr": 0.0003}, "data": {"size": 128}}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise FmkitError(f"bad setting {item!r}: expected KEY=VALUE with a dotted key, e.g. optim.lr=3e-4")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise FmkitError(f"bad value in {item!r}: not valid YAML") from None
        *parents, leaf = key.split(".")
        holder = out
        for part in parents:
            holder = holder.setdefault(part, {})
            if not isinstance(holder, dict):
                raise FmkitError(f"setting {item!r} conflicts with an earlier setting of {part!r}")
        holder[leaf] = parsed
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


def dump_yaml(cfg: Mapping[str, Any]) -> str:
    """The config as YAML text (key order kept)."""
    return yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=False)


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


# --- training configs --------------------------------------------------------------------


def recipe_path(model: str) -> Path:
    """The packaged recipe of a registered model, ``fmkit/configs/train/<model>.yaml`` (may not exist)."""
    from importlib.resources import files

    return Path(str(files("fmkit") / "configs" / "train" / f"{model}.yaml"))


def _layer(config: Mapping[str, Any] | str | os.PathLike | None) -> dict[str, Any]:
    layer = read_yaml(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
    if isinstance(layer.get("model"), str):
        layer["model"] = {"name": layer["model"]}
    return layer


def resolve_config(
    config: Mapping[str, Any] | str | os.PathLike | None = None,
    *more: Mapping[str, Any] | str | os.PathLike | None,
    **overrides: Any,
) -> dict[str, Any]:
    """A training config: defaults ← ``config`` ← each of ``more`` ← ``overrides`` (top-level keys); validated.

    Layers are dicts or YAML files; nested mappings merge key by key. The model name is
    required (``model: NAME`` or ``model: {name: NAME, ...}``).
    """
    cfg = resolve(TRAIN, *(_layer(c) for c in (config, *more, overrides)))
    if not cfg["model"].get("name"):
        raise FmkitError("config model.name is missing: name a registered model (e.g. model: {name: whitening})")
    return cfg


def train_config(
    model: str,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    settings: Sequence[str] = (),
    **overrides: Any,
) -> dict[str, Any]:
    """What ``fmkit train MODEL`` runs: the model's packaged recipe ← ``config`` ← ``--set`` settings ← overrides."""
    recipe = recipe_path(model)
    return resolve_config(
        recipe if recipe.is_file() else None,
        {"model": {"name": model}},
        config,
        parse_assignments(settings),
        **overrides,
    )
