"""Per-person statistics of the interpretation claims, for k-fold cross-validation over persons.

:func:`fmkit.metrics.pooled_bootstrap` averages a statistic over folds and resamples persons
across them; it needs each fold's statistic as a function of the rows of its drawn persons.
This module gives those functions for the claims that are not AUCs of video scores:

- decorrelation (:func:`layer_moments`, :class:`DecorrelationRatio`): the mean |off-diagonal
  correlation| of the plain detector's layer over the whitened detector's, over every pixel of
  the drawn persons' test crops. Each person's features are summarised once (count, mean and
  centred scatter matrix of the layer's channels over all its pixels), and a resample combines
  the summaries of its persons (repeats counted twice), so the ratio is exact for any draw;
- concept AUC (:func:`concept_scores`): the mean over aligned axes of the concept AUC
  (:func:`fmkit.interpret.concepts.mean_concept_auc`'s figure) on the drawn persons' concept images;
- explanation faithfulness (:func:`versus_random_differences`): the per-face differences of
  :func:`fmkit.interpret.explain_eval.versus_random` (positive = re-label distillation better),
  averaged by :func:`fmkit.metrics.pooled_mean`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fmkit.interpret.concepts import axis_scores, layer_activations, mean_abs_offdiag
from fmkit.interpret.explain_eval import VERSUS
from fmkit.metrics import _rank_auc


@dataclass
class LayerMoments:
    """Per person: ``n`` (P,) feature columns (images × positions), ``mean`` (P, C) and centred
    ``scatter`` (P, C, C) of the analysed layer's channels; ``persons`` (P,) in order of first item."""

    persons: list[str]
    n: np.ndarray
    mean: np.ndarray
    scatter: np.ndarray

    def correlation(self, rows: np.ndarray) -> np.ndarray:
        """Channel correlation (C, C) over the pixels of persons ``rows`` (indices into ``persons``, repeats count)."""
        counts = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(self.persons)).astype(np.float64)
        n = counts * self.n
        total = n.sum()
        mean = (n[:, None] * self.mean).sum(0) / total
        dev = self.mean - mean
        scatter = np.einsum("p,pij->ij", counts, self.scatter) + np.einsum("p,pi,pj->ij", n, dev, dev)
        std = np.sqrt(np.clip(np.diag(scatter), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = scatter / np.outer(std, std)
        return np.nan_to_num(corr)


def layer_moments(model: nn.Module, data: Dataset, persons: Sequence[Hashable], batch_size: int = 32) -> LayerMoments:
    """:class:`LayerMoments` of the analysed layer (:func:`~fmkit.interpret.concepts.layer_activations`:
    the whitened features of a whitening model, the same layer of a baseline) over ``data``, whose
    item ``i`` shows person ``persons[i]`` (e.g. a test ``FrameDataset``'s ``frame["source_id"]``)."""
    persons = [str(p) for p in persons]
    if len(persons) != len(data):
        raise ValueError(f"{len(persons)} persons for {len(data)} items")
    order = list(dict.fromkeys(persons))
    code = {p: k for k, p in enumerate(order)}
    n = mean = scatter = None
    start = 0
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        feats = layer_activations(model, x).double()  # (B, C, h, w)
        b, c = feats.shape[:2]
        cols = feats.permute(0, 2, 3, 1).reshape(b, -1, c)  # (B, h·w, C)
        if n is None:
            n, mean, scatter = np.zeros(len(order)), np.zeros((len(order), c)), np.zeros((len(order), c, c))
        for i in range(b):
            k = code[persons[start + i]]
            v = cols[i].numpy()
            m = v.mean(0)
            d = v - m
            # merge this image's (count, mean, centred scatter) into its person's (Chan et al.)
            total = n[k] + v.shape[0]
            delta = m - mean[k]
            scatter[k] += d.T @ d + np.outer(delta, delta) * n[k] * v.shape[0] / total
            mean[k] += delta * v.shape[0] / total
            n[k] = total
        start += b
    if n is None:
        raise ValueError("layer_moments needs at least one item")
    return LayerMoments(order, n, mean, scatter)


@dataclass
class DecorrelationRatio:
    """rows (persons, repeats count) → mean |r| of ``plain``'s layer / mean |r| of ``whitened``'s, each over
    every pixel of those persons (a statistic of :func:`fmkit.metrics.pooled_bootstrap`; its rows are the
    persons of ``plain.persons``). Both summaries must list the same persons in the same order."""

    plain: LayerMoments
    whitened: LayerMoments

    def __post_init__(self) -> None:
        if self.plain.persons != self.whitened.persons:
            raise ValueError("the two layers' moments cover different persons")

    @property
    def persons(self) -> list[str]:
        return self.plain.persons

    def __call__(self, rows: np.ndarray) -> float:
        den = mean_abs_offdiag(self.whitened.correlation(rows))
        return mean_abs_offdiag(self.plain.correlation(rows)) / den if den > 0 else float("nan")


@dataclass
class ConceptScores:
    """rows (images, repeats count) → the mean over aligned axes of the concept AUC on those images (a
    statistic of :func:`fmkit.metrics.pooled_bootstrap`). ``ranks`` (N, K): each image's max-pooled
    activation on axis k, ranked into (0, 1); ``concept`` (N,): the axis its concept belongs to;
    ``persons`` (N,): its person."""

    ranks: np.ndarray
    concept: np.ndarray
    persons: list[str]

    def __call__(self, rows: np.ndarray) -> float:
        k = self.ranks.shape[1]
        return float(
            np.mean([_rank_auc(self.ranks[rows, a], (self.concept[rows] == a).astype(np.int64)) for a in range(k)])
        )


def concept_scores(model: nn.Module, concept_sets: Mapping[str, Dataset], batch_size: int = 32) -> ConceptScores:
    """:class:`ConceptScores` of a whitening model on its concept images (axis k ↔ the k-th concept of
    ``concept_sets``, whose datasets list each image's person in ``identities``), scored as
    :func:`fmkit.interpret.concepts.mean_concept_auc` scores them (the same value on all rows)."""
    names = list(concept_sets)
    scores = np.concatenate([axis_scores(model, concept_sets[n], batch_size)[:, : len(names)] for n in names])
    concept = np.concatenate([np.full(len(concept_sets[n]), k) for k, n in enumerate(names)])
    persons = [str(g) for n in names for g in concept_sets[n].identities]
    ranks = np.column_stack([pd.Series(scores[:, k]).rank().to_numpy() / (len(scores) + 1) for k in range(len(names))])
    return ConceptScores(ranks, concept, persons)


def versus_random_differences(scores: pd.DataFrame, method: str = "relabel", baseline: str = "random") -> pd.DataFrame:
    """Per face and figure of :data:`~fmkit.interpret.explain_eval.VERSUS`, the difference oriented so that
    positive = ``method`` better (deletion: baseline − method; insertion, mask agreement: method − baseline),
    as :func:`~fmkit.interpret.explain_eval.versus_random` computes it before averaging.

    ``scores``: :func:`~fmkit.interpret.explain_eval.compare_methods`' table. Columns: ``face``,
    ``identity``, ``figure``, ``value`` (NaN where a figure does not apply, e.g. mask agreement of a
    real face).
    """
    parts = []
    for figure, sign in VERSUS.items():
        wide = scores.pivot_table(index=["face", "identity"], columns="method", values=figure, dropna=False)
        diff = sign * (wide[method] - wide[baseline])
        parts.append(diff.rename("value").reset_index().assign(figure=figure))
    return pd.concat(parts, ignore_index=True)[["face", "identity", "figure", "value"]]


def frame_persons(dataset: Dataset) -> list[str]:
    """The person (``source_id``) of every item of a :class:`~fmkit.data.datasets.FrameDataset`, in item order."""
    frame = getattr(dataset, "frame", None)
    if frame is None:
        raise ValueError("frame_persons needs a FrameDataset (its manifest rows in .frame)")
    return frame["source_id"].astype(str).tolist()


__all__ = [
    "ConceptScores",
    "DecorrelationRatio",
    "LayerMoments",
    "concept_scores",
    "frame_persons",
    "layer_moments",
    "versus_random_differences",
]
