"""torch Datasets over a faces manifest: single face crops and fixed-length face volumes.

Items are ``(x, y)``: ``x`` a float tensor in [0, 1] — (3, H, W) for ``FrameDataset``,
(3, T, H, W) for ``ClipDataset`` — and ``y`` the label as a float tensor (1 fake, 0 real).
``video_ids[i]`` is the video of item ``i`` (for video-level metrics).

With ``cache=`` (a :class:`fmkit.data.cache.PackedCrops`, ``"auto"`` or a folder: see
:mod:`fmkit.data.cache`) the crops' pixels come from the packed, memory-mapped cache
instead of their JPEG files; the items are bit-identical either way.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from fmkit.data.schema import NO_WINDOW, SPLITS, faces_root, read_faces, with_window
from fmkit.errors import FmkitError

if TYPE_CHECKING:
    from fmkit.data.cache import PackedCrops

Transform = Callable[[torch.Tensor], torch.Tensor]
#: The ``cache`` argument of the datasets: an open cache, ``"auto"`` or a cache folder (opened, built if needed),
#: or None (decode the JPEG crops).
CacheArg = Union["PackedCrops", str, os.PathLike, None]


def open_manifest(
    manifest: str | os.PathLike | pd.DataFrame, root: str | os.PathLike | None
) -> tuple[pd.DataFrame, Path]:
    """A faces manifest (path, folder or DataFrame) and the folder its crop paths are relative to."""
    if isinstance(manifest, pd.DataFrame):
        if root is None:
            raise FmkitError(
                "a manifest given as a DataFrame needs root= (the faces folder its crop paths are relative to)"
            )
        return manifest, Path(root)
    path = Path(manifest)
    df = read_faces(path)
    return df, Path(root) if root is not None else faces_root(path)


def filter_split(df: pd.DataFrame, split: str | Sequence[str] | None) -> pd.DataFrame:
    """Rows of the given split(s); all rows for None."""
    if split is None:
        return df
    wanted = [split] if isinstance(split, str) else list(split)
    bad = [s for s in wanted if s not in SPLITS]
    if bad:
        raise FmkitError(f"unknown split {bad[0]!r}: expected one of {', '.join(SPLITS)}")
    return df[df["split"].isin(wanted)]


def read_rgb(path: Path) -> np.ndarray:
    """An RGB image file → uint8 array (H, W, 3); FmkitError naming the file when it cannot be read."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise FmkitError(f"unreadable image {path}: {exc}") from None


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 RGB pixels (..., H, W, 3) → float tensor (3, ..., H, W) in [0, 1]: (H, W, 3) → (3, H, W),
    (T, H, W, 3) → (3, T, H, W)."""
    channels_first = np.ascontiguousarray(np.moveaxis(pixels, -1, 0))  # numpy, single-threaded: torch's threaded
    return torch.from_numpy(channels_first.astype(np.float32) / 255.0)  # permute copy stalls on busy cores


def load_image(path: Path) -> torch.Tensor:
    """An RGB image file → float tensor (3, H, W) in [0, 1]."""
    return to_tensor(read_rgb(path))


def resolve_cache(cache: CacheArg, df: pd.DataFrame, root: Path) -> PackedCrops | None:
    """``cache`` as an open cache: a PackedCrops as is; ``"auto"`` or a folder opened (built) for manifest ``df``."""
    from fmkit.data.cache import PackedCrops, open_cache

    if cache is None or isinstance(cache, PackedCrops):
        return cache
    return open_cache(df, root, cache)


def load_mask(path: Path) -> torch.Tensor:
    """A mask PNG → float tensor (H, W) in [0, 1]."""
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)


class FrameDataset(Dataset):
    """One face crop per item: ``(x (3, H, W), y)``; ``transform`` maps x to x.

    ``cache``: read the crops from a packed cache (see the module doc) instead of decoding them.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | pd.DataFrame,
        split: str | Sequence[str] | None = None,
        transform: Transform | None = None,
        root: str | os.PathLike | None = None,
        cache: CacheArg = None,
    ) -> None:
        df, self.root = open_manifest(manifest, root)
        self.cache = resolve_cache(cache, df, self.root)
        self.frame = filter_split(df, split).sort_values(["video_id", "frame_idx"]).reset_index(drop=True)
        self.transform = transform
        self.video_ids: list[str] = self.frame["video_id"].astype(str).tolist()
        self.labels = torch.tensor(self.frame["label"].to_numpy(), dtype=torch.float32)
        self.cache_rows = self.cache.rows(self.frame["crop_path"].tolist()) if self.cache is not None else None

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache is not None:
            x = to_tensor(self.cache.array[self.cache_rows[i]])
        else:
            x = load_image(self.root / self.frame.at[i, "crop_path"])
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


