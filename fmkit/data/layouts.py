"""Readers for the on-disk layouts of the supported datasets.

Each ``scan_*`` function walks one dataset root (read-only) and returns a :class:`Scan`:
one row per video present on disk (the index columns as a dict), the videos that the
dataset's split or metadata files list but that are absent on disk (``missing``), and
the videos on disk that no official split covers (``uncovered``). ``fmkit.data.index``
turns a scan into the index table; this module knows only the datasets.

Splits never leak: every video carries a ``source_id`` (its source video or identity),
and where fmkit carves a split itself it assigns whole source groups.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmkit.data.schema import LABEL_FAKE, LABEL_REAL, SPLITS
from fmkit.errors import FmkitError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FFPP_COMPRESSIONS = ("raw", "c23", "c40")
FOLDER_TEST_FRACTION = 0.1

Row = dict[str, Any]


@dataclass
class Scan:
    """What a layout reader found: index rows, listed-but-absent and uncovered videos."""

    rows: list[Row] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)


def make_row(video_id: str, path: str, label: int, split: str, method: str, dataset: str, source_id: str) -> Row:
    """One index row as a dict keyed by the index column names."""
    return {
        "video_id": video_id,
        "path": path,
        "label": label,
        "split": split,
        "method": method,
        "dataset": dataset,
        "source_id": source_id,
    }


def carve_groups(groups: Iterable[str], fractions: Mapping[str, float], seed: int) -> dict[str, str]:
    """Assign whole groups to splits: ``fractions`` of them (by count) to each named split, the rest to train.

    Deterministic for a given ``seed``. A split with a positive fraction gets at least one
    group as long as at least one group is left for train.
    """
    unique = sorted(set(groups))
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    assigned: dict[str, str] = {}
    for split, fraction in fractions.items():
        free = len(order) - len(assigned)
        n = max(1, round(fraction * len(unique))) if fraction > 0 else 0
        for group in order[len(assigned) : len(assigned) + min(n, free - 1)]:
            assigned[group] = split
    return {group: assigned.get(group, "train") for group in unique}


def assign_carved(rows: list[Row], fractions: Mapping[str, float], seed: int) -> None:
    """Set the split of ``rows`` (in place) by carving their ``source_id`` groups."""
    by_group = carve_groups((row["source_id"] for row in rows), fractions, seed)
    for row in rows:
        row["split"] = by_group[row["source_id"]]


def relpath(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, with forward slashes."""
    return path.relative_to(root).as_posix()


def _videos_in(folder: Path, suffixes: tuple[str, ...] = VIDEO_SUFFIXES, recursive: bool = False) -> list[Path]:
    """Sorted video files in ``folder`` (recursively if asked), matched by suffix, any case."""
    candidates = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in suffixes)


def _read_json(path: Path) -> Any:
    """Parse a JSON file, naming it when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FmkitError(f"invalid JSON in {path}: {exc}") from None


# --- FaceForensics++ -------------------------------------------------------------------

_FFPP_PAIR_FAKE = re.compile(r"^(\d+)_(\d+)$")
_FFPP_DFD_FAKE = re.compile(r"^([^_]+)_[^_]+__(.+)__[^_]+$")


@dataclass(frozen=True)
class FfppSplits:
    """The official FF++ splits: the split of each id pair (unordered) and of each single id."""

    pairs: dict[frozenset[str], str]
    ids: dict[str, str]


def _ffpp_split_dir(root: Path, splits_dir: str | Path | None) -> Path | Traversable:
    """The folder of split lists to use: ``splits_dir`` if given, else the root's ``splits/``, else the packaged one."""
    if splits_dir is not None:
        return Path(splits_dir)
    own = root / "splits"
    if any((own / f"{split}.json").is_file() for split in SPLITS):
        return own
    return importlib.resources.files("fmkit.data") / "splits" / "ffpp"


