"""Concept image sets for Concept Whitening, built from the faces manifest.

A concept is a set of images in which it is present. fmkit builds them automatically:

* facial regions from the five MTCNN landmarks — ``left_eye``, ``right_eye``, ``nose``,
  ``mouth`` (the midpoint of the two mouth corners): a square patch of side
  ``patch_frac`` × the crop size centred on the landmark, resized to the crop size;
* ``blend_boundary`` on data with ground-truth masks (synthetic fakes): a patch centred
  on the strongest point of the blend boundary, where the soft mask m crosses 1/2,
  scored by 4·m·(1 − m).

Items are float tensors (3, S, S) in [0, 1], as from ``FrameDataset``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from fmkit.data.datasets import filter_split, load_image, load_mask, open_manifest
from fmkit.data.schema import LABEL_FAKE, row_to_crop
from fmkit.errors import FmkitError

FACE_CONCEPTS = ("left_eye", "right_eye", "nose", "mouth")
CONCEPTS = FACE_CONCEPTS + ("blend_boundary",)
_LANDMARK = {
    "left_eye": ["left_eye"],
    "right_eye": ["right_eye"],
    "nose": ["nose"],
    "mouth": ["mouth_left", "mouth_right"],
}


def landmark_centre(row: pd.Series, concept: str) -> np.ndarray:
    """The concept's landmark (x, y) in crop pixels (mouth: the midpoint of its corners)."""
    pts = np.array([[row[f"{n}_x"], row[f"{n}_y"]] for n in _LANDMARK[concept]], np.float32)
    return row_to_crop(row, pts).mean(axis=0)


def boundary_centre(mask: torch.Tensor, key: int = 0) -> np.ndarray | None:
    """(x, y) of a point on the blend seam of a soft mask (H, W) in [0, 1]; None if it has no seam.

    The mask is first scaled by its maximum (a blend ratio below 1 leaves the blended
    region at m < 1), so the seam is where m / max m crosses 1/2, scored by
    4·m'(1 − m') with m' = m / max m. Seam pixels (score ≥ 0.9) form a ring; the point
    returned is the seam pixel at angle 2π·frac(key·φ) (φ the golden ratio) around the
    ring's centroid, so patches of different images spread over the whole seam instead of
    all sitting at its first pixel in raster order.
    """
    top = float(mask.max())
    if top <= 0.05:
        return None
    m = mask / top
    score = 4 * m * (1 - m)
    if float(score.max()) < 0.75:
        return None
    ys, xs = np.nonzero((score >= 0.9 * float(score.max())).numpy())
    cx, cy = xs.mean(), ys.mean()
    angles = np.arctan2(ys - cy, xs - cx)
    target = 2 * np.pi * ((key * 0.6180339887) % 1.0) - np.pi
    i = int(np.argmin(np.abs(np.angle(np.exp(1j * (angles - target))))))
    return np.array([xs[i], ys[i]], np.float32)


def crop_patch(image: torch.Tensor, centre: np.ndarray, side: int, out_size: int | None = None) -> torch.Tensor:
    """A ``side`` square of ``image`` (3, H, W) around ``centre`` (x, y), clamped inside, resized to
    (out_size, out_size), or back to (H, W) by default."""
    _, h, w = image.shape
    x0 = int(np.clip(round(centre[0] - side / 2), 0, w - side))
    y0 = int(np.clip(round(centre[1] - side / 2), 0, h - side))
    patch = image[:, y0 : y0 + side, x0 : x0 + side]
    size = (out_size, out_size) if out_size else (h, w)
    return torch.nn.functional.interpolate(patch[None], size=size, mode="bilinear", align_corners=False)[0]


