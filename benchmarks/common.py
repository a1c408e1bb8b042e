"""Shared setup of the benchmarks: synthetic videos → video index → face crops, and the timing harness.

Run the benchmarks as scripts (``python benchmarks/<name>.py``); they import this file as
``common`` (their own folder is on ``sys.path``).

The harness: :func:`alternating_rounds` times callables in alternating order (machine noise
hits all alike), :func:`ratio_interval` turns two of them into a time ratio with a paired
bootstrap interval over rounds, :func:`count_flops` / :func:`call_flops` count FLOPs with
``torch.utils.flop_counter``, and :func:`claim_row` makes one row of a claims table
(:data:`CLAIM_COLUMNS`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from fmkit.data.index import build_index
from fmkit.data.preprocess import PreprocessSummary, preprocess
from fmkit.data.synth import synthesize
from fmkit.metrics import bootstrap_interval, verdict

#: Columns of a claims table, in order (:func:`claim_row`).
CLAIM_COLUMNS = [
    "claim",
    "paper",
    "metric",
    "value",
    "lo",
    "hi",
    "target",
    "direction",
    "verdict",
    "n_persons",
    "n_fits",
    "seeds",
    "command",
]


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


# --- the timing and FLOP harness ----------------------------------------------------------


def cuda_sync(device: torch.device | str) -> Callable[[], None] | None:
    """The ``sync`` of :func:`alternating_rounds` for ``device``: CUDA's synchronize, None elsewhere."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(device)


def alternating_rounds(
    fns: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    *,
    sync: Callable[[], object] | None = None,
    errors: dict[str, str] | None = None,
    keep_warmup: bool = False,
) -> pd.DataFrame:
    """Time each fn once per round, in alternating order, after ``warmup`` untimed calls each: columns
    round, name, seconds.

    Round ``r`` calls the fns in their given order when ``r`` is even and in reverse when odd;
    the warm-up rounds are rounds -warmup..-1 of the same sequence, so the order alternates
    throughout and every fn runs as often early as late in a round. Rows are in call order.
    ``sync`` (e.g. :func:`cuda_sync`) is called before starting and before stopping each clock.

    ``errors``: when given, a fn that raises is reported there (name → ``"Type: message"``),
    not called again and left out of the table; otherwise the exception propagates.
    ``keep_warmup``: also return the warm-up calls' rows (negative rounds), e.g. to report
    compilation time.
    """
    names = list(fns)
    rows: list[tuple[int, str, float]] = []
    failed: dict[str, str] = {}
    for r in range(-warmup, rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            if name in failed:
                continue
            if sync is not None:
                sync()
            start = time.perf_counter()
            try:
                fns[name]()
                if sync is not None:
                    sync()
            except Exception as exc:
                if errors is None:
                    raise
                failed[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
                continue
            rows.append((r, name, time.perf_counter() - start))
    if errors is not None:
        errors.update(failed)
    times = pd.DataFrame(rows, columns=["round", "name", "seconds"])
    times = times[~times["name"].isin(list(failed))]
    if not keep_warmup:
        times = times[times["round"] >= 0]
    return times.reset_index(drop=True)


def per_round(times: pd.DataFrame) -> pd.DataFrame:
    """The timed rounds of :func:`alternating_rounds` as a table: one row a round, one column a name (seconds)."""
    timed = times[times["round"] >= 0]
    return timed.pivot(index="round", columns="name", values="seconds").rename_axis(columns=None)


def median_seconds(times: pd.DataFrame) -> pd.Series:
    """Median seconds of each name over the timed rounds."""
    return per_round(times).median()


def ratio_interval(
    times: pd.DataFrame, num: str, den: str, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Ratio of the median seconds of ``num`` over ``den`` and a bootstrap interval resampling rounds
    (paired: the same rounds for both).

    (value, lo, hi); only rounds that timed both count. ``num`` = the slower-is-larger side:
    a time ratio; give the baseline as ``num`` for a throughput (speed-up) ratio. The interval
    is :func:`fmkit.metrics.bootstrap_interval` over rounds ((nan, nan) with fewer than two).
    """
    wide = per_round(times)
    both = wide[num].notna() & wide[den].notna()
    a, b = wide.loc[both, num].to_numpy(), wide.loc[both, den].to_numpy()
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    stat = lambda rows: float(np.median(a[rows]) / np.median(b[rows]))
    lo, hi = bootstrap_interval(stat, range(a.size), resamples=resamples, level=level, seed=seed)
    return stat(np.arange(a.size)), lo, hi


def call_flops(fn: Callable[[], object]) -> float:
    """FLOPs of everything ``fn()`` runs (forward and backward alike) by ``FlopCounterMode`` (no printing);
    a multiply-add counts as 2 FLOPs; matrix products and convolutions are counted."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def count_flops(model: torch.nn.Module, example: torch.Tensor) -> float:
    """Forward FLOPs of model(example) by torch.utils.flop_counter.FlopCounterMode (no printing).

    The forward runs in eval mode without gradients (inference cost); the model's mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return call_flops(lambda: model(example))
    finally:
        model.train(was_training)


def claim_row(
    claim: str,
    paper: str,
    metric: str,
    value: float,
    lo: float,
    hi: float,
    target: float,
    larger: bool,
    n_persons: int,
    n_fits: int,
    seeds: str,
    command: str,
) -> dict:
    """One claims-table row: direction '>=' or '<=' from ``larger``, verdict by
    fmkit.metrics.verdict(lo, hi, target, larger).

    Keys: :data:`CLAIM_COLUMNS`, in order.
    """
    return {
        "claim": claim,
        "paper": paper,
        "metric": metric,
        "value": float(value),
        "lo": float(lo),
        "hi": float(hi),
        "target": float(target),
        "direction": ">=" if larger else "<=",
        "verdict": verdict(lo, hi, target, larger),
        "n_persons": n_persons,
        "n_fits": n_fits,
        "seeds": seeds,
        "command": command,
    }