SAMPLING = ("even", "random")
SHORT_VIDEOS = ("error", "skip")


def even_starts(length: int, clip_len: int, clips: int) -> list[int]:
    """First frames of ``clips`` evenly spaced clips of ``clip_len`` in a sequence of ``length`` frames
    (from the first possible start to the last, rounded; coinciding starts merged)."""
    return sorted({round(s) for s in np.linspace(0, length - clip_len, clips)})


def clip_runs(windows: Sequence[int], frames: Sequence[int]) -> list[int]:
    """Lengths of the runs of crops a clip may span, for a video's crops in time order with these windows and
    frame indices: the crops of consecutive frames of one window (a frame whose face was missed splits its
    window: a clip never jumps over it). Crops without a window (:data:`~fmkit.data.schema.NO_WINDOW`,
    frames sampled evenly) are one run, however far apart their frames."""
    lengths: list[int] = []
    for k, (w, f) in enumerate(zip(windows, frames)):
        if k and w == windows[k - 1] and (w == NO_WINDOW or f == frames[k - 1] + 1):
            lengths[-1] += 1
        else:
            lengths.append(1)
    return lengths


def window_starts(lengths: Sequence[int], clip_len: int) -> list[int]:
    """Every possible first crop of a clip of ``clip_len`` crops that lies within one run, for runs (windows of
    consecutive frames, :func:`clip_runs`) of ``lengths`` crops laid end to end (positions in their
    concatenation, in order); a run shorter than a clip gives none. One run of ``n`` crops: ``0 … n − clip_len``."""
    starts: list[int] = []
    offset = 0
    for n in lengths:
        starts += range(offset, offset + n - clip_len + 1)
        offset += n
    return starts


def even_clip_starts(lengths: Sequence[int], clip_len: int, clips: int) -> list[int]:
    """First crops of ``clips`` evenly spaced clips over runs of ``lengths`` crops laid end to end (windows of
    consecutive frames, :func:`clip_runs`): evenly spaced (rounded, coinciding ones merged) over the list of
    possible starts (:func:`window_starts`), from the first run's first to the last run's last. One run:
    :func:`even_starts`; windows of exactly ``clip_len`` crops and as many clips as windows: one clip each."""
    possible = window_starts(lengths, clip_len)
    if not possible:
        return []
    return [possible[k] for k in sorted({round(s) for s in np.linspace(0, len(possible) - 1, clips)})]


