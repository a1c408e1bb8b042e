"""Reading the whitened layer: decorrelation, concept AUC, top images and activation maps.

Works on a ``WhiteningDetector`` (axis k of its whitened layer ↔ ``concepts[k]``) and, for
comparison, on the plain ``baseline2d`` at the same layer (``features_at``). Every
function runs the model in eval mode without gradients.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from fmkit.data.concepts import concept_region
from fmkit.data.datasets import load_image
from fmkit.metrics import auc, auc_interval, bootstrap_interval
from fmkit.models.modes import eval_mode


def layer_activations(model: nn.Module, images: Tensor) -> Tensor:
    """The analysed layer's output (N, C, h, w): whitened features, or the same layer of a baseline."""
    with eval_mode(model):
        if hasattr(model, "whitened_features"):
            return model.whitened_features(images)
        return model.features_at(images)


def _batches(data: Dataset | Iterable[Tensor], batch_size: int) -> Iterable[Tensor]:
    if isinstance(data, Dataset):
        for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
            yield batch[0] if isinstance(batch, (tuple, list)) else batch
    else:
        yield from data


def axis_scores(model: nn.Module, data: Dataset | Iterable[Tensor], batch_size: int = 32) -> np.ndarray:
    """Per-image activation of every axis, max-pooled over space (the Concept Whitening score): (N, C)."""
    out = [layer_activations(model, x).flatten(2).amax(-1) for x in _batches(data, batch_size)]
    return torch.cat(out).double().numpy()


def feature_correlation(
    model: nn.Module, data: Dataset | Iterable[Tensor], batch_size: int = 32, max_samples: int = 20000
) -> np.ndarray:
    """Correlation matrix (C, C) of the layer's channels over all images and spatial positions."""
    cols = [layer_activations(model, x).transpose(0, 1).flatten(1) for x in _batches(data, batch_size)]
    feats = torch.cat(cols, dim=1).double()  # (C, N·h·w)
    if feats.shape[1] > max_samples:
        idx = torch.linspace(0, feats.shape[1] - 1, max_samples).long()
        feats = feats[:, idx]
    return np.nan_to_num(np.corrcoef(feats.numpy()))


def mean_abs_offdiag(corr: np.ndarray) -> float:
    """Mean |off-diagonal| entry of a correlation matrix: 0 for fully decorrelated features."""
    c = np.asarray(corr)
    mask = ~np.eye(len(c), dtype=bool)
    return float(np.abs(c[mask]).mean())


