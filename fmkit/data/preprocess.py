"""Preprocessing: sample frames, find the main face with MTCNN, save square crops and a faces manifest.

Output folder ``FACES``::

    faces.csv                 the faces manifest (docs/architecture.md): index columns + per-crop columns
    errors.csv                path, video_id, frame_idx, reason (unreadable videos, frames with no face)
    crops/<vid>/<frame>.jpg   the face crops (and masks/<vid>/<frame>.png for synthetic fakes)
    videos/<vid>.csv|.err.json  per-video records: a video with either is done and skipped on re-run

Every file is written atomically, so a killed run loses at most the videos in flight.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from fmkit.config import PREPROCESS, resolve
from fmkit.data.faces import FaceDetector, track_main_face
from fmkit.data.schema import (
    ERROR_COLUMNS,
    ERRORS_FILE,
    FACE_COLUMNS,
    FACES_FILE,
    INDEX_COLUMNS,
    LANDMARK_COLUMNS,
    crop_square,
    index_root,
    read_index,
    square_region,
)
from fmkit.data.video import probe, read_frames, sample_indices
from fmkit.errors import FmkitError
from fmkit.io import atomic_path, write_csv, write_json


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0 ≤ i < n) → (i, n); None → (0, 1)."""
    if not text:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise FmkitError(f"bad --shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return int(m[1]), int(m[2])


def select_shard(index: pd.DataFrame, shard: tuple[int, int]) -> pd.DataFrame:
    """The deterministic ``i``-th of ``n`` slices of the index (rows sorted by video_id, every n-th)."""
    i, n = shard
    rows = index.sort_values("video_id", kind="stable").reset_index(drop=True)
    return rows.iloc[i::n].reset_index(drop=True)


def safe_name(video_id: str) -> str:
    """A file-system-safe, unique-enough folder name for a video id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "__", video_id)


def mask_file(root: Path, rel_path: str) -> Path:
    """Ground-truth blend masks of a (synthetic) fake, when the dataset ships them."""
    return root / "masks" / Path(rel_path).with_suffix(".npz")


class _Worker:
    """Processes one video at a time with its own detector (one per process)."""

    def __init__(self, root: Path, out: Path, cfg: Mapping[str, Any]) -> None:
        self.root, self.out, self.cfg = root, out, cfg
        self.detector = FaceDetector(cfg["device"], cfg["batch_size"], cfg["min_face_size"])

    def __call__(self, row: dict) -> tuple[list[dict], list[dict]]:
        """Crop one video; return (face rows, error rows) and record them under videos/."""
        name = safe_name(row["video_id"])
        try:
            faces, errors = self._crop_video(row, name)
        except FmkitError as exc:
            faces, errors = [], [self._error(row, None, str(exc))]
        if not faces and not any(e["frame_idx"] is None for e in errors):
            errors.append(self._error(row, None, f"no face found in any sampled frame of {row['path']}"))
        write_json(errors, self.out / "videos" / f"{name}.err.json")
        if faces:
            write_csv(pd.DataFrame(faces, columns=FACE_COLUMNS), self.out / "videos" / f"{name}.csv")
        return faces, errors

    def _error(self, row: dict, frame_idx: int | None, reason: str) -> dict:
        return {"path": row["path"], "video_id": row["video_id"], "frame_idx": frame_idx, "reason": reason}

    def _crop_video(self, row: dict, name: str) -> tuple[list[dict], list[dict]]:
        path = self.root / row["path"]
        cfg = self.cfg
        indices = sample_indices(probe(path).num_frames, cfg["frames"])
        frames = read_frames(path, indices)
        indices = indices[: len(frames)]
        masks = _load_masks(mask_file(self.root, row["path"]))
        tracked = track_main_face(self.detector.detect(frames))
        faces, errors = [], []
        for idx, frame, face in zip(indices, frames, tracked):
            if face is None:
                errors.append(self._error(row, idx, f"no face in frame {idx} of {row['path']}"))
                continue
            region = square_region(face.box, cfg["margin"])
            crop_rel = f"crops/{name}/{idx:06d}.jpg"
            with atomic_path(self.out / crop_rel) as tmp:
                Image.fromarray(crop_square(frame, region, cfg["size"])).save(tmp, quality=cfg["jpeg_quality"])
            mask_rel = ""
            if masks is not None and idx < len(masks):
                mask_rel = f"masks/{name}/{idx:06d}.png"
                with atomic_path(self.out / mask_rel) as tmp:
                    Image.fromarray(crop_square(masks[idx], region, cfg["size"])).save(tmp)
            faces.append(
                {
                    **{c: row[c] for c in INDEX_COLUMNS},
                    "frame_idx": idx,
                    "crop_path": crop_rel,
                    "mask_path": mask_rel,
                    **dict(zip(("x1", "y1", "x2", "y2"), map(float, face.box))),
                    "prob": face.prob,
                    **dict(zip(LANDMARK_COLUMNS, map(float, face.landmarks.ravel()))),
                    "crop_x0": region[0],
                    "crop_y0": region[1],
                    "crop_side": region[2],
                    "crop_size": cfg["size"],
                }
            )
        return faces, errors


def _load_masks(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["masks"]


_WORKER: _Worker | None = None


def _init_worker(root: Path, out: Path, cfg: Mapping[str, Any]) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(1)
    _WORKER = _Worker(root, out, cfg)


def _run_in_worker(row: dict) -> tuple[list[dict], list[dict]]:
    assert _WORKER is not None
    return _WORKER(row)


def _results(todo: list[dict], root: Path, out: Path, cfg: Mapping[str, Any], workers: int) -> Iterator:
    if workers <= 1:
        worker = _Worker(root, out, cfg)
        yield from map(worker, todo)
        return
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(root, out, cfg)) as pool:
        yield from pool.map(_run_in_worker, todo)


@dataclass
class PreprocessSummary:
    """Counts of one preprocess call (videos done now, skipped as already done, failed; crops)."""

    videos_total: int
    videos_done: int
    videos_skipped: int
    videos_failed: int
    frames_without_face: int
    crops: int

    def __str__(self) -> str:
        return (
            f"{self.videos_done} videos processed, {self.videos_skipped} already done, "
            f"{self.videos_failed} failed, {self.frames_without_face} frames without a face, "
            f"{self.crops} crops in the manifest"
        )


def preprocess(
    index: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    root: str | os.PathLike | None = None,
    cfg: Mapping[str, Any] | None = None,
    workers: int = 1,
    shard: str | None = None,
    retry_errors: bool = False,
    progress: bool = True,
) -> PreprocessSummary:
    """Crop the faces of every video of ``index`` (a CSV path or DataFrame) into ``out``.

    ``root`` is the dataset root the index paths are relative to (default: the one
    recorded by ``write_index``, else the index CSV's folder). ``cfg``: settings of
    :data:`fmkit.config.PREPROCESS` (frames, size, margin, ...; missing keys take their
    defaults). Videos already done in ``out`` are skipped (failed ones too, unless
    ``retry_errors``). Writes ``faces.csv`` and ``errors.csv`` from every per-video record
    in ``out``, so shards written to one folder merge, and shards written to separate
    folders concatenate.
    """
    cfg = resolve(PREPROCESS, cfg)
    if isinstance(index, pd.DataFrame):
        df, default_root = index, None
    else:
        df, default_root = read_index(index), index_root(index)
    root = Path(root).resolve() if root is not None else default_root
    if root is None or not root.is_dir():
        raise FmkitError(f"dataset root not found: {root} (pass the folder that the index paths are relative to)")
    out = Path(out).resolve()
    if out == root or root in out.parents:
        raise FmkitError(f"output folder {out} is inside the dataset root {root}: dataset folders are read-only")
    rows = select_shard(df, parse_shard(shard)).to_dict("records")
    records = out / "videos"

    def done(row: dict) -> bool:
        name = safe_name(row["video_id"])
        if (records / f"{name}.csv").is_file():
            return True
        return not retry_errors and (records / f"{name}.err.json").is_file()

    todo = [r for r in rows if not done(r)]
    failed = 0
    bar = tqdm(
        _results(todo, root, out, cfg, workers), total=len(todo), desc="preprocess", unit="video", disable=not progress
    )
    for faces, _ in bar:
        failed += not faces
    manifest, errors = collect(out)
    write_json({**cfg, "index_root": str(root)}, out / "preprocess.json")
    frames_without_face = int(errors["frame_idx"].notna().sum()) if len(errors) else 0
    return PreprocessSummary(
        len(rows), len(todo) - failed, len(rows) - len(todo), failed, frames_without_face, len(manifest)
    )


def collect(out: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild ``faces.csv`` and ``errors.csv`` in ``out`` from its per-video records."""
    out = Path(out)
    records = sorted((out / "videos").glob("*.csv"))
    manifest = (
        pd.concat([pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in records], ignore_index=True)
        if records
        else pd.DataFrame(columns=FACE_COLUMNS)
    )
    manifest["mask_path"] = manifest["mask_path"].fillna("")
    errors = [e for p in sorted((out / "videos").glob("*.err.json")) for e in json.loads(p.read_text())]
    errors_df = pd.DataFrame(errors, columns=ERROR_COLUMNS)
    errors_df["frame_idx"] = errors_df["frame_idx"].astype("Int64")
    write_csv(manifest, out / FACES_FILE)
    write_csv(errors_df, out / ERRORS_FILE)
    return manifest, errors_df