def read_ffpp_splits(folder: Path | Traversable) -> FfppSplits:
    """Read the official FF++ ``{train,val,test}.json`` pair lists from ``folder``; an id in two splits is an error."""
    pairs: dict[frozenset[str], str] = {}
    ids: dict[str, str] = {}
    for split in SPLITS:
        path = folder / f"{split}.json"
        if not path.is_file():
            raise FmkitError(
                f"FaceForensics++ split file not found: {path} (expected {', '.join(s + '.json' for s in SPLITS)})"
            )
        entries = _read_json(path)
        if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 2 for e in entries):
            raise FmkitError(f"bad FaceForensics++ split file {path}: expected a JSON list of [id, id] pairs")
        for pair in entries:
            pair = [str(vid) for vid in pair]
            for vid in pair:
                if ids.setdefault(vid, split) != split:
                    raise FmkitError(f"video id {vid} is in both {ids[vid]}.json and {split}.json in {folder}")
            pairs[frozenset(pair)] = split
    return FfppSplits(pairs, ids)


def _subdirs(folder: Path) -> list[Path]:
    """Sorted sub-folders of ``folder`` (none when it does not exist)."""
    return sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []


def _ffpp_video_dirs(root: Path) -> list[tuple[str, Path]]:
    """(method, folder) for every source folder: ``real`` for each original source, else the method's name."""
    originals, manipulated = root / "original_sequences", root / "manipulated_sequences"
    if not originals.is_dir() and not manipulated.is_dir():
        raise FmkitError(
            f"not a FaceForensics++ root: {root} has neither original_sequences/ nor manipulated_sequences/"
        )
    return [("real", d) for d in _subdirs(originals)] + [(d.name, d) for d in _subdirs(manipulated)]


def _ffpp_compressions(dirs: list[tuple[str, Path]]) -> list[str]:
    """The compression levels for which at least one video exists."""
    return sorted({c.name for _, d in dirs for c in _subdirs(d) if _videos_in(c / "videos", (".mp4",))})


def _ffpp_source_id(method: str, stem: str) -> str:
    """Source of an FF++ video: a real's own id; a fake ``a_b``'s target ``a``; a DFD fake's original ``a__scene``."""
    if method == "real":
        return stem
    if match := _FFPP_PAIR_FAKE.match(stem):
        return match.group(1)
    if match := _FFPP_DFD_FAKE.match(stem):
        return f"{match.group(1)}__{match.group(2)}"
    return stem


def _ffpp_official_split(method: str, source: str, stem: str, splits: FfppSplits) -> str | None:
    """Split of a video from the official pair lists, or None when no pair covers it."""
    if method == "real":
        return splits.ids.get(stem) if source == "youtube" else None
    match = _FFPP_PAIR_FAKE.match(stem)
    return splits.pairs.get(frozenset(match.groups())) if match else None


def scan_ffpp(
    root: Path, compression: str = "c23", splits_dir: str | Path | None = None, uncovered_split: str | None = None
) -> Scan:
    """FaceForensics++: originals and every manipulation method present, at one compression.

    Split lists come from ``splits_dir`` when given, else the root's own ``splits/``, else
    the packaged official ones. A real youtube video ``NNN`` takes the split of the pair
    holding ``NNN``; a fake ``a_b`` takes the split of the pair (a, b), so a fake and both
    of its sources share a split. Videos no pair covers (``actors`` originals,
    DeepFakeDetection fakes) go to ``uncovered`` and are left out, unless
    ``uncovered_split`` names a split for them.
    """
    if compression not in FFPP_COMPRESSIONS:
        raise FmkitError(
            f"unknown FaceForensics++ compression {compression!r}: expected one of {', '.join(FFPP_COMPRESSIONS)}"
        )
    dirs = _ffpp_video_dirs(root)
    found = _ffpp_compressions(dirs)
    if compression not in found:
        raise FmkitError(
            f"no FaceForensics++ videos for compression {compression} under {root}; found: {', '.join(found) or 'none'}"
        )
    splits = read_ffpp_splits(_ffpp_split_dir(root, splits_dir))
    scan = Scan()
    for method, folder in dirs:
        for video in _videos_in(folder / compression / "videos", (".mp4",)):
            split = _ffpp_official_split(method, folder.name, video.stem, splits)
            if split is None:
                scan.uncovered.append(relpath(video, root))
                split = uncovered_split
            if split is not None:
                scan.rows.append(
                    make_row(
                        f"ffpp/{folder.name}/{video.stem}",
                        relpath(video, root),
                        LABEL_REAL if method == "real" else LABEL_FAKE,
                        split,
                        method,
                        "ffpp",
                        _ffpp_source_id(method, video.stem),
                    )
                )
    return scan


