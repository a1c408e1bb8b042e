"""On-the-fly Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): each real crop and its self-blend as a pair.

:class:`SelfBlendPairs` wraps a dataset of face crops with manifest rows (a
:class:`fmkit.data.datasets.FrameDataset`: ``frame`` holds the rows, ``root`` the faces
folder) and serves only its *real* crops. Item ``i`` is the pair

    ``x``: (2, 3, H, W) float in [0, 1]: the real crop, then its self-blend;
    ``y``: (2,) float: ``[0., 1.]`` (0 real, 1 fake);
    and with ``with_masks=True`` a third element, (2, H, W): zeros, then the blend mask,

so every batch is class-balanced and holds both halves of each pair; fakes are unlimited
(a fresh blend every epoch). :func:`collate_pairs` flattens a batch of pairs to
``(2B, 3, H, W)`` / ``(2B,)`` (``DataLoader(..., collate_fn=collate_pairs)``).

The blend (:func:`self_blend_crop`) works on the stored crop (uint8, its own size), with
the crop's five MTCNN landmarks mapped into crop pixels: the source is a colour-jittered
(hue, saturation, brightness, contrast), slightly rescaled and shifted copy of the crop,
optionally blurred or down-and-up-sampled (SBI's "frequency" jitter,
:func:`fmkit.data.blend.resample`), blended in under a deformed, eroded/dilated and
blurred landmark hull mask scaled by a random blend ratio (:mod:`fmkit.data.blend`).
:class:`SBIRanges` sets the ranges; its default is
:data:`SBI_TRAIN`, wider than the synthetic dataset's ``selfblend`` fakes
(:meth:`fmkit.data.blend.SBIParams.sample`), as in the paper, where the training blends
are stronger than most test manipulations.

Determinism: the blend of item ``i`` in epoch ``e`` is drawn from
``numpy.random.default_rng([seed, e, i])`` only (call :meth:`SelfBlendPairs.set_epoch`
at the start of each epoch; DataLoader workers do not matter). The wrapped dataset's
``transform`` is applied once to both halves stacked as a clip (3, 2, H, W), so its random
draws (torch's global RNG, which the engine seeds per worker) are the same for the real
crop and its blend. The wrapper flips the pair (and its mask) itself, with probability 1/2
from the same (seed, epoch, index) stream (``hflip``): give the wrapped dataset a transform
without random geometry (resize, colour jitter, blur, JPEG are fine; a random flip or crop
there would move the images but not the masks).

This module depends on :mod:`fmkit.data` only (no engine, no models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from fmkit.data.blend import MaskParams, about_face, alpha_blend, blend_mask, face_unit, jitter_colour, resample, warp
from fmkit.data.datasets import read_rgb
from fmkit.data.schema import BOX_COLUMNS, LABEL_REAL, landmarks_in_crop, row_to_crop
from fmkit.errors import FmkitError

__all__ = ["SBI_TRAIN", "SBIRanges", "SelfBlendPairs", "collate_pairs", "crop_landmarks", "self_blend_crop"]


@dataclass(frozen=True)
class SBIRanges:
    """Ranges of one self-blend draw (uniform unless said otherwise).

    ``hue`` ± degrees; ``saturation``, ``contrast``, ``scale`` (lo, hi) factors;
    ``brightness`` ± in [0, 1] units; ``shift`` ± face units (x and y); ``blur``
    probability of a gaussian blur of the source with sigma in ``blur_sigma`` (face
    units); ``downsample`` probability of a down-and-up-sampling of the source by a factor
    in ``downsample_factor``; ``deform`` ± face units of the mask's vertex jitter;
    ``ratios`` the blend ratios drawn from (uniformly over the tuple).
    """

    hue: float = 10.0
    saturation: tuple[float, float] = (0.7, 1.3)
    brightness: float = 0.12
    contrast: tuple[float, float] = (0.7, 1.3)
    scale: tuple[float, float] = (0.93, 1.07)
    shift: float = 0.06
    blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.02, 0.06)
    downsample: float = 0.3
    downsample_factor: tuple[float, float] = (1.5, 2.5)
    deform: float = 0.08
    ratios: tuple[float, ...] = (0.5, 0.75, 1.0, 1.0, 1.0, 1.0)


#: The training ranges (stronger than the synthetic ``selfblend`` fakes: see the module doc).
SBI_TRAIN = SBIRanges()


def crop_landmarks(row: pd.Series | dict) -> tuple[np.ndarray, np.ndarray]:
    """A manifest row's five landmarks (5, 2) and face box (4,) in the pixels of its stored crop."""
    row = pd.Series(row)
    box = row_to_crop(row, row[BOX_COLUMNS].to_numpy(float).reshape(2, 2))
    return landmarks_in_crop(row), box.reshape(4)


