"""The ``fmkit`` command line (also ``python -m fmkit``).

Every sub-command prints ``--help``; bad input ends with ``fmkit: error: <reason>`` on
one line and exit code 2. Heavy libraries are imported inside each command so that
``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from fmkit.errors import FmkitError


def _synth(args: argparse.Namespace) -> int:
    from fmkit.data.synth import synthesize

    out = synthesize(args.out, videos=args.videos, frames=args.frames, size=args.size, seed=args.seed)
    print(f"synthetic dataset written to {out}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from fmkit.data.index import build_index, format_summary
    from fmkit.io import write_csv

    result = build_index(args.root, args.layout, compression=args.compression, splits_dir=args.splits,
                         val_fraction=args.val_fraction, seed=args.seed, uncovered_split=args.uncovered_split)
    write_csv(result.df, args.output)
    print(format_summary(result))
    print(f"index of {len(result.df)} videos written to {args.output}")
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from fmkit.data.preprocess import PreprocessConfig, preprocess

    cfg = PreprocessConfig(frames=args.frames, size=args.size, margin=args.margin, batch_size=args.batch_size,
                           device=args.device)
    summary = preprocess(args.index, args.output, root=args.root, cfg=cfg, workers=args.workers,
                         shard=args.shard, retry_errors=args.retry_errors)
    print(summary)
    print(f"faces manifest: {Path(args.output) / 'faces.csv'}; errors: {Path(args.output) / 'errors.csv'}")
    if summary.crops == 0 and summary.videos_total:
        print("fmkit: error: no face crop was produced from any video (see errors.csv)", file=sys.stderr)
        return 1
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from fmkit.pipeline import run_pipeline

    run_dir = run_pipeline(args.config, args.output, overrides=args.param)
    print(f"pipeline finished: {run_dir}")
    return 0


def _not_yet(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise FmkitError(f"`fmkit {name}` is not yet available in this version")
    return run


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from fmkit import __version__

    parser = argparse.ArgumentParser(prog="fmkit", description="Detect manipulated faces and explain the detections.")
    parser.add_argument("--version", action="version", version=f"fmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="build a small synthetic real/fake face-video dataset (folder layout)")
    p.add_argument("out", help="output folder (new or empty)")
    p.add_argument("--videos", type=int, default=None, help="number of real videos (default: the synth default)")
    p.add_argument("--frames", type=int, default=None, help="frames per video")
    p.add_argument("--size", type=int, default=None, help="frame size in pixels (square, even)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_synth)

    p = sub.add_parser("index", help="index a dataset's videos into a CSV (video_id, path, label, split, ...)")
    p.add_argument("root", help="dataset root folder (or an index CSV for --layout csv)")
    p.add_argument("--layout", default="auto", help="auto, ffpp, celebdf, dfdc, folder or csv (default auto)")
    p.add_argument("-o", "--output", required=True, help="index CSV to write")
    p.add_argument("--compression", default="c23", help="FaceForensics++ compression: raw, c23 or c40 (default c23)")
    p.add_argument("--splits", default=None, help="folder of FaceForensics++ split JSONs (overrides the root's own)")
    p.add_argument("--uncovered-split", default=None, choices=["train", "val", "test"],
                   help="split for FaceForensics++ videos no official split covers (default: leave them out)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation part carved from train (Celeb-DF, DFDC)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_index)

    p = sub.add_parser("preprocess", help="crop the main face of sampled frames of every indexed video")
    p.add_argument("index", help="index CSV from `fmkit index`")
    p.add_argument("-o", "--output", required=True, help="faces folder to write (crops, faces.csv, errors.csv)")
    p.add_argument("--root", default=None, help="dataset root the index paths are relative to (default: the index's folder)")
    p.add_argument("--frames", type=int, default=32, help="frames sampled evenly over each video (default 32)")
    p.add_argument("--size", type=int, default=224, help="crop size in pixels (default 224)")
    p.add_argument("--margin", type=float, default=1.3, help="crop side / face-box side (default 1.3)")
    p.add_argument("--batch-size", type=int, default=32, help="frames per MTCNN batch")
    p.add_argument("--workers", type=int, default=1, help="videos processed in parallel processes")
    p.add_argument("--shard", default=None, help="process only shard i of n (i/n, 0-based)")
    p.add_argument("--device", default="cpu", help="torch device for MTCNN (cpu, cuda, cuda:1)")
    p.add_argument("--retry-errors", action="store_true", help="retry videos that failed in an earlier run")
    p.set_defaults(run=_preprocess)

    p = sub.add_parser("pipeline", help="run the numbered notebooks under papermill into a run folder")
    p.add_argument("--config", default=None, help="pipeline YAML (default: the embedded demo config)")
    p.add_argument("-o", "--output", required=True, help="run folder")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pipeline parameter (repeatable)")
    p.set_defaults(run=_pipeline)

    for name, text in [("train", "train a registered model on a faces folder"),
                       ("evaluate", "evaluate a trained model at frame and video level"),
                       ("explain", "explain a detector's predictions"),
                       ("predict", "score videos or face crops with a trained model")]:
        p = sub.add_parser(name, help=text)
        p.set_defaults(run=_not_yet(name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv``, run the command, turn FmkitError into a one-line error."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except FmkitError as exc:
        print(f"fmkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fmkit: interrupted", file=sys.stderr)
        return 130
