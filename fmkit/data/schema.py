"""The data contracts of fmkit: labels, splits, the video index, the faces manifest, crop geometry.

Every module that reads or writes these tables goes through this one:

- labels: :data:`LABEL_FAKE` = 1, :data:`LABEL_REAL` = 0, everywhere;
- splits: :data:`SPLITS` (``train``, ``val``, ``test``), leak-free by ``source_id``;
- the video index (``fmkit index`` → CSV): :data:`INDEX_COLUMNS`, :func:`read_index`,
  :func:`write_index`, and the ``<index>.root.json`` sidecar naming the dataset root
  the ``path`` column is relative to (:func:`index_root`);
- the faces manifest (``fmkit preprocess`` → ``FACES/faces.csv``): :data:`FACE_COLUMNS`
  (the index columns, then one crop per row: frame, window, crop and mask paths, MTCNN box,
  probability and five landmarks in frame pixels, and the crop geometry), :func:`read_faces`;
  ``window`` numbers the windows of consecutive frames a crop belongs to (0, 1, … in time
  order; ``fmkit preprocess --windows``), :data:`NO_WINDOW` (-1) for frames sampled evenly
  and in manifests of an older fmkit, which lack the column (:func:`with_window`);
  its error list :data:`ERROR_COLUMNS` (with the index columns of each error's video), :func:`read_errors`;
- crop geometry: a crop is the square ``region = (x0, y0, side)`` of the frame (pixels,
  may leave the frame: zero padded) resized to ``crop_size`` px (:func:`square_region`,
  :func:`crop_square`, :func:`to_crop_coords`, :func:`crop_region`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fmkit.errors import FmkitError
from fmkit.io import write_csv, write_json

LABEL_REAL = 0
LABEL_FAKE = 1
SPLITS = ("train", "val", "test")

INDEX_COLUMNS = ["video_id", "path", "label", "split", "method", "dataset", "source_id"]
#: MTCNN's five landmarks, in its order; each is stored as ``<name>_x``, ``<name>_y`` (frame pixels).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
LANDMARK_COLUMNS = [f"{n}_{a}" for n in LANDMARK_NAMES for a in "xy"]
BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
CROP_COLUMNS = ["crop_x0", "crop_y0", "crop_side", "crop_size"]
FACE_COLUMNS = (
    INDEX_COLUMNS
    + ["frame_idx", "window", "crop_path", "mask_path", *BOX_COLUMNS, "prob"]
    + LANDMARK_COLUMNS
    + CROP_COLUMNS
)
#: The ``window`` of a crop from frames sampled evenly (``fmkit preprocess`` without ``--windows``), and of every
#: crop of a manifest written before the column existed.
NO_WINDOW = -1
#: ``errors.csv``: one row per unreadable video or frame without a face, with its video's index columns, so
#: that a video that gave no crop at all is still known with its label, split and source (see
#: :mod:`fmkit.engine.coverage`).
ERROR_COLUMNS = ["path", "video_id", "frame_idx", "reason", "label", "split", "method", "dataset", "source_id"]
FACES_FILE = "faces.csv"
ERRORS_FILE = "errors.csv"


# --- the video index ---------------------------------------------------------------------


def _root_sidecar(path: Path) -> Path:
    return path.with_suffix(".root.json")


def write_index(df: pd.DataFrame, path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Write an index CSV and, beside it (``<name>.root.json``), the dataset root its paths are relative to.

    ``root`` may be an index CSV (layout ``csv``): its folder is then the root.
    """
    path, root = Path(path), Path(root)
    if root.is_file():
        root = root.parent
    write_csv(df, path)
    write_json({"root": str(root.resolve())}, _root_sidecar(path))
    return path


def index_root(path: str | os.PathLike) -> Path:
    """The dataset root recorded beside an index CSV by :func:`write_index`; else the CSV's folder."""
    path = Path(path)
    sidecar = _root_sidecar(path)
    if sidecar.is_file():
        return Path(json.loads(sidecar.read_text())["root"])
    return path.resolve().parent


def check_values(source: object, df: pd.DataFrame, column: str, allowed: tuple[str, ...]) -> None:
    """FmkitError naming ``source`` and the first value of ``column`` outside ``allowed``."""
    bad = df.loc[~df[column].isin(allowed), column]
    if len(bad):
        raise FmkitError(
            f"{source}: bad {column} {bad.iloc[0]!r} in row {bad.index[0] + 2}, expected one of {', '.join(allowed)}"
        )


def sorted_unique(df: pd.DataFrame, source: object) -> pd.DataFrame:
    """``df`` sorted by video_id; FmkitError naming ``source`` when a video_id repeats."""
    duplicated = df.loc[df["video_id"].duplicated(), "video_id"]
    if len(duplicated):
        raise FmkitError(f"{source}: video_id {duplicated.iloc[0]} is not unique")
    return df.sort_values("video_id", kind="stable").reset_index(drop=True)