# --- Celeb-DF --------------------------------------------------------------------------

CELEBDF_FOLDERS = ("Celeb-real", "Celeb-synthesis", "YouTube-real")
CELEBDF_TEST_LIST = "List_of_testing_videos.txt"


def read_celebdf_test_list(path: Path) -> dict[str, int]:
    """Map each path of Celeb-DF's test list to its label in fmkit's convention (1 = fake).

    The list's own lines read ``<label> <relpath>`` with 1 meaning *real*: the label is inverted here.
    """
    if not path.is_file():
        raise FmkitError(f"Celeb-DF test list not found: {path} (expected lines '<label> <relpath>', label 1 = real)")
    listed: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise FmkitError(f"{path}:{lineno}: expected '<0|1> <relpath>', got {line.strip()!r}")
        listed[parts[1]] = LABEL_REAL if parts[0] == "1" else LABEL_FAKE
    return listed


def _celebdf_ids(folder: str, stem: str) -> tuple[str, str]:
    """(source_id, identity group) of a Celeb-DF video.

    ``idX_NNNN`` (real) and ``idX_idY_NNNN`` (fake: face of idY on video idX_NNNN) both have
    source ``idX_NNNN`` and group ``idX``; a YouTube-real video is its own source and group.
    """
    if folder == "YouTube-real":
        return stem, stem
    parts = stem.split("_")
    return f"{parts[0]}_{parts[-1]}", parts[0]


def _celebdf_row(root: Path, folder: str, video: Path, listed: dict[str, int]) -> tuple[Row, str]:
    """The index row (test if listed, else train for now) and identity group of one Celeb-DF video."""
    rel = relpath(video, root)
    label = LABEL_FAKE if folder == "Celeb-synthesis" else LABEL_REAL
    if rel in listed and listed[rel] != label:
        raise FmkitError(
            f"{root / CELEBDF_TEST_LIST}: {rel} is listed as {'fake' if listed[rel] else 'real'} "
            f"but lies in {folder}/ (the list's label 1 means real)"
        )
    source_id, group = _celebdf_ids(folder, video.stem)
    row = make_row(
        f"celebdf/{folder}/{video.stem}",
        rel,
        label,
        "test" if rel in listed else "train",
        "real" if label == LABEL_REAL else folder,
        "celebdf",
        source_id,
    )
    return row, group


def scan_celebdf(root: Path, val_fraction: float = 0.1, seed: int = 0) -> Scan:
    """Celeb-DF (v1 and v2): the official test list becomes ``test``; the rest is split train/val by identity.

    The test list is taken as published. Its label column (1 = real) is checked against
    each video's folder. Listed videos absent on disk are reported in ``missing``.
    """
    present = [name for name in CELEBDF_FOLDERS if (root / name).is_dir()]
    if not present:
        raise FmkitError(f"not a Celeb-DF root: {root} has none of {', '.join(f + '/' for f in CELEBDF_FOLDERS)}")
    listed = read_celebdf_test_list(root / CELEBDF_TEST_LIST)
    scan = Scan()
    group_of: dict[str, str] = {}  # identity group of each video outside the test list, by path
    for folder in present:
        for video in _videos_in(root / folder, (".mp4",)):
            row, group = _celebdf_row(root, folder, video, listed)
            scan.rows.append(row)
            if row["split"] != "test":
                group_of[row["path"]] = group
    by_group = carve_groups(group_of.values(), {"val": val_fraction}, seed)
    for row in scan.rows:
        if row["path"] in group_of:
            row["split"] = by_group[group_of[row["path"]]]
    indexed = {row["path"] for row in scan.rows}
    scan.missing = [rel for rel in listed if rel not in indexed]
    return scan