def concept_auc(
    model: nn.Module, concept_sets: Mapping[str, Dataset], batch_size: int = 32, resamples: int = 0, seed: int = 0
) -> pd.DataFrame:
    """Concept AUC of each aligned axis: how well axis k separates concept k's images from the others'.

    Axis k ↔ the k-th concept of ``concept_sets``; the score of an image on axis k is the
    axis's max-pooled activation. Returns a table (concept, axis, auc, n_images); with
    ``resamples`` > 0 also ``lo``, ``hi``: a 95 % bootstrap interval resampling the
    images' identities (the sets' ``identities`` lists).
    """
    scores = {name: axis_scores(model, ds, batch_size) for name, ds in concept_sets.items()}
    who = {name: list(getattr(ds, "identities", range(len(ds)))) for name, ds in concept_sets.items()}
    rows = []
    for k, name in enumerate(concept_sets):
        pos = scores[name][:, k]
        neg = np.concatenate([s[:, k] for other, s in scores.items() if other != name])
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        values = np.r_[pos, neg]
        ranks = pd.Series(values).rank().to_numpy() / (len(values) + 1)  # monotone into (0, 1): same AUC
        groups = who[name] + [g for other in concept_sets if other != name for g in who[other]]
        value, lo, hi = auc_interval(ranks, labels, groups, resamples=resamples or 1, seed=seed)
        row = {"concept": name, "axis": k, "auc": value, "n_images": len(pos)}
        if resamples:
            row["lo"], row["hi"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def mean_concept_auc(
    model: nn.Module, concept_sets: Mapping[str, Dataset], batch_size: int = 32, resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """The mean over axes of :func:`concept_auc`, with a 95 % interval resampling identities of all sets at once."""
    names = list(concept_sets)
    scores = np.concatenate([axis_scores(model, concept_sets[n], batch_size)[:, : len(names)] for n in names])
    concept = np.concatenate([np.full(len(concept_sets[n]), k) for k, n in enumerate(names)])
    groups = [g for n in names for g in getattr(concept_sets[n], "identities", range(len(concept_sets[n])))]
    ranks = np.column_stack([pd.Series(scores[:, k]).rank().to_numpy() / (len(scores) + 1) for k in range(len(names))])

    def mean_auc(rows: np.ndarray) -> float:
        return float(np.mean([auc(ranks[rows, k], concept[rows] == k) for k in range(len(names))]))

    return (mean_auc(np.arange(len(concept))), *bootstrap_interval(mean_auc, groups, resamples=resamples, seed=seed))


def top_images(
    model: nn.Module, dataset: Dataset, axes: Sequence[int], k: int = 5, batch_size: int = 32
) -> dict[int, list[int]]:
    """Indices of the ``k`` dataset items that activate each axis most (max-pooled)."""
    scores = axis_scores(model, dataset, batch_size)
    return {a: np.argsort(-scores[:, a], kind="stable")[:k].tolist() for a in axes}


def activation_maps(model: nn.Module, images: Tensor, axis: int) -> Tensor:
    """Axis ``axis`` of the layer for images (N, 3, H, W), upsampled to (N, H, W) and scaled to [0, 1] per image.

    A map without spatial contrast (e.g. a 1 × 1 layer) comes out all zero.
    """
    maps = layer_activations(model, images)[:, axis : axis + 1]
    maps = torch.nn.functional.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = maps.flatten(1).amin(1)[:, None, None]
    hi = maps.flatten(1).amax(1)[:, None, None]
    span = hi - lo
    return torch.where(
        span > 1e-6 * hi.abs().clamp_min(1.0), (maps - lo) / span.clamp_min(1e-12), torch.zeros_like(maps)
    )


def axis_gallery(
    model: nn.Module, dataset: Dataset, axes: Mapping[str, int], k: int = 5, batch_size: int = 32
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
    """The top-``k`` images of each named axis and that axis's activation maps over them.

    Returns (images, maps): per name, ``k`` images (H, W, 3) in [0, 1] and maps (H, W) in
    [0, 1], ready for ``fmkit.plots.image_rows``.
    """
    top = top_images(model, dataset, list(axes.values()), k, batch_size)
    images, maps = {}, {}
    for name, axis in axes.items():
        x = torch.stack([dataset[i][0] for i in top[axis]])
        images[name] = [img.permute(1, 2, 0).clamp(0, 1).numpy() for img in x]
        maps[name] = list(activation_maps(model, x, axis).numpy())
    return images, maps


def pointing(
    model: nn.Module,
    manifest: pd.DataFrame,
    root: str | os.PathLike,
    concepts: Sequence[str],
    size: int,
    max_images: int = 200,
    patch_frac: float = 0.35,
) -> pd.DataFrame:
    """How much of each concept axis's activation falls inside its concept's region (a pointing score).

    For axis k ↔ ``concepts[k]`` and up to ``max_images`` crops of ``manifest`` (e.g. the test
    split) where the concept is present, the axis's activation map (upsampled to ``size``,
    scaled to [0, 1] per image) is summed inside the region of :func:`fmkit.data.concepts.concept_region`
    and divided by its total. ``area`` is the region's share of the crop: the score of a map
    spread evenly, i.e. chance. Returns (concept, axis, inside, area, n_images).
    """
    root = Path(root)
    rows = []
    for k, concept in enumerate(concepts):
        images, regions = [], []
        for _, row in manifest.sort_values(["video_id", "frame_idx"]).iterrows():
            region = concept_region(row, root, concept, size, patch_frac)
            if region is not None and region.any():
                images.append(load_image(root / row["crop_path"]))
                regions.append(region)
            if len(images) >= max_images:
                break
        if not images:
            rows.append({"concept": concept, "axis": k, "inside": float("nan"), "area": float("nan"), "n_images": 0})
            continue
        x = torch.nn.functional.interpolate(torch.stack(images), size=(size, size), mode="bilinear", antialias=True)
        maps = torch.cat([activation_maps(model, batch, k) for batch in x.split(32)]).numpy()
        region = np.stack(regions)
        inside = (maps * region).sum((1, 2)) / np.maximum(maps.sum((1, 2)), 1e-12)
        rows.append(
            {
                "concept": concept,
                "axis": k,
                "inside": float(inside.mean()),
                "area": float(region.mean()),
                "n_images": len(images),
            }
        )
    return pd.DataFrame(rows)


def whitening_inputs(model: nn.Module, data: Dataset | Iterable[Tensor], batch_size: int = 32) -> Tensor:
    """The whitened layer's input features (C, N·h·w) over ``data`` (eval mode), float64."""
    cols = []
    with eval_mode(model):
        for x in _batches(data, batch_size):
            cols.append(model.whitening_inputs(x).transpose(0, 1).flatten(1))
    return torch.cat(cols, dim=1).double()


def decorrelation(model: nn.Module, data: Dataset, batch_size: int = 32, max_samples: int = 20000) -> dict[str, float]:
    """Mean |off-diagonal correlation| of a whitening model's layer input (``unwhitened``) and output
    (``whitened``, with the eval statistics) over ``data``, and the layer's whitening error on these
    held-out features, ``whitening_error`` = ‖Cov(z) − I‖_F / √C within its groups (0: perfectly whitened)."""

    def sample(feats: Tensor) -> Tensor:
        if feats.shape[1] > max_samples:
            feats = feats[:, torch.linspace(0, feats.shape[1] - 1, max_samples).long()]
        return feats

    before = mean_abs_offdiag(np.nan_to_num(np.corrcoef(sample(whitening_inputs(model, data, batch_size)).numpy())))
    z = sample(
        torch.cat(
            [layer_activations(model, x).transpose(0, 1).flatten(1) for x in _batches(data, batch_size)], dim=1
        ).double()
    )
    z = z - z.mean(1, keepdim=True)
    g = model.whitening.group_size
    blocks = z.reshape(z.shape[0] // g, g, -1)
    cov = blocks @ blocks.transpose(1, 2) / z.shape[1]
    error = float(
        torch.linalg.matrix_norm(cov - torch.eye(g, dtype=cov.dtype)).square().sum().sqrt() / z.shape[0] ** 0.5
    )
    after = mean_abs_offdiag(np.nan_to_num(np.corrcoef(z.numpy())))
    return {"unwhitened": before, "whitened": after, "whitening_error": error}
