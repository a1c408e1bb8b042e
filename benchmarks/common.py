"""Shared setup of the benchmarks: synthetic videos → video index → face crops.

Run the benchmarks as scripts (``python benchmarks/<name>.py``); they import this file as
``common`` (their own folder is on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fmkit.data.index import build_index
from fmkit.data.preprocess import PreprocessSummary, preprocess
from fmkit.data.synth import synthesize


def synth_index(
    root: str | Path, *, videos: int, frames: int, size: int, seed: int = 0, identities: int | None = None
) -> pd.DataFrame:
    """Synthesize ``videos`` real videos (one fake per method each) into ``root``; return its video index.

    ``identities``: face photos the videos cycle through (None: synth's default, min(8, videos)).
    """
    root = Path(root)
    synthesize(root, videos=videos, frames=frames, size=size, seed=seed, progress=False, identities=identities)
    return build_index(root, "folder").df


def synth_faces(
    tmp: str | Path,
    *,
    videos: int,
    frames: int,
    size: int,
    sample: int,
    crop: int,
    seed: int = 0,
    identities: int | None = None,
    workers: int = 1,
) -> tuple[Path, PreprocessSummary]:
    """Synthetic videos in ``tmp/data``, their face crops in ``tmp/faces``; returns (faces folder, summary)."""
    tmp = Path(tmp)
    index = synth_index(tmp / "data", videos=videos, frames=frames, size=size, seed=seed, identities=identities)
    summary = preprocess(
        index, tmp / "faces", root=tmp / "data", cfg={"frames": sample, "size": crop}, workers=workers, progress=False
    )
    return tmp / "faces", summary