# --- DFDC ------------------------------------------------------------------------------

DFDC_TEST_LABELS = "test/labels.csv"


def _dfdc_part(part: Path, root: Path, scan: Scan) -> None:
    """Add the videos of one ``dfdc_train_part_*`` folder to ``scan`` (split left as train)."""
    meta_path = part / "metadata.json"
    if not meta_path.is_file():
        raise FmkitError(f"DFDC part without metadata: {meta_path} not found")
    meta = _read_json(meta_path)
    if not isinstance(meta, dict):
        raise FmkitError(f"bad DFDC metadata {meta_path}: expected a JSON object keyed by file name")
    for name, entry in sorted(meta.items()):
        label = entry.get("label") if isinstance(entry, dict) else None
        if label not in ("FAKE", "REAL"):
            raise FmkitError(f"bad DFDC metadata {meta_path}: entry {name} needs label FAKE or REAL, got {label!r}")
        rel = relpath(part / name, root)
        if not (part / name).is_file():
            scan.missing.append(rel)
            continue
        source = entry.get("original") if label == "FAKE" else None
        scan.rows.append(
            make_row(
                f"dfdc/{part.name}/{Path(name).stem}",
                rel,
                LABEL_FAKE if label == "FAKE" else LABEL_REAL,
                "train",
                "dfdc" if label == "FAKE" else "real",
                "dfdc",
                Path(source or name).stem,
            )
        )
    scan.uncovered += [relpath(v, root) for v in _videos_in(part) if v.name not in meta]


def _dfdc_test(root: Path, scan: Scan) -> None:
    """Add the videos of ``test/labels.csv`` (columns filename, label with 1 = fake) to ``scan`` as test."""
    labels_path = root / DFDC_TEST_LABELS
    if not labels_path.is_file():
        raise FmkitError(f"DFDC test folder without labels: {labels_path} not found (columns filename,label; 1 = fake)")
    labels = pd.read_csv(labels_path, dtype=str, keep_default_na=False)
    for column in ("filename", "label"):
        if column not in labels.columns:
            raise FmkitError(f"{labels_path}: missing column {column!r} (expected columns filename,label)")
    for name, label in zip(labels["filename"], labels["label"]):
        if label not in ("0", "1"):
            raise FmkitError(f"{labels_path}: label of {name} must be 0 or 1, got {label!r}")
        rel = f"test/{name}"
        if not (root / rel).is_file():
            scan.missing.append(rel)
            continue
        scan.rows.append(
            make_row(
                f"dfdc/test/{Path(name).stem}",
                rel,
                int(label),
                "test",
                "dfdc" if label == "1" else "real",
                "dfdc",
                Path(name).stem,
            )
        )


def scan_dfdc(root: Path, val_fraction: float = 0.1, seed: int = 0) -> Scan:
    """DFDC: every ``dfdc_train_part_*`` is train, with a validation part carved by source video.

    A fake's source is its ``original`` (a fake without one is its own source), so a
    fake stays with its original. ``test/labels.csv``, when a ``test/`` folder exists, gives
    the test split. Videos on disk in a part but absent from its metadata are ``uncovered``.
    """
    parts = sorted(p for p in root.glob("dfdc_train_part_*") if p.is_dir())
    if not parts:
        raise FmkitError(f"not a DFDC root: {root} has no dfdc_train_part_*/ folders")
    scan = Scan()
    for part in parts:
        _dfdc_part(part, root, scan)
    assign_carved(scan.rows, {"val": val_fraction}, seed)
    if (root / "test").is_dir():
        _dfdc_test(root, scan)
    return scan


# --- Plain folders ---------------------------------------------------------------------

FOLDER_METADATA = "metadata.csv"


