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
    from fmkit.data.preprocess import write_index

    result = build_index(args.root, args.layout, compression=args.compression, splits_dir=args.splits,
                         val_fraction=args.val_fraction, seed=args.seed, uncovered_split=args.uncovered_split)
    write_index(result.df, args.output, args.root)
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


def _train(args: argparse.Namespace) -> int:
    from fmkit.engine import resolve_config, train

    cfg = None if args.resume and args.config is None else resolve_config(args.config, model={"name": args.model})
    run = train(cfg, args.data, args.output, resume=args.resume, epochs=args.epochs)
    print(f"run folder: {run} (metrics.json, checkpoints/best.pt)")
    return 0


def _scored_split(args: argparse.Namespace):
    from fmkit.engine import resolve_config
    from fmkit.engine.data import build_datasets
    from fmkit.models.checkpoint import load

    run = Path(args.run_path)
    config = run / "config.yaml" if run.is_dir() else None
    cfg = resolve_config(config)
    return load(run, device=args.device), build_datasets(args.data, cfg["data"])[args.split]


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from fmkit.engine import evaluate
    from fmkit.io import write_json

    model, dataset = _scored_split(args)
    metrics = evaluate(model, dataset, device=args.device, progress=True)
    print(json.dumps(metrics, indent=2, default=str))
    if args.output:
        write_json(metrics, args.output)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from fmkit.engine import predict
    from fmkit.io import write_csv

    model, dataset = _scored_split(args)
    scores = predict(model, dataset, device=args.device, progress=True)
    write_csv(scores, args.output)
    print(f"{len(scores)} scores written to {args.output}")
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
    p.add_argument("--root", default=None, help="dataset root the index paths are relative to (default: the root `fmkit index` recorded)")
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

    p = sub.add_parser("train", help="train a registered model on a faces folder into a run folder")
    p.add_argument("model", help="registered model name (e.g. whitening, baseline2d)")
    p.add_argument("--data", required=True, help="faces folder from `fmkit preprocess`")
    p.add_argument("-o", "--output", required=True, help="run folder (config, checkpoints, metrics)")
    p.add_argument("--config", default=None, help="training YAML (model kwargs, data, optim, epochs, seed, device)")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue a killed or finished run from checkpoints/last.pt")
    p.set_defaults(run=_train)

    for name, text, fn in [("evaluate", "frame- and video-level metrics of a trained model on one split", _evaluate),
                           ("predict", "fake probabilities of every item of one split", _predict)]:
        p = sub.add_parser(name, help=text)
        p.add_argument("run_path", metavar="run", help="run folder (uses checkpoints/best.pt) or a checkpoint file")
        p.add_argument("--data", required=True, help="faces folder from `fmkit preprocess`")
        p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default test)")
        p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
        p.add_argument("-o", "--output", default=None, required=name == "predict",
                       help="JSON of the metrics" if name == "evaluate" else "CSV of video_id, label, prob")
        p.set_defaults(run=fn)

    p = sub.add_parser("explain", help="explain a detector's predictions (re-label distillation)")
    p.set_defaults(run=_not_yet("explain"))
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