def self_blend_crop(
    img: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    ranges: SBIRanges = SBI_TRAIN,
    box: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One self-blend of a face crop (H, W, 3) uint8 with landmarks (5, 2) in its pixels.

    Returns (the blended crop (H, W, 3) uint8, the blend mask (H, W) float32 in [0, 1]);
    the crop is unchanged where the mask is 0. All randomness comes from ``rng``.
    """
    r = ranges
    unit = face_unit(landmarks)
    source = jitter_colour(
        img,
        hue=float(rng.uniform(-r.hue, r.hue)),
        saturation=float(rng.uniform(*r.saturation)),
        brightness=float(rng.uniform(-r.brightness, r.brightness)),
        contrast=float(rng.uniform(*r.contrast)),
    )
    matrix = about_face(landmarks, float(rng.uniform(*r.scale)), rng.uniform(-r.shift, r.shift, 2).astype(np.float32))
    source = warp(source, matrix, img.shape)
    if rng.random() < r.blur:
        source = cv2.GaussianBlur(source, (0, 0), max(float(rng.uniform(*r.blur_sigma)) * unit, 0.3))
    if rng.random() < r.downsample:
        source = resample(source, float(rng.uniform(*r.downsample_factor)))
    mask = blend_mask(img.shape, landmarks, MaskParams.sample(rng, deform=r.deform, ratios=r.ratios), box)
    return alpha_blend(img, source, mask), mask


class SelfBlendPairs(Dataset):
    """Pairs (real crop, its self-blend) from the real crops of a frame dataset; see the module doc.

    Args:
        frames: a dataset with manifest rows ``frame`` (DataFrame: ``crop_path``, ``label``,
            ``video_id``, the landmark, box and crop columns) and the faces folder ``root``,
            e.g. ``FrameDataset(faces, split="train", transform=...)``. Its ``transform``
            (if any) maps the stacked pair (3, 2, H, W), float in [0, 1].
        seed: the blends depend on (seed, epoch, index) only.
        ranges: the jitter ranges of the blend.
        with_masks: also return the masks (2, H, W) (zeros for the real crop), resized like
            the images when the transform changes the spatial size (bilinear, no augmentation).
        cache: keep decoded crops in memory (uint8) after their first read.
        hflip: flip each pair (and mask) left-right with probability 1/2.
    """

    def __init__(
        self,
        frames: Dataset,
        seed: int = 0,
        ranges: SBIRanges = SBI_TRAIN,
        with_masks: bool = False,
        cache: bool = True,
        hflip: bool = True,
    ) -> None:
        rows = frames.frame
        self.rows = rows[rows["label"] == LABEL_REAL].reset_index(drop=True)
        if not len(self.rows):
            raise FmkitError("Self-Blended Images training needs real training crops; the dataset has none")
        self.root, self.transform = frames.root, getattr(frames, "transform", None)
        self.seed, self.ranges, self.with_masks, self.hflip = seed, ranges, with_masks, hflip
        self.epoch = 0
        self.video_ids: list[str] = self.rows["video_id"].astype(str).tolist()
        self.labels = torch.zeros(len(self.rows))  # the label of the pair's first (real) half
        self._geometry = [crop_landmarks(r) for r in self.rows.to_dict("records")]
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def set_epoch(self, epoch: int) -> None:
        """Draw the blends of epoch ``epoch`` (call before iterating an epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, i: int) -> np.ndarray:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = read_rgb(self.root / self.rows.at[i, "crop_path"])
        if self._cache is not None:
            self._cache[i] = img
        return img

    def blend(self, i: int, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(real crop, self-blend, mask) of item ``i`` (uint8, uint8, float32 numpy), flipped, before the transform."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, i])
        real = self._image(i)
        lm, box = self._geometry[i]
        fake, mask = self_blend_crop(real, lm, rng, self.ranges, box)
        if self.hflip and rng.random() < 0.5:
            real, fake, mask = real[:, ::-1], fake[:, ::-1], mask[:, ::-1]
        return np.ascontiguousarray(real), np.ascontiguousarray(fake), np.ascontiguousarray(mask)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        real, fake, mask = self.blend(i)
        pair = torch.from_numpy(np.stack([real, fake])).permute(3, 0, 1, 2).float() / 255.0  # (3, 2, H, W)
        if self.transform is not None:
            pair = self.transform(pair)
        x = pair.permute(1, 0, 2, 3).contiguous()  # (2, 3, H, W)
        y = torch.tensor([0.0, 1.0])
        if not self.with_masks:
            return x, y
        m = torch.stack([torch.zeros(mask.shape), torch.from_numpy(mask)])
        if m.shape[-2:] != x.shape[-2:]:
            m = torch.nn.functional.interpolate(m[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        return x, y, m


def collate_pairs(batch: Sequence[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """Flatten B pairs to (2B, ...) tensors: items ``(x (2, 3, H, W), y (2,)[, m (2, H, W)])``."""
    return tuple(torch.cat([item[k] for item in batch]) for k in range(len(batch[0])))
