"""The one place where timm backbones are created, and the input normalisation they expect.

:func:`create_backbone` builds a timm model (images (N, 3, H, W) → logits (N, num_classes))
from scratch, from timm's pretrained weights (the local Hugging Face cache, downloading
when online), or from a local timm state-dict file (its classifier dropped). Every
failure the user can fix (unknown name, missing or mismatching file, weights neither cached
nor downloadable) is a one-line :class:`~fmkit.errors.FmkitError`.

:func:`input_normalization` gives the per-channel mean and std (of images in [0, 1]) that
the backbone's pretrained configuration expects, and :class:`Normalize` applies them inside
the model, so datasets and transforms deliver plain [0, 1] images.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import timm
import torch
from torch import Tensor, nn

from fmkit.errors import FmkitError

__all__ = ["Normalize", "create_backbone", "input_normalization"]

Triple = tuple[float, float, float]


def _first_line(err: BaseException, limit: int = 200) -> str:
    """The gist of ``err`` on one line (a heading such as "Error(s) in loading state_dict…:" gets its first item)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_name(name: str) -> None:
    if ":" in name:  # timm's "hf-hub:org/repo" and "local-dir:path" sources
        return
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
        raise FmkitError(f"unknown backbone {name!r}: not a timm model{hint}")


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _from_checkpoint(name: str, path: Path, num_classes: int, timm_kwargs: dict[str, Any]) -> nn.Module:
    if not path.is_file():
        raise FmkitError(f"backbone checkpoint not found: {path} (expected a timm state-dict file)")
    from safetensors import SafetensorError
    from timm.models import load_state_dict

    overlay = {"file": str(path), "source": ""}  # the file wins over any hub source of the default cfg
    try:
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=num_classes, **timm_kwargs
        )
        keys = set(load_state_dict(str(path)))
    except (
        RuntimeError,
        OSError,
        ValueError,
        EOFError,
        KeyError,
        AttributeError,
        UnpicklingError,
        SafetensorError,
    ) as err:  # shape mismatches, unreadable or foreign files
        raise FmkitError(f"cannot load {name} weights from {path}: {_first_line(err)}") from err
    # timm loads non-strictly when it drops the classifier: check that the file covers the backbone
    heads = _classifier_prefixes(model)

    def head(key: str) -> bool:
        return any(key == h or key.startswith(h + ".") for h in heads)

    expected = {k for k in model.state_dict() if not head(k)}
    missing, unexpected = sorted(expected - keys), sorted(k for k in keys - expected if not head(k))
    if missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        raise FmkitError(
            f"backbone checkpoint {path} does not fit {name}: {' and '.join(parts)} weights "
            f"(expected a state dict of timm's {name})"
        )
    return model


def _offline_message(name: str, timm_kwargs: dict[str, Any]) -> str:
    from huggingface_hub import constants

    cache = Path(timm_kwargs.get("cache_dir") or constants.HF_HUB_CACHE)
    try:
        repo = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None)
    except RuntimeError:
        repo = None
    if repo:
        folder = "models--" + repo.replace("/", "--")
        place = (
            f"on an online machine run `hf download {repo}` and copy {folder} from its Hugging Face cache to {cache}"
        )
        what = f"{name} ({repo}) are not in the Hugging Face cache ({cache / folder} is missing)"
    else:
        place, what = f"place them in {cache}", f"{name} are not in the Hugging Face cache {cache}"
    return (
        f"pretrained weights of {what} and cannot be downloaded (offline or HF_HUB_OFFLINE=1): {place}; "
        f"or, online, save torch.save(timm.create_model({name!r}, pretrained=True).state_dict(), 'FILE.pth'), "
        f"copy FILE.pth here and set model.checkpoint: FILE.pth instead of pretrained"
    )


def _pretrained(name: str, num_classes: int, timm_kwargs: dict[str, Any]) -> nn.Module:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **timm_kwargs)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        raise FmkitError(_offline_message(name, timm_kwargs)) from err
    except HfHubHTTPError as err:
        raise FmkitError(f"cannot download the pretrained weights of {name}: {_first_line(err)}") from err
    except (RuntimeError, OSError) as err:
        # RuntimeError: timm has no weights for the model, or they do not fit; OSError: URL-hosted weights offline
        raise FmkitError(f"cannot load the pretrained weights of {name}: {_first_line(err)}") from err


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    checkpoint: str | os.PathLike | None = None,
    num_classes: int = 1,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm model ``name``: images (N, 3, H, W) → logits (N, num_classes) (0 classes: pooled features).

    Args:
        name: a timm model name, optionally with a pretrained tag (``resnet18.a1_in1k``).
        pretrained: load timm's pretrained weights, from the local Hugging Face cache
            (``huggingface_hub.constants.HF_HUB_CACHE``), downloading them when online.
        checkpoint: a local timm state-dict file (``.pth``/``.safetensors``, e.g. saved from
            ``timm.create_model(name, pretrained=True).state_dict()``); its classifier is dropped
            unless ``num_classes`` matches the pretrained configuration's.
        num_classes: outputs of the new head (1: one fake logit).
        timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_rate``, ``in_chans``).

    Raises:
        FmkitError: an unknown name, ``pretrained`` together with ``checkpoint``, a missing or
            mismatching checkpoint file, or pretrained weights neither cached nor downloadable.
    """
    _check_name(name)
    if pretrained and checkpoint is not None:
        raise FmkitError(f"backbone {name}: pass pretrained=True or checkpoint={os.fspath(checkpoint)!r}, not both")
    if checkpoint is not None:
        return _from_checkpoint(name, Path(checkpoint), num_classes, timm_kwargs)
    if pretrained:
        return _pretrained(name, num_classes, timm_kwargs)
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **timm_kwargs)
    except RuntimeError as err:  # e.g. an unknown pretrained tag
        raise FmkitError(f"cannot create backbone {name}: {_first_line(err)}") from err


def input_normalization(model: nn.Module) -> tuple[Triple, Triple]:
    """Per-channel (mean, std) of images in [0, 1] that ``model``'s pretrained configuration expects.

    From ``timm.data.resolve_data_config``; a model without a timm configuration gets ImageNet's.
    """
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    mean, std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    return mean, std  # type: ignore[return-value]


class Normalize(nn.Module):
    """(x − mean) / std per channel, for images (N, C, H, W) or clips (N, C, T, H, W) in [0, 1].

    ``mean`` and ``std`` are persistent buffers of shape (1, C, 1, 1), so a checkpoint records them.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() == 0 or mean_t.shape != std_t.shape:
            raise ValueError(f"mean and std need one value per channel each, got {list(mean)} and {list(std)}")
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (4, 5):
            raise ValueError(f"Normalize expects images (N, C, H, W) or clips (N, C, T, H, W), got {tuple(x.shape)}")
        if x.dim() == 5:
            return (x - self.mean.unsqueeze(-1)) / self.std.unsqueeze(-1)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        def fmt(t: Tensor) -> str:
            return "(" + ", ".join(f"{v:.4g}" for v in t.flatten().tolist()) + ")"

        return f"mean={fmt(self.mean)}, std={fmt(self.std)}"