def read_index(path: str | os.PathLike) -> pd.DataFrame:
    """Read an index CSV and check it: the index columns present and filled, labels 0/1, known splits, unique ids.

    Extra columns are kept after the index columns; rows come sorted by ``video_id``.
    """
    path = Path(path)
    if not path.is_file():
        raise FmkitError(f"index file not found: {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    absent = [c for c in INDEX_COLUMNS if c not in df.columns]
    if absent:
        raise FmkitError(f"{path}: missing column(s) {', '.join(absent)} (an index needs {', '.join(INDEX_COLUMNS)})")
    for column in INDEX_COLUMNS:
        if (df[column] == "").any():
            raise FmkitError(f"{path}: empty {column} in row {int((df[column] == '').argmax()) + 2}")
    check_values(path, df, "label", (str(LABEL_REAL), str(LABEL_FAKE)))
    check_values(path, df, "split", SPLITS)
    df["label"] = df["label"].astype(int)
    df = df[INDEX_COLUMNS + [c for c in df.columns if c not in INDEX_COLUMNS]]
    return sorted_unique(df, path)


# --- the faces manifest ------------------------------------------------------------------


def read_faces(path: str | os.PathLike) -> pd.DataFrame:
    """Read a faces manifest (``faces.csv`` or the folder holding it) and check its columns."""
    path = Path(path)
    if path.is_dir():
        path = path / FACES_FILE
    if not path.is_file():
        raise FmkitError(f"faces manifest not found: {path} (run `fmkit preprocess` first)")
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"video_id": str, "source_id": str})
    missing = [c for c in FACE_COLUMNS if c not in df.columns and c != "window"]
    if missing:
        raise FmkitError(f"{path} is not a faces manifest: missing columns {', '.join(missing)}")
    df["mask_path"] = df["mask_path"].fillna("")
    return with_window(df)


def with_window(df: pd.DataFrame) -> pd.DataFrame:
    """A faces manifest with its ``window`` column as integers (:data:`NO_WINDOW` where it is missing or empty,
    as in manifests of an older fmkit), its columns in :data:`FACE_COLUMNS` order, then any others."""
    window = df["window"] if "window" in df.columns else pd.Series(NO_WINDOW, index=df.index)
    df = df.assign(window=pd.to_numeric(window).fillna(NO_WINDOW).astype(int))
    ordered = [c for c in FACE_COLUMNS if c in df.columns]
    return df[ordered + [c for c in df.columns if c not in ordered]]


def read_errors(path: str | os.PathLike) -> pd.DataFrame:
    """Read a faces folder's ``errors.csv`` (the folder, its ``faces.csv`` or the file itself).

    Columns :data:`ERROR_COLUMNS`; a column that a faces folder of an older fmkit lacks (the
    index columns) is empty. No file: an empty table.
    """
    path = Path(path)
    if path.is_dir() or path.name == FACES_FILE:
        path = faces_root(path) / ERRORS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=ERROR_COLUMNS)
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"video_id": str, "source_id": str})
    for column in ERROR_COLUMNS:
        if column not in df.columns:
            df[column] = pd.NA
    df["frame_idx"] = df["frame_idx"].astype("Int64")
    df["label"] = df["label"].astype("Int64")
    return df[ERROR_COLUMNS + [c for c in df.columns if c not in ERROR_COLUMNS]]


def faces_root(path: str | os.PathLike) -> Path:
    """The folder that a manifest's crop paths are relative to (the faces folder)."""
    path = Path(path)
    return path if path.is_dir() else path.parent


# --- crop geometry -----------------------------------------------------------------------


def square_region(box: np.ndarray, margin: float) -> tuple[int, int, int]:
    """Square ``(x0, y0, side)`` centred on ``box`` (x1, y1, x2, y2), side = margin × the box's longer side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(int(round(max(x2 - x1, y2 - y1) * margin)), 2)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_square(image: np.ndarray, region: tuple[int, int, int], size: int) -> np.ndarray:
    """Crop the square region (zero-padded where it leaves the image) and resize to size × size.

    Works for (H, W, 3) frames and (H, W) masks.
    """
    x0, y0, side = region
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        widths = ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2)
        image = np.pad(image, widths)
    crop = image[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def to_crop_coords(points: np.ndarray, region: tuple[int, int, int], size: int) -> np.ndarray:
    """Map frame-pixel points (..., 2) into the pixels of a ``size`` crop of ``region``."""
    x0, y0, side = region
    return (np.asarray(points, np.float32) - np.array([x0, y0], np.float32)) * (size / side)


def crop_region(row: pd.Series) -> tuple[int, int, int]:
    """The ``(x0, y0, side)`` region of a faces-manifest row."""
    return int(row["crop_x0"]), int(row["crop_y0"]), int(row["crop_side"])


def row_to_crop(row: pd.Series, points: np.ndarray) -> np.ndarray:
    """Frame-pixel points (..., 2) of a manifest row mapped into its crop's pixels."""
    return to_crop_coords(points, crop_region(row), int(row["crop_size"]))


def landmarks_in_crop(row: pd.Series) -> np.ndarray:
    """The five landmarks (5, 2) of a manifest row in its crop's pixels."""
    return row_to_crop(row, row[LANDMARK_COLUMNS].to_numpy(float).reshape(5, 2))