class ClipDataset(Dataset):
    """Fixed-length face volumes: ``(x (3, T, H, W), y)``, T consecutive crops of one video.

    A video's crops are ordered by frame index. Which crops a clip may span depends on how
    they were sampled (the manifest's ``window`` column; :func:`clip_runs`):

    * windows (``fmkit preprocess --windows W --window-len L``: W windows of L consecutive
      video frames): a clip is T crops of consecutive frames of one window, never across the
      gap between two windows nor over a frame whose face MTCNN missed (the jump would be a
      motion cue, and faces are missed more often in fakes);
    * frames sampled evenly (``--frames N``, consecutive crops 1/N of the video apart;
      ``window`` -1, or a manifest without the column): any T consecutive crops.

    Each video gives ``clips_per_video`` items:

    * ``sampling="even"`` (evaluation): clips evenly spaced over the video's possible clips,
      in time order, from its first to its last possible one, rounded; coinciding ones are
      merged, so a video of exactly T crops gives one clip, and W full windows of T frames
      with W clips asked for give one clip per window (:func:`even_clip_starts`). A video's
      score is then the mean of its clips'.
    * ``sampling="random"`` (training): each item draws its clip uniformly among the
      possible ones (of every window) from (``seed``, epoch, item), so every epoch sees new
      clips and a resumed run repeats them; call :meth:`set_epoch` (the engine does).

    A video without a possible clip (fewer than T crops; with windows, no window with T
    consecutive face frames) is an error naming it (``short_videos="error"``: preprocess
    with more frames or longer windows, or use a shorter ``clip_len``), or is left out with
    a warning and recorded in ``skipped`` as ``(video_id, crops)`` — its crops, or with
    windows its longest run of consecutive face frames (``short_videos="skip"``). It is never
    padded: repeated frames would be a frozen-video cue that real videos do not have, and
    faces are missed more often in fakes. ``transform`` maps the whole volume (3, T, H, W),
    so one random augmentation serves every frame of a clip. ``cache``: read the crops from
    a packed cache (see the module doc) instead of decoding them.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | pd.DataFrame,
        clip_len: int = 8,
        split: str | Sequence[str] | None = None,
        transform: Transform | None = None,
        clips_per_video: int = 1,
        sampling: str = "even",
        seed: int = 0,
        short_videos: str = "error",
        root: str | os.PathLike | None = None,
        cache: CacheArg = None,
    ) -> None:
        if short_videos not in SHORT_VIDEOS:
            raise FmkitError(f"unknown short_videos {short_videos!r}: expected one of {', '.join(SHORT_VIDEOS)}")
        if clip_len < 1 or clips_per_video < 1:
            raise FmkitError(f"clip_len and clips_per_video must be at least 1, got {clip_len} and {clips_per_video}")
        if sampling not in SAMPLING:
            raise FmkitError(f"unknown clip sampling {sampling!r}: expected one of {', '.join(SAMPLING)}")
        df, self.root = open_manifest(manifest, root)
        self.cache = resolve_cache(cache, df, self.root)
        df = with_window(filter_split(df, split)).sort_values(["video_id", "window", "frame_idx"])
        self.clip_len, self.transform, self.sampling, self.seed, self.epoch = clip_len, transform, sampling, seed, 0
        self.videos: list[list[str]] = []  # crop paths of each video, window after window, in time order
        self.starts: list[list[int]] = []  # the possible clip starts in each video's crops (within one run)
        self.items: list[tuple[int, int]] = []  # (video, start; -1 = drawn at random)
        self.video_ids: list[str] = []
        labels = []
        self.skipped: list[tuple[str, int]] = []
        windowed = False
        for vid, group in df.groupby("video_id", sort=True):
            paths = group["crop_path"].tolist()
            windows = group["window"].tolist()
            lengths = clip_runs(windows, group["frame_idx"].tolist())
            windowed |= any(w != NO_WINDOW for w in windows)
            possible = window_starts(lengths, clip_len)
            if not possible:
                self.skipped.append((str(vid), max(lengths)))
                continue
            v = len(self.videos)
            self.videos.append(paths)
            self.starts.append(possible)
            if sampling == "even":
                starts = even_clip_starts(lengths, clip_len, clips_per_video)
            else:
                starts = [-1] * clips_per_video
            for s in starts:
                self.items.append((v, s))
                self.video_ids.append(str(vid))
                labels.append(int(group["label"].iloc[0]))
        if self.skipped:
            vid, n = self.skipped[0]
            crops = "face crops of consecutive frames in one window at most" if windowed else "face crops"
            message = (
                f"video {vid} has {n} {crops}, fewer than the clip length {clip_len} "
                f"({len(self.skipped)} video(s) too short)"
            )
            if short_videos == "error":
                more = "--window-len" if windowed else "--frames"
                raise FmkitError(
                    f"{message}: preprocess with {more} of at least {clip_len} (more leave room for faces "
                    "MTCNN misses and for several clips per video), lower data.clip_len, or leave such videos "
                    "out with data.short_videos=skip"
                )
            warnings.warn(f"{message}: left out (short_videos=skip)", stacklevel=2)
        self.labels = torch.tensor(labels, dtype=torch.float32)
        # the cache rows of each video's crops, in time order
        self.cache_rows = [self.cache.rows(p) for p in self.videos] if self.cache is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Draw the random clips of epoch ``epoch`` (``sampling="random"``)."""
        self.epoch = epoch

    def start(self, i: int) -> int:
        """First crop of item ``i`` (in its video's crops, window after window)."""
        v, s = self.items[i]
        if s >= 0:
            return s
        possible = self.starts[v]
        return possible[int(np.random.default_rng((self.seed, self.epoch, i)).integers(0, len(possible)))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, v = self.start(i), self.items[i][0]
        if self.cache is not None:
            x = to_tensor(self.cache.array[self.cache_rows[v][s : s + self.clip_len]])
        else:
            x = torch.stack([load_image(self.root / p) for p in self.videos[v][s : s + self.clip_len]], dim=1)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]