def concept_region(row: pd.Series, root: Path, concept: str, size: int, patch_frac: float = 0.35) -> np.ndarray | None:
    """Where concept ``concept`` lies in a manifest row's crop, resized to ``size``: a boolean (size, size) mask.

    Facial regions: the ``patch_frac`` square around the landmark (the patch the concept
    images are cut from). ``blend_boundary``: the seam band, 4·m'(1 − m') ≥ 1/2 with
    m' = m / max m, on fakes with a ground-truth mask; None where the concept is absent.
    """
    if concept == "blend_boundary":
        if row["label"] != LABEL_FAKE or not str(row["mask_path"]):
            return None
        mask = load_mask(root / row["mask_path"])
        if float(mask.max()) <= 0.05:
            return None
        m = mask / mask.max()
        band = (4 * m * (1 - m) >= 0.5).float()[None, None]
        return torch.nn.functional.interpolate(band, size=(size, size), mode="nearest")[0, 0].numpy() > 0.5
    x, y = landmark_centre(row, concept) * (size / int(row["crop_size"]))
    half = patch_frac * size / 2
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return (np.abs(xx - x) <= half) & (np.abs(yy - y) <= half)


class ConceptDataset(Dataset):
    """Images of one concept: patches of the manifest's crops (see the module docstring).

    Patches come out at ``size`` px (default: the crop size), like training images.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | pd.DataFrame,
        concept: str,
        split: str | Sequence[str] | None = "train",
        patch_frac: float = 0.35,
        root: str | os.PathLike | None = None,
        size: int | None = None,
    ) -> None:
        if concept not in CONCEPTS:
            raise FmkitError(f"unknown concept {concept!r}: expected one of {', '.join(CONCEPTS)}")
        df, self.root = open_manifest(manifest, root)
        df = filter_split(df, split)
        if concept == "blend_boundary":
            df = df[(df["label"] == LABEL_FAKE) & (df["mask_path"].astype(str) != "")]
        self.concept, self.patch_frac, self.size = concept, patch_frac, size
        self.items: list[tuple[str, np.ndarray]] = []
        self.identities: list[str] = []  # source_id of each item's video (for intervals by identity)
        for _, row in df.sort_values(["video_id", "frame_idx"]).iterrows():
            centre = (
                boundary_centre(load_mask(self.root / row["mask_path"]), key=int(row["frame_idx"]) + len(self.items))
                if concept == "blend_boundary"
                else landmark_centre(row, concept)
            )
            if centre is not None:
                self.items.append((row["crop_path"], centre))
                self.identities.append(str(row["source_id"]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        path, centre = self.items[i]
        image = load_image(self.root / path)
        side = max(4, int(round(self.patch_frac * image.shape[-1])))
        return crop_patch(image, centre, side, self.size)


def concept_datasets(
    manifest: str | os.PathLike | pd.DataFrame,
    concepts: Sequence[str] | None = None,
    split: str | Sequence[str] | None = "train",
    patch_frac: float = 0.35,
    root: str | os.PathLike | None = None,
    size: int | None = None,
) -> dict[str, ConceptDataset]:
    """One ConceptDataset per concept, in order (axis k ↔ k-th concept).

    By default: the four facial regions, plus ``blend_boundary`` when the manifest has
    ground-truth masks. An explicitly requested concept with no image is an error.
    """
    df, root = open_manifest(manifest, root)
    if concepts is None:
        has_masks = (df["mask_path"].astype(str) != "").any()
        concepts = CONCEPTS if has_masks else FACE_CONCEPTS
    sets = {c: ConceptDataset(df, c, split, patch_frac, root, size) for c in concepts}
    empty = [c for c, ds in sets.items() if len(ds) == 0]
    if empty:
        raise FmkitError(f"no image for concept(s) {', '.join(empty)} in split {split} of the faces manifest")
    return sets


def sample_concept_batch(dataset: Dataset, n: int, key: Sequence[int]) -> torch.Tensor:
    """``n`` distinct images (n, 3, S, S) of a concept set, drawn by ``key`` alone.

    The draw depends only on ``key`` (e.g. (seed, concept, global step)), never on
    earlier draws, so a resumed training run draws exactly what an uninterrupted one
    would.
    """
    rng = np.random.default_rng([int(k) for k in key])
    idx = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    return torch.stack([dataset[int(i)] for i in sorted(idx)])
