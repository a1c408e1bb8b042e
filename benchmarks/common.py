"""Shared setup of the benchmarks: synthetic videos → video index → face crops.

Run the benchmarks as scripts (``python benchmarks/<name>.py``); they import this file as
``common`` (their own folder is on ``sys.path``).
"""

from __future__ import annotations

import argparse
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


def add_demo_data_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``data`` options of a benchmark on the demo's synthetic data (defaults = configs/demo.yaml)."""
    from fmkit.data.synth import METHODS

    d = parser.add_argument_group("data")
    d.add_argument("--videos", type=int, default=99, help=f"real videos to synthesize (+{len(METHODS)} fakes each)")
    d.add_argument("--frames", type=int, default=8, help="frames per synthetic video (and sampled by preprocess)")
    d.add_argument("--size", type=int, default=128, help="synthetic frame size (px)")
    d.add_argument("--crop", type=int, default=64, help="face crop size (px), also the training size")
    d.add_argument("--workers", type=int, default=2, help="preprocess worker processes")
    d.add_argument("--cache", type=Path, default=None, help="keep the synthetic videos and faces here and reuse them")
    return d


def demo_faces(args: argparse.Namespace, tmp: Path) -> tuple[Path, PreprocessSummary]:
    """The faces folder of :func:`add_demo_data_arguments`' options (one identity per real video), in
    ``args.cache`` (reused when there) or ``tmp``."""
    print(f"synthesizing {args.videos} real videos and cropping their faces ...", flush=True)
    return synth_faces(
        args.cache or tmp,
        videos=args.videos,
        identities=min(args.videos, 99),
        frames=args.frames,
        size=args.size,
        sample=args.frames,
        crop=args.crop,
        seed=args.seed,
        workers=args.workers,
    )