def _folder_videos(root: Path) -> list[tuple[Path, str]]:
    """(video, method) for every video under ``real/`` and ``fake/<method>/``."""
    if not (root / "real").is_dir() and not (root / "fake").is_dir():
        raise FmkitError(f"not a folder dataset: {root} has neither real/ nor fake/<method>/")
    videos = [(v, "real") for v in _videos_in(root / "real", recursive=True)] if (root / "real").is_dir() else []
    if (root / "fake").is_dir():
        stray = _videos_in(root / "fake")
        if stray:
            raise FmkitError(f"fake video outside a method folder: {stray[0]} (expected fake/<method>/...)")
        for method_dir in sorted(d for d in (root / "fake").iterdir() if d.is_dir()):
            videos += [(v, method_dir.name) for v in _videos_in(method_dir, recursive=True)]
    return videos


def _folder_source_id(stem: str, real_stems: set[str]) -> str:
    """A fake's source: the longest underscore-prefix of its stem that is a real video's stem, else itself."""
    parts = stem.split("_")
    return next((p for k in range(len(parts), 0, -1) if (p := "_".join(parts[:k])) in real_stems), stem)


def _read_folder_metadata(path: Path) -> pd.DataFrame:
    """The optional ``metadata.csv``: column ``path``, optional ``source_id`` and ``split`` (empty = no override)."""
    meta = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "path" not in meta.columns:
        raise FmkitError(f"{path}: missing column 'path' (optional columns: source_id, split)")
    duplicated = meta["path"][meta["path"].duplicated()]
    if len(duplicated):
        raise FmkitError(f"{path}: path {duplicated.iloc[0]} is listed twice")
    bad = sorted(set(meta.get("split", pd.Series(dtype=str))) - set(SPLITS) - {""})
    if bad:
        raise FmkitError(f"{path}: bad split value {bad[0]!r}, expected one of {', '.join(SPLITS)}")
    return meta.set_index("path")


def _apply_folder_overrides(rows: list[Row], meta: pd.DataFrame, column: str) -> None:
    """Overwrite ``column`` of rows whose path ``meta`` gives a non-empty value for."""
    if column not in meta.columns:
        return
    for row in rows:
        value = meta[column].get(row["path"], "")
        if value:
            row[column] = value


def _group_fixed_splits(rows: list[Row], metadata: Path) -> dict[str, str]:
    """The split each source group is pinned to by metadata overrides; conflicting pins are an error."""
    fixed: dict[str, str] = {}
    for row in rows:
        if row["split"] and fixed.setdefault(row["source_id"], row["split"]) != row["split"]:
            raise FmkitError(
                f"{metadata}: source {row['source_id']} is given both splits "
                f"{fixed[row['source_id']]} and {row['split']} (splits would leak)"
            )
    return fixed


def scan_folder(root: Path, val_fraction: float = 0.1, seed: int = 0) -> Scan:
    """Plain folders: ``real/**`` (label 0) and ``fake/<method>/**`` (label 1, method = folder name).

    Splits (about 80/10/10 train/val/test) are carved over source groups. ``metadata.csv``
    at the root may override ``source_id`` and ``split`` per ``path``; a source group
    pinned to a split takes all its videos along. Paths it lists that are not indexed
    videos (absent, or outside real/ and fake/) are reported in ``missing``.
    """
    videos = _folder_videos(root)
    real_stems = {v.stem for v, method in videos if method == "real"}
    rows = [
        make_row(
            "folder/" + relpath(v.with_suffix(""), root),
            relpath(v, root),
            LABEL_REAL if method == "real" else LABEL_FAKE,
            "",
            method,
            "folder",
            v.stem if method == "real" else _folder_source_id(v.stem, real_stems),
        )
        for v, method in videos
    ]
    scan = Scan(rows=rows)
    meta_path = root / FOLDER_METADATA
    if meta_path.is_file():
        meta = _read_folder_metadata(meta_path)
        _apply_folder_overrides(rows, meta, "source_id")
        _apply_folder_overrides(rows, meta, "split")
        indexed = {row["path"] for row in rows}
        scan.missing = [p for p in meta.index if p not in indexed]
    fixed = _group_fixed_splits(rows, meta_path)
    free = [row for row in rows if row["source_id"] not in fixed]
    assign_carved(free, {"test": FOLDER_TEST_FRACTION, "val": val_fraction}, seed)
    for row in rows:
        row["split"] = fixed.get(row["source_id"], row["split"])
    return scan
