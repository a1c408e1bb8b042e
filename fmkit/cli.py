"""The ``fmkit`` command line (also ``python -m fmkit``).

Every sub-command prints ``--help``; bad input ends with ``fmkit: error: <reason>`` on
one line and exit code 2. Heavy libraries are imported inside each command so that
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fmkit.errors import FmkitError


def _synth(args: argparse.Namespace) -> int:
    from fmkit.data.synth import synthesize

    out = synthesize(
        args.out, videos=args.videos, frames=args.frames, size=args.size, seed=args.seed, identities=args.identities
    )
    print(f"synthetic dataset written to {out}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from fmkit.data.index import build_index, format_summary
    from fmkit.data.schema import write_index

    result = build_index(
        args.source,
        args.layout,
        compression=args.compression,
        splits_dir=args.splits,
        val_fraction=args.val_fraction,
        seed=args.seed,
        uncovered_split=args.uncovered_split,
    )
    write_index(result.df, args.output, args.root or args.source)
    print(format_summary(result))
    print(f"index of {len(result.df)} videos written to {args.output}")
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from fmkit.data.preprocess import preprocess

    given = {
        "frames": args.frames,
        "size": args.size,
        "margin": args.margin,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    cfg = {k: v for k, v in given.items() if v is not None}
    summary = preprocess(
        args.index,
        args.output,
        root=args.root,
        cfg=cfg,
        workers=args.workers,
        shard=args.shard,
        retry_errors=args.retry_errors,
    )
    print(summary)
    print(f"faces manifest: {Path(args.output) / 'faces.csv'}; errors: {Path(args.output) / 'errors.csv'}")
    if summary.crops == 0 and summary.videos_total:
        print("fmkit: error: no face crop was produced from any video (see errors.csv)", file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace) -> int:
    from fmkit.config import train_config
    from fmkit.engine import train
    from fmkit.models.checkpoint import LAST

    # resuming a run takes its stored config (unless a new one is given); a new run, the recipe
    fresh = not (args.resume and (Path(args.output) / LAST).is_file()) or args.config is not None or args.set
    cfg = train_config(args.model, args.config, args.set) if fresh else None
    run = train(cfg, args.data, args.output, resume=args.resume, epochs=args.epochs)
    print(f"run folder: {run} (metrics.json, checkpoints/best.pt)")
    return 0


def _scored_split(args: argparse.Namespace):
    from fmkit.config import resolve_config
    from fmkit.engine.data import build_datasets
    from fmkit.models.checkpoint import checkpoint_path, load, read_checkpoint

    run = Path(args.run_path)
    if not run.exists():
        raise FmkitError(f"run not found: {run} (expected a run folder of `fmkit train` or a checkpoint file)")
    if run.is_dir() and not (run / "config.yaml").is_file():
        raise FmkitError(
            f"{run} is not a run folder: it has no config.yaml (expected a folder written by "
            "`fmkit train`, or a checkpoint file)"
        )
    stored = read_checkpoint(checkpoint_path(run)).get("train_config")
    if stored is None:
        raise FmkitError(f"{checkpoint_path(run)} records no training config: its data settings are unknown")
    cfg = resolve_config(stored)
    return load(run, device=args.device), build_datasets(args.data, cfg["data"])[args.split]


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from fmkit.data.datasets import ClipDataset
    from fmkit.engine import evaluate
    from fmkit.io import write_json

    model, dataset = _scored_split(args)
    metrics = {"items": "clips" if isinstance(dataset, ClipDataset) else "frames"}
    metrics.update(evaluate(model, dataset, device=args.device, progress=True))
    if hasattr(model, "whitened_features"):
        metrics.update(_whitening_metrics(model, dataset, args))
    report = {args.split: metrics}
    print(json.dumps(report, indent=2, default=str))
    if args.output:
        out = Path(args.output)
        target = out / "metrics.json" if out.is_dir() or not out.suffix else out
        write_json(report, target)
        print(f"metrics written to {target}")
    return 0


def _whitening_metrics(model, dataset, args: argparse.Namespace) -> dict:
    """Decorrelation of the whitened layer (its input vs its output), its whitening error on these
    held-out faces (eval statistics) and the concept AUC of its axes."""
    from fmkit.data.concepts import concept_datasets
    from fmkit.interpret.concepts import concept_auc, decorrelation

    size = dataset[0][0].shape[-1]
    whitening = decorrelation(model, dataset)
    out = {"whitening_error": whitening.pop("whitening_error"), "decorrelation": whitening}
    if model.concepts:
        sets = concept_datasets(args.data, list(model.concepts), split=args.split, size=size)
        table = concept_auc(model, sets)
        out["concept_auc"] = dict(zip(table["concept"], table["auc"].round(6)))
    return out


def _predict(args: argparse.Namespace) -> int:
    from fmkit.engine import predict
    from fmkit.io import write_csv

    model, dataset = _scored_split(args)
    scores = predict(model, dataset, device=args.device, progress=True)
    write_csv(scores, args.output)
    print(f"{len(scores)} scores written to {args.output}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    import json

    from fmkit.interpret.explain_image import explain_file
    from fmkit.io import atomic_path
    from fmkit.plots import explanation_overlay

    result = explain_file(
        args.run_path,
        args.image,
        args.method,
        args.vae,
        n_samples=args.n_samples,
        sigma=args.sigma,
        seed=args.seed,
        is_crop=args.is_crop,
        margin=args.margin,
        device=args.device,
    )
    decision = "fake" if result.label else "real"
    title = f"{Path(args.image).name}: {decision}, P(fake) = {result.prob:.3f} · {args.method}"
    fig = explanation_overlay(result.image, result.map, title)
    with atomic_path(args.output) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(args.output).suffix.lstrip(".") or "png")
    if args.json:
        print(json.dumps({**result.summary(), "output": str(args.output)}))
    else:
        print(f"{args.image}: P(fake) = {result.prob:.3f} ({decision}); {args.method} map written to {args.output}")
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from fmkit.pipeline import run_pipeline

    run_dir = run_pipeline(args.config, args.output, overrides=args.param)
    print(f"pipeline finished: {run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from fmkit import __version__
    from fmkit.config import PREPROCESS, SYNTH, defaults
    from fmkit.data.schema import SPLITS

    pre, syn = defaults(PREPROCESS), defaults(SYNTH)

    parser = argparse.ArgumentParser(prog="fmkit", description="Detect manipulated faces and explain the detections.")
    parser.add_argument("--version", action="version", version=f"fmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="build a small synthetic real/fake face-video dataset (folder layout)")
    p.add_argument("out", help="output folder (new or empty)")
    p.add_argument("--videos", type=int, default=None, help=f"number of real videos (default {syn['videos']})")
    p.add_argument(
        "--identities", type=int, default=None, help="identities (photos) they show (default min(8, videos))"
    )
    p.add_argument("--frames", type=int, default=None, help=f"frames per video (default {syn['frames']})")
    p.add_argument("--size", type=int, default=None, help=f"frame size in pixels, square, even (default {syn['size']})")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default {syn['seed']})")
    p.set_defaults(run=_synth)

    p = sub.add_parser("index", help="index a dataset's videos into a CSV (video_id, path, label, split, ...)")
    p.add_argument("source", metavar="root", help="dataset root folder (or an index CSV for --layout csv)")
    p.add_argument("--layout", default="auto", help="auto, ffpp, celebdf, dfdc, folder or csv (default auto)")
    p.add_argument("-o", "--output", required=True, help="index CSV to write")
    p.add_argument("--compression", default="c23", help="FaceForensics++ compression: raw, c23 or c40 (default c23)")
    p.add_argument("--splits", default=None, help="folder of FaceForensics++ split JSONs (overrides the root's own)")
    p.add_argument(
        "--root",
        default=None,
        help="dataset root the index paths are relative to (default: the root folder; for a csv index, its folder)",
    )
    p.add_argument(
        "--uncovered-split",
        default=None,
        choices=SPLITS,
        help="split for FaceForensics++ videos no official split covers (default: leave them out)",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation part carved from train (Celeb-DF, DFDC)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_index)

    p = sub.add_parser("preprocess", help="crop the main face of sampled frames of every indexed video")
    p.add_argument("index", help="index CSV from `fmkit index`")
    p.add_argument("-o", "--output", required=True, help="faces folder to write (crops, faces.csv, errors.csv)")
    p.add_argument(
        "--root",
        default=None,
        help="dataset root the index paths are relative to (default: the root `fmkit index` recorded)",
    )
    p.add_argument(
        "--frames", type=int, default=None, help=f"frames sampled evenly over each video (default {pre['frames']})"
    )
    p.add_argument("--size", type=int, default=None, help=f"crop size in pixels (default {pre['size']})")
    p.add_argument("--margin", type=float, default=None, help=f"crop side / face-box side (default {pre['margin']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"frames per MTCNN batch (default {pre['batch_size']})")
    p.add_argument("--workers", type=int, default=1, help="videos processed in parallel processes")
    p.add_argument("--shard", default=None, help="process only shard i of n (i/n, 0-based)")
    p.add_argument(
        "--device", default=None, help=f"torch device for MTCNN: cpu, cuda, cuda:1 (default {pre['device']})"
    )
    p.add_argument("--retry-errors", action="store_true", help="retry videos that failed in an earlier run")
    p.set_defaults(run=_preprocess)

    p = sub.add_parser("pipeline", help="run the numbered notebooks under papermill into a run folder")
    p.add_argument("--config", default=None, help="pipeline YAML (default: the embedded demo config)")
    p.add_argument("-o", "--output", required=True, help="run folder")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a pipeline parameter (repeatable)",
    )
    p.set_defaults(run=_pipeline)

    p = sub.add_parser("train", help="train a registered model on a faces folder into a run folder")
    p.add_argument("model", help="registered model name (e.g. whitening, baseline2d)")
    p.add_argument("--data", required=True, help="faces folder from `fmkit preprocess`")
    p.add_argument("-o", "--output", required=True, help="run folder (config, checkpoints, metrics)")
    p.add_argument(
        "--config", default=None, help="training YAML laid over the model's recipe (fmkit/configs/train/MODEL.yaml)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value by its dotted key, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    p.add_argument("--epochs", type=int, default=None, help="total epochs (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue a killed or finished run from checkpoints/last.pt")
    p.set_defaults(run=_train)

    p = sub.add_parser("explain", help="explain a detector's decision on the face of one image file")
    p.add_argument(
        "run_path", metavar="run", help="detector run folder (uses checkpoints/best.pt) or a checkpoint file"
    )
    p.add_argument("--image", required=True, help="image file (a photo or video frame with a face, or a face crop)")
    p.add_argument("--vae", default=None, help="VAE run folder (fmkit train vae), needed by --method relabel")
    p.add_argument(
        "--method", default="relabel", help="relabel (re-label distillation), gradcam, ig, occlusion or lime"
    )
    p.add_argument("-o", "--output", required=True, help="figure to write (PNG): face, map, overlay")
    p.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    p.add_argument("--is-crop", action="store_true", help="the image is a face crop already: no face detection")
    p.add_argument("--margin", type=float, default=None, help=f"crop side / face-box side (default {pre['margin']})")
    p.add_argument("--n-samples", type=int, default=1000, help="re-label distillation: VAE neighbours")
    p.add_argument(
        "--sigma", type=float, default=1.0, help="re-label distillation: latent perturbation, posterior stds"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.set_defaults(run=_explain)

    for name, text, fn in [
        ("evaluate", "frame- and video-level metrics of a trained model on one split", _evaluate),
        ("predict", "fake probabilities of every item of one split", _predict),
    ]:
        p = sub.add_parser(name, help=text)
        p.add_argument("run_path", metavar="run", help="run folder (uses checkpoints/best.pt) or a checkpoint file")
        p.add_argument("--data", required=True, help="faces folder from `fmkit preprocess`")
        p.add_argument("--split", default="test", choices=SPLITS, help="split to score (default test)")
        p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
        p.add_argument(
            "-o",
            "--output",
            default=None,
            required=name == "predict",
            help="JSON file or folder (writes metrics.json in it)"
            if name == "evaluate"
            else "CSV of video_id, label, prob",
        )
        p.set_defaults(run=fn)
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
