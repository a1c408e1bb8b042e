"""Preprocessing: sample frames, find the main face with MTCNN, save square crops and a faces manifest.

Frames: ``frames`` spread evenly over each video (the default), or, with ``windows`` > 0,
``windows`` windows of ``window_len`` consecutive frames spread evenly over it
(:func:`fmkit.data.video.window_indices`: a video too short for them all gets fewer windows,
never overlapping ones); each crop's window is the manifest's ``window`` column (-1 without
windows), and clip datasets build a clip from the crops of one window only.

Output folder ``FACES``::

    faces.csv                 the faces manifest (docs/architecture.md): index columns + per-crop columns
    errors.csv                path, video_id, frame_idx, reason and the video's index columns (unreadable
                              videos, frames with no face)
    crops/<vid>/<frame>.jpg   the face crops (and masks/<vid>/<frame>.png for synthetic fakes)
    videos/<vid>.csv|.err.json  per-video records: a video with either is done and skipped on re-run
    preprocess.json           the settings and the dataset root used

Every file is written atomically, so a killed run loses at most the videos in flight.

The main face is tracked (``detection: track``, :class:`fmkit.data.faces.FaceTracker`) or
detected on every whole frame (``detection: full``); the crops have the same geometry
either way. Each process runs a three-stage pipeline over its videos: a thread decodes the
next video while the current one is detected, and another writes the previous one's crops
and records, so decoding and JPEG writing overlap detection.

Shards (``--shard i/n``) written to one folder merge by themselves; shards written to
separate folders, e.g. on different machines, are merged by :func:`merge`
(``fmkit preprocess [INDEX] --merge OUT FACES_1 FACES_2 …``).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from fmkit.config import PREPROCESS, resolve
from fmkit.console import progress_bar
from fmkit.data.faces import Face, FaceDetector, FaceTracker, track_main_face
from fmkit.data.schema import (
    ERROR_COLUMNS,
    ERRORS_FILE,
    FACE_COLUMNS,
    FACES_FILE,
    INDEX_COLUMNS,
    LANDMARK_COLUMNS,
    NO_WINDOW,
    crop_square,
    index_root,
    read_index,
    square_region,
    with_window,
)
from fmkit.data.video import probe, read_frames, sample_indices, window_indices
from fmkit.errors import FmkitError
from fmkit.io import atomic_path, write_csv, write_json

SETTINGS_FILE = "preprocess.json"
MERGE_FILE = "merge.json"
#: Settings that shards must share to be merged: they decide which frames are cropped and how.
MERGE_SETTINGS = ("windows", "frames", "window_len", "size", "margin", "jpeg_quality")
#: Videos per task of a worker process (its pipeline decodes ahead within a task).
VIDEOS_PER_TASK = 4


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


@dataclass
class _Video:
    """One video on its way through the pipeline: its sampled frames (H, W, 3 uint8 RGB), their
    indices and windows (-1 each without windows), its masks (T, H, W uint8) when the dataset ships
    them, or the reason it could not be read."""

    row: dict
    name: str
    indices: list[int] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    masks: np.ndarray | None = None
    error: str | None = None


class _Worker:
    """Processes videos with its own detector (one per process): load, find the main face, write."""

    def __init__(self, root: Path, out: Path, cfg: Mapping[str, Any]) -> None:
        self.root, self.out, self.cfg = root, out, cfg
        self.detector = FaceDetector(cfg["device"], cfg["batch_size"], cfg["min_face_size"])
        self.tracker = (
            FaceTracker(self.detector, cfg["keyframes"], cfg["min_face_ratio"]) if cfg["detection"] == "track" else None
        )

    def __call__(self, row: dict) -> tuple[list[dict], list[dict]]:
        """Crop one video; return (face rows, error rows) and record them under videos/."""
        video = self.load(row)
        return self.write(video, self.main_faces(video))

    def load(self, row: dict) -> _Video:
        """Decode the sampled frames of a video (and its masks); a bad video gives its reason instead."""
        video = _Video(row, safe_name(row["video_id"]))
        path = self.root / row["path"]
        try:
            indices, windows = frame_plan(probe(path).num_frames, self.cfg)
            video.frames = read_frames(path, indices)  # fewer when the video ends before its header says
            video.indices = indices[: len(video.frames)]
            video.windows = windows[: len(video.frames)]
            video.masks = _load_masks(mask_file(self.root, row["path"]))
        except FmkitError as exc:
            video.error = str(exc)
        return video

    def main_faces(self, video: _Video) -> list[Face | None]:
        """The main face of each sampled frame (None where there is none)."""
        if not video.frames:
            return []
        if self.tracker is not None:
            return self.tracker.track(video.frames, video.windows if self.cfg["windows"] else None)
        return track_main_face(self.detector.detect(video.frames))

    def write(self, video: _Video, tracked: Sequence[Face | None]) -> tuple[list[dict], list[dict]]:
        """Write the crops, masks and records of a video; return (face rows, error rows)."""
        row, name, cfg = video.row, video.name, self.cfg
        faces: list[dict] = []
        errors = [] if video.error is None else [self._error(row, None, video.error)]
        for idx, window, frame, face in zip(video.indices, video.windows, video.frames, tracked):
            if face is None:
                errors.append(self._error(row, idx, f"no face in frame {idx} of {row['path']}"))
                continue
            region = square_region(face.box, cfg["margin"])
            crop_rel = f"crops/{name}/{idx:06d}.jpg"
            with atomic_path(self.out / crop_rel) as tmp:
                Image.fromarray(crop_square(frame, region, cfg["size"])).save(tmp, quality=cfg["jpeg_quality"])
            mask_rel = ""
            if video.masks is not None and idx < len(video.masks):
                mask_rel = f"masks/{name}/{idx:06d}.png"
                with atomic_path(self.out / mask_rel) as tmp:
                    Image.fromarray(crop_square(video.masks[idx], region, cfg["size"])).save(tmp)
            faces.append(
                {
                    **{c: row[c] for c in INDEX_COLUMNS},
                    "frame_idx": idx,
                    "window": window,
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
        if not faces and not any(e["frame_idx"] is None for e in errors):
            errors.append(self._error(row, None, f"no face found in any sampled frame of {row['path']}"))
        # the face record first: a run killed between the two writes keeps the video's crops
        if faces:
            write_csv(pd.DataFrame(faces, columns=FACE_COLUMNS), self.out / "videos" / f"{name}.csv")
        write_json(errors, self.out / "videos" / f"{name}.err.json")
        return faces, errors

    def _error(self, row: dict, frame_idx: int | None, reason: str) -> dict:
        """An error row (:data:`ERROR_COLUMNS`): it carries the video's index columns, so that a video without
        any crop is still known with its label, split and source (every test video is scored)."""
        index = {
            c: int(row[c]) if c == "label" else str(row[c]) for c in INDEX_COLUMNS if c not in ("path", "video_id")
        }
        return {"path": row["path"], "video_id": row["video_id"], "frame_idx": frame_idx, "reason": reason, **index}


def frame_plan(num_frames: int, cfg: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """The frames to crop of a video of ``num_frames`` frames and the window of each (-1 without windows):
    ``cfg["frames"]`` spread evenly over it, or ``cfg["windows"]`` windows of ``cfg["window_len"]``
    consecutive frames (:func:`fmkit.data.video.window_indices`) when ``windows`` > 0."""
    if not cfg.get("windows"):
        indices = sample_indices(num_frames, cfg["frames"])
        return indices, [NO_WINDOW] * len(indices)
    spans = window_indices(num_frames, cfg["windows"], cfg["window_len"])
    return [i for span in spans for i in span], [w for w, span in enumerate(spans) for _ in span]


def _load_masks(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["masks"]


def _pipeline(worker: _Worker, rows: Sequence[dict]) -> Iterator[tuple[list[dict], list[dict]]]:
    """(face rows, error rows) of each video in order; the next video decodes and the previous one is
    written in threads while the current one is detected (at most three videos in memory)."""
    if not rows:
        return
    with (
        ThreadPoolExecutor(1, thread_name_prefix="fmkit-decode") as loader,
        ThreadPoolExecutor(1, thread_name_prefix="fmkit-write") as writer,
    ):
        loading = loader.submit(worker.load, rows[0])
        writing: Future | None = None
        for k in range(len(rows)):
            video = loading.result()
            if k + 1 < len(rows):
                loading = loader.submit(worker.load, rows[k + 1])
            tracked = worker.main_faces(video)
            if writing is not None:
                yield writing.result()
            writing = writer.submit(worker.write, video, tracked)
        assert writing is not None
        yield writing.result()


_WORKER: _Worker | None = None


def _init_worker(root: Path, out: Path, cfg: Mapping[str, Any]) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(1)
    _WORKER = _Worker(root, out, cfg)


def _run_in_worker(rows: Sequence[dict]) -> list[tuple[list[dict], list[dict]]]:
    assert _WORKER is not None
    return list(_pipeline(_WORKER, rows))


def _results(todo: list[dict], root: Path, out: Path, cfg: Mapping[str, Any], workers: int) -> Iterator:
    if workers <= 1:
        yield from _pipeline(_Worker(root, out, cfg), todo)
        return
    import facenet_pytorch  # noqa: F401  (imported once here, before the fork, rather than in every worker)

    per_task = max(1, min(VIDEOS_PER_TASK, len(todo) // (2 * workers)))
    tasks = [todo[i : i + per_task] for i in range(0, len(todo), per_task)]
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(root, out, cfg)) as pool:
        for results in pool.map(_run_in_worker, tasks):
            yield from results


@dataclass
class PreprocessSummary:
    """Counts of one preprocess call (videos done now, skipped as already done, failed; crops), and the
    sampled frames decoded now and the seconds the call took."""

    videos_total: int
    videos_done: int
    videos_skipped: int
    videos_failed: int
    frames_without_face: int
    crops: int
    frames: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        rate = f" ({self.frames / self.seconds:.1f} frames/s)" if self.frames and self.seconds > 0 else ""
        return (
            f"{self.videos_done} videos processed, {self.videos_skipped} already done, "
            f"{self.videos_failed} failed, {self.frames_without_face} frames without a face, "
            f"{self.crops} crops in the manifest; {self.frames} frames in {self.seconds:.1f} s{rate}"
        )


def preprocess(
    index: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    root: str | os.PathLike | None = None,
    cfg: Mapping[str, Any] | None = None,
    workers: int = 1,
    shard: str | None = None,
    retry_errors: bool = False,
    progress: bool | None = None,
) -> PreprocessSummary:
    """Crop the faces of every video of ``index`` (a CSV path or DataFrame) into ``out``.

    ``root`` is the dataset root the index paths are relative to (default: the one
    recorded by ``write_index``, else the index CSV's folder). ``cfg``: settings of
    :data:`fmkit.config.PREPROCESS` (frames, size, margin, detection, ...; missing keys
    take their defaults). Videos already done in ``out`` are skipped (failed ones too,
    unless ``retry_errors``). Writes ``faces.csv`` and ``errors.csv`` from every per-video
    record in ``out``, so shards written to one folder merge; shards written to separate
    folders are merged by :func:`merge`. ``progress``: a bar over videos (None: on a terminal only,
    :func:`fmkit.console.progress_enabled`).
    """
    start = time.perf_counter()
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
    failed = frames = 0
    bar = progress_bar(
        _results(todo, root, out, cfg, workers), progress=progress, total=len(todo), desc="preprocess", unit="video"
    )
    for faces, errors in bar:
        failed += not faces
        frames += len(faces) + sum(e["frame_idx"] is not None for e in errors)
    manifest, errors = collect(out)
    write_json({**cfg, "index_root": str(root)}, out / SETTINGS_FILE)
    frames_without_face = int(errors["frame_idx"].notna().sum()) if len(errors) else 0
    return PreprocessSummary(
        len(rows),
        len(todo) - failed,
        len(rows) - len(todo),
        failed,
        frames_without_face,
        len(manifest),
        frames,
        time.perf_counter() - start,
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
    manifest = with_window(manifest)  # records of an older fmkit have no window column
    errors = [e for p in sorted((out / "videos").glob("*.err.json")) for e in json.loads(p.read_text())]
    errors_df = pd.DataFrame(errors, columns=ERROR_COLUMNS)
    errors_df["frame_idx"] = errors_df["frame_idx"].astype("Int64")
    errors_df["label"] = errors_df["label"].astype("Int64")  # empty in records of an older fmkit
    write_csv(manifest, out / FACES_FILE)
    write_csv(errors_df, out / ERRORS_FILE)
    return manifest, errors_df


# --- merging shard folders ---------------------------------------------------------------

FILE_MODES = ("link", "copy", "move")


@dataclass
class MergeSummary:
    """What :func:`merge` did: the shard folders, videos merged now and already in the output,
    crops in the merged manifest, videos found in more than one shard (video id → the shards holding
    it, in the order given), index videos in no shard, and shard videos not in the index (video ids)."""

    shards: list[str]
    videos_merged: int
    videos_present: int
    crops: int
    duplicates: dict[str, list[str]]
    missing: list[str]
    not_in_index: list[str]
    index_checked: bool

    def __str__(self) -> str:
        lines = [
            f"{len(self.shards)} faces folder(s) merged: {self.videos_merged} video(s) merged now, "
            f"{self.videos_present} already in the output, {self.crops} crops in the manifest"
        ]
        if self.duplicates:
            lines.append(
                f"warning: {len(self.duplicates)} video(s) in several shards, kept from the first: "
                f"{_few(self.duplicates)}"
            )
        if not self.index_checked:
            lines.append("no index given: missing videos not checked")
        if self.missing:
            lines.append(f"warning: {len(self.missing)} video(s) of the index in no shard: {_few(self.missing)}")
        if self.not_in_index:
            lines.append(f"warning: {len(self.not_in_index)} video(s) not in the index: {_few(self.not_in_index)}")
        return "\n".join(lines)


def _few(names: Iterable[str], k: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:k]) + (f", … ({len(names) - k} more; see {MERGE_FILE})" if len(names) > k else "")


def _shard_records(folder: Path) -> dict[str, list[Path]]:
    """Record name → its record files (``<name>.csv`` and/or ``<name>.err.json``) in a faces folder."""
    if not folder.is_dir():
        raise FmkitError(f"faces folder not found: {folder}")
    videos = folder / "videos"
    if not videos.is_dir() and not (folder / SETTINGS_FILE).is_file():
        raise FmkitError(
            f"{folder} is not a faces folder: no videos/ records or {SETTINGS_FILE} from `fmkit preprocess`"
        )
    records: dict[str, list[Path]] = {}
    for p in sorted(videos.glob("*")) if videos.is_dir() else []:
        if p.name.startswith("."):
            continue  # a temporary file of an interrupted write
        if p.name.endswith(".err.json"):
            records.setdefault(p.name[: -len(".err.json")], []).append(p)
        elif p.suffix == ".csv":
            records.setdefault(p.stem, []).append(p)
    return records


def _shard_settings(folders: Sequence[Path]) -> dict[str, Any]:
    """The first shard's settings (``preprocess.json``); FmkitError when shards differ in :data:`MERGE_SETTINGS`."""
    settings = {f: json.loads((f / SETTINGS_FILE).read_text()) for f in folders if (f / SETTINGS_FILE).is_file()}
    if not settings:
        return {}
    (first, base), *others = settings.items()
    for folder, other in others:
        a, b = _crop_settings(base), _crop_settings(other)
        for key in MERGE_SETTINGS:
            if a.get(key) != b.get(key):
                raise FmkitError(
                    f"shards differ in setting {key!r}: {a.get(key)!r} in {first}, {b.get(key)!r} in {folder}"
                )
    roots = {s.get("index_root") for s in settings.values()}
    return {**base, "index_root": roots.pop() if len(roots) == 1 else None}


def _crop_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`MERGE_SETTINGS` of a ``preprocess.json``: no windows (an older fmkit's) is windows 0, and
    ``frames`` and ``window_len`` count only where they are used (without windows, with them)."""
    out = {k: settings.get(k) for k in MERGE_SETTINGS}
    out["windows"] = settings.get("windows") or 0
    if out["windows"]:
        out["frames"] = None
    else:
        out["window_len"] = None
    return out


def _place(src: Path, dst: Path, mode: str) -> None:
    """Put the file ``src`` at ``dst`` atomically: a hard link (a copy across file systems), a copy, or a move."""
    if not src.is_file():
        if mode == "move" and dst.is_file():
            return  # moved by an interrupted merge
        raise FmkitError(f"file of a shard record not found: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode in ("link", "move"):
        try:
            if mode == "move":
                os.replace(src, dst)
                return
            with atomic_path(dst) as tmp:
                tmp.unlink()
                os.link(src, tmp)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    if mode == "move":
        src.unlink()


def _video_id(name: str, files: Sequence[Path]) -> str:
    """The video id that records name (a face row or an error of one of ``files``), else the records' name."""
    for p in sorted(files, key=lambda p: p.suffix != ".csv"):
        if p.suffix == ".csv":
            with p.open(newline="") as f:
                first = next(csv.DictReader(f), None)
            if first and first.get("video_id"):
                return first["video_id"]
        else:
            errors = json.loads(p.read_text())
            if errors:
                return str(errors[0]["video_id"])
    return name


def _record_files(record: Path) -> list[str]:
    """The crop and mask files (relative to the faces folder) that a ``<name>.csv`` record lists."""
    with record.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r[c] for r in rows for c in ("crop_path", "mask_path") if r.get(c)]


def merge(
    out: str | os.PathLike,
    shards: Sequence[str | os.PathLike],
    index: str | os.PathLike | pd.DataFrame | None = None,
    files: str = "link",
    progress: bool | None = None,
) -> MergeSummary:
    """Merge faces folders written separately (``--shard i/n`` on several machines) into ``out``.

    Each video's records (``videos/<vid>.csv|.err.json``) are taken from the first shard
    that has its faces (else its error record), and its crops and masks are hard-linked
    into ``out`` (``files="link"``; copied across file systems), copied (``"copy"``) or
    moved (``"move"``); then ``faces.csv`` and ``errors.csv`` are rebuilt from all records
    in ``out``, as :func:`preprocess` does. Videos in several shards are reported, and,
    when ``index`` (a CSV path or DataFrame) is given, the index videos in no shard and the
    shard videos not in the index. The report also goes to ``out/merge.json``. Shards must
    share their crop settings (``preprocess.json``). A video already in ``out`` is kept,
    so an interrupted merge resumes.
    """
    if files not in FILE_MODES:
        raise FmkitError(f"bad merge file mode {files!r}: expected one of {', '.join(FILE_MODES)}")
    if not shards:
        raise FmkitError("merge needs at least one faces folder to merge")
    out = Path(out).resolve()
    folders = [Path(s).resolve() for s in shards]
    for folder in folders:
        if folder == out:
            raise FmkitError(f"the merge output {out} is also one of the shards: merge into a new folder")
    if len(set(folders)) < len(folders):
        twice = next(f for f in folders if folders.count(f) > 1)
        raise FmkitError(f"faces folder {twice} is given twice")
    records = {folder: _shard_records(folder) for folder in folders}
    settings = _shard_settings(folders)
    index_df = None
    if index is not None:
        index_df = index if isinstance(index, pd.DataFrame) else read_index(index)

    holders: dict[str, list[Path]] = {}
    for folder in folders:
        for name in records[folder]:
            holders.setdefault(name, []).append(folder)

    def video_id(name: str) -> str:
        return _video_id(name, [p for f in holders[name] for p in records[f][name]])

    duplicates = {video_id(name): [str(f) for f in fs] for name, fs in sorted(holders.items()) if len(fs) > 1}
    merged = present = 0
    for name, fs in progress_bar(sorted(holders.items()), progress=progress, desc="merge", unit="video"):
        source = next((f for f in fs if any(p.suffix == ".csv" for p in records[f][name])), fs[0])
        files_here = records[source][name]
        if all((out / "videos" / p.name).is_file() for p in files_here):
            present += 1
            continue
        # crops and masks first, then the records: a record in out means its files are there
        for p in sorted(files_here, key=lambda p: p.suffix != ".csv"):
            if p.suffix == ".csv":
                for rel in _record_files(p):
                    _place(source / rel, out / rel, files)
            _place(p, out / "videos" / p.name, files)
        merged += 1
    manifest, _ = collect(out)
    write_json({**settings, "merged_from": [str(f) for f in folders]}, out / SETTINGS_FILE)

    in_out = _shard_records(out)
    missing: list[str] = []
    not_in_index: list[str] = []
    if index_df is not None:
        names = {safe_name(v): v for v in index_df["video_id"]}
        missing = [v for n, v in sorted(names.items()) if n not in in_out]
        not_in_index = sorted(video_id(name) for name in holders if name not in names)
    checked = index_df is not None
    summary = MergeSummary(
        [str(f) for f in folders], merged, present, len(manifest), duplicates, missing, not_in_index, checked
    )
    report = {"shards": summary.shards, "duplicates": duplicates, "index_checked": checked, "missing": missing}
    write_json({**report, "not_in_index": not_in_index}, out / MERGE_FILE)
    return summary
