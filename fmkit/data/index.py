"""The video index: one row per video of a dataset, with its label, split and source.

``build_index(root)`` reads a dataset root (never writing inside it) in one of the
supported layouts and returns the index table with the columns of
:data:`INDEX_COLUMNS`, as fixed by the "Video index" contract in docs/architecture.md:
``label`` is 1 for fake and 0 for real, ``split`` is train/val/test, ``path`` is relative
to the root, and ``source_id`` names the source video or identity so that splits never leak.

Layouts (see :mod:`fmkit.data.layouts` for each one's rules):

- ``ffpp``: FaceForensics++ ``original_sequences/``, ``manipulated_sequences/<Method>/``
  at one compression, official pair-list splits;
- ``celebdf``: Celeb-DF v1/v2 with ``List_of_testing_videos.txt`` (its label 1 = real);
- ``dfdc``: DFDC ``dfdc_train_part_*/metadata.json`` and an optional ``test/labels.csv``;
- ``folder``: ``real/`` and ``fake/<method>/`` sub-folders, optional ``metadata.csv``;
- ``csv``: a ready index CSV (or a folder holding ``index.csv``);
- ``auto``: recognised from the markers above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fmkit.data.layouts import Scan, scan_celebdf, scan_dfdc, scan_ffpp, scan_folder
from fmkit.data.schema import INDEX_COLUMNS, SPLITS, read_index, sorted_unique
from fmkit.errors import FmkitError

LAYOUTS = ("auto", "ffpp", "celebdf", "dfdc", "folder", "csv")
INDEX_FILE = "index.csv"

_MARKERS = {
    "ffpp": ("original_sequences", "manipulated_sequences"),
    "celebdf": ("Celeb-real", "Celeb-synthesis", "YouTube-real"),
    "dfdc": ("dfdc_train_part_*",),
    "folder": ("real", "fake"),
}


@dataclass
class IndexResult:
    """A built index and what did not make it in.

    ``df`` has the :data:`INDEX_COLUMNS`, one row per video present on disk, sorted by
    ``video_id``. ``missing`` lists videos that split or metadata files name but that are
    absent on disk; ``uncovered`` lists videos on disk that no official split covers (left
    out of ``df`` unless asked otherwise); ``layout`` is the resolved layout's name.
    """

    df: pd.DataFrame
    missing: list[str]
    uncovered: list[str]
    layout: str


def detect_layout(root: str | os.PathLike) -> str:
    """Recognise the layout of ``root`` from its marker files and folders."""
    root = _existing_root(root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise FmkitError(f"cannot tell the layout of file {root}: expected a dataset folder or an index .csv")
    found = [
        layout
        for layout, markers in _MARKERS.items()
        if any(p.is_dir() for marker in markers for p in root.glob(marker))
    ]
    if len(found) > 1:
        raise FmkitError(f"ambiguous dataset root {root}: it looks like {' and '.join(found)}; pass the layout")
    if found:
        return found[0]
    if (root / INDEX_FILE).is_file():
        return "csv"
    looked_for = "; ".join(f"{layout}: {', '.join(m + '/' for m in markers)}" for layout, markers in _MARKERS.items())
    raise FmkitError(f"unknown dataset layout in {root}: looked for {looked_for}; csv: {INDEX_FILE} or a .csv file")


def build_index(
    root: str | os.PathLike,
    layout: str = "auto",
    *,
    compression: str = "c23",
    splits_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    uncovered_split: str | None = None,
) -> IndexResult:
    """Index the videos of a dataset root.

    ``compression`` and ``splits_dir`` (a folder of ``{train,val,test}.json``, which wins
    over the root's and the packaged splits) apply to FaceForensics++; ``uncovered_split``
    puts FF++ videos that no official split covers into that split instead of dropping
    them. ``val_fraction`` and ``seed`` set the validation part that fmkit carves, by
    source group, where a dataset has no official validation split.
    """
    _check_choice("layout", layout, LAYOUTS)
    _check_choice("uncovered_split", uncovered_split, (*SPLITS, None))
    if not 0 <= val_fraction < 1:
        raise FmkitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = _existing_root(root)
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "csv":
        return IndexResult(read_index(root / INDEX_FILE if root.is_dir() else root), [], [], "csv")
    if not root.is_dir():
        raise FmkitError(f"dataset root {root} is a file: the {layout} layout expects a folder")
    if layout == "ffpp":
        scan = scan_ffpp(root, compression, splits_dir, uncovered_split)
    else:
        scan = {"celebdf": scan_celebdf, "dfdc": scan_dfdc, "folder": scan_folder}[layout](root, val_fraction, seed)
    return _result(scan, root, layout)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Video counts by split, method and label: a tidy table with columns split, method, label, videos."""
    counts = df.groupby(["split", "method", "label"]).size().rename("videos").reset_index()
    order = counts["split"].map({split: i for i, split in enumerate(SPLITS)})
    return (
        counts.assign(_order=order)
        .sort_values(["_order", "method", "label"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def format_summary(result: IndexResult, max_listed: int = 5) -> str:
    """A human-readable report: counts by split, method and label, then missing and uncovered videos."""
    lines = [f"{len(result.df)} videos indexed (layout {result.layout})", summarize(result.df).to_string(index=False)]
    lines += _listing(result.missing, "listed in split/metadata files but absent on disk", max_listed)
    lines += _listing(
        result.uncovered,
        "on disk but covered by no official split (left out unless uncovered_split is set)",
        max_listed,
    )
    return "\n".join(lines)


def _existing_root(root: str | os.PathLike) -> Path:
    """``root`` as a Path; FmkitError when it does not exist."""
    root = Path(root)
    if not root.exists():
        raise FmkitError(f"dataset root not found: {root}")
    return root


def _check_choice(name: str, value: object, choices: tuple) -> None:
    """FmkitError unless ``value`` is one of ``choices``."""
    if value not in choices:
        valid = ", ".join(str(c) for c in choices)
        raise FmkitError(f"unknown {name} {value!r}: expected one of {valid}")


def _result(scan: Scan, root: Path, layout: str) -> IndexResult:
    """Turn a layout scan into an :class:`IndexResult`; an index with no video is an error."""
    df = pd.DataFrame(scan.rows, columns=INDEX_COLUMNS).astype({"label": int})
    if df.empty:
        raise FmkitError(
            f"no videos indexed under {root} (layout {layout}; {len(scan.missing)} listed but absent, "
            f"{len(scan.uncovered)} not covered by official splits)"
        )
    return IndexResult(sorted_unique(df, root), sorted(scan.missing), sorted(scan.uncovered), layout)


def _listing(items: list[str], what: str, max_listed: int) -> list[str]:
    """Report lines for a list of videos: a count, then the first ``max_listed`` of them."""
    if not items:
        return []
    more = [f"  ... and {len(items) - max_listed} more"] if len(items) > max_listed else []
    return [f"{len(items)} videos {what}:"] + [f"  {item}" for item in items[:max_listed]] + more
