"""The ``fmkit`` command line (also ``python -m fmkit``).

Every sub-command prints ``--help``; bad input ends with ``fmkit: error: <reason>`` on
one line and exit code 2. Heavy libraries are imported inside each command so that
``--help`` stays fast. Long commands draw progress bars on a terminal only
(:mod:`fmkit.console`), and each warning text is shown once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fmkit.console import warnings_once
from fmkit.errors import FmkitError


def _synth(args: argparse.Namespace) -> int:
    from fmkit.console import progress_enabled
    from fmkit.data.synth import synthesize

    out = synthesize(
        args.out,
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        identities=args.identities,
        progress=progress_enabled(),
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
    from fmkit.data.preprocess import merge, preprocess

    if args.merge:
        if args.output is not None:
            raise FmkitError("preprocess --merge OUT FACES ...: the merged folder is OUT, not -o")
        if len(args.merge) < 2:
            raise FmkitError("preprocess --merge needs the output folder and at least one faces folder: OUT FACES ...")
        report = merge(args.merge[0], args.merge[1:], index=args.index, files=args.merge_files)
        print(report)
        print(f"faces manifest: {Path(args.merge[0]) / 'faces.csv'}; report: {Path(args.merge[0]) / 'merge.json'}")
        return 0
    if args.index is None or args.output is None:
        raise FmkitError("preprocess needs an index CSV and -o FACES (or --merge OUT FACES ... to merge shards)")
    given = {
        "frames": args.frames,
        "windows": args.windows,
        "window_len": args.window_len,
        "size": args.size,
        "margin": args.margin,
        "batch_size": args.batch_size,
        "device": args.device,
        "detection": args.detection,
        "keyframes": args.keyframes,
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


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from fmkit.engine.evaluation import evaluate_run

    report = evaluate_run(
        args.run_path,
        args.data,
        args.output,
        split=args.split,
        device=args.device,
        resamples=args.bootstrap,
        extras=_whitening_metrics,
        progress=None,
    )
    print(json.dumps(report, indent=2, default=str))
    if args.output:
        print(f"metrics, video scores, ROC and score figures, AUC by method written to {args.output}")
    return 0


def _whitening_metrics(model, dataset, folder: Path, split: str) -> dict:
    """Decorrelation of the whitened layer (its input vs its output), its whitening error on these
    held-out faces (eval statistics) and the concept AUC of its axes; nothing for other models."""
    if not hasattr(model, "whitened_features"):
        return {}
    from fmkit.data.concepts import concept_datasets
    from fmkit.interpret.concepts import concept_auc, decorrelation

    size = dataset[0][0].shape[-1]
    whitening = decorrelation(model, dataset)
    out = {"whitening_error": whitening.pop("whitening_error"), "decorrelation": whitening}
    if model.concepts:
        sets = concept_datasets(folder, list(model.concepts), split=split, size=size)
        table = concept_auc(model, sets)
        out["concept_auc"] = dict(zip(table["concept"], table["auc"].round(6)))
    return out


def _predict(args: argparse.Namespace) -> int:
    if args.data is not None:
        return _predict_split(args)
    if not args.files:
        raise FmkitError(
            "predict needs image or video files (fmkit predict RUN FILE ...) or --data FACES -o scores.csv"
        )
    import json

    from fmkit.predict import predict_files

    results = predict_files(args.run_path, args.files, frames=args.frames, device=args.device)
    if args.json:
        print(json.dumps({"run": str(args.run_path), "files": [r.to_dict() for r in results]}))
    else:
        print(f"{'file':<40} {'face':>4} {'P(fake)':>8}  box / error")
        for r in results:
            name = Path(r.path).name[:40]
            if r.error is not None:
                continue
            for f in r.faces:
                print(f"{name:<40} {f.face:>4} {f.prob:>8.3f}  {f.box}")
            print(f"{name:<40} {'all':>4} {r.prob:>8.3f}  ({r.kind}, {'fake' if r.prob >= 0.5 else 'real'})")
    for r in results:
        if r.error is not None:
            print(f"fmkit: error: {r.error}", file=sys.stderr)
    return 2 if any(r.error is not None for r in results) else 0


def _predict_split(args: argparse.Namespace) -> int:
    from fmkit.engine import predict
    from fmkit.engine.data import build_datasets
    from fmkit.engine.evaluation import run_config
    from fmkit.io import write_csv
    from fmkit.models import load

    if args.output is None:
        raise FmkitError("predict --data FACES needs -o scores.csv")
    dataset = build_datasets(args.data, run_config(args.run_path)["data"])[args.split]
    scores = predict(load(args.run_path, device=args.device), dataset, device=args.device, progress=None)
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
    from fmkit.engine.evaluation import SUMMARY_TABLE
    from fmkit.pipeline import REPORT, run_pipeline

    run_dir = run_pipeline(args.config, args.output, overrides=args.param, resume=args.resume)
    summary = run_dir / SUMMARY_TABLE
    if summary.is_file():
        import pandas as pd

        print(pd.read_csv(summary).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"pipeline finished: {run_dir / REPORT}")
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

    p = sub.add_parser(
        "preprocess",
        help="crop the main face of sampled frames of every indexed video (or merge shard folders: --merge)",
    )
    p.add_argument(
        "index", nargs="?", default=None, help="index CSV from `fmkit index` (with --merge: checks for missing videos)"
    )
    p.add_argument("-o", "--output", default=None, help="faces folder to write (crops, faces.csv, errors.csv)")
    p.add_argument(
        "--root",
        default=None,
        help="dataset root the index paths are relative to (default: the root `fmkit index` recorded)",
    )
    p.add_argument(
        "--frames", type=int, default=None, help=f"frames sampled evenly over each video (default {pre['frames']})"
    )
    p.add_argument(
        "--windows",
        type=int,
        default=None,
        metavar="W",
        help="instead of --frames: W windows of --window-len consecutive frames spread evenly over each video, for "
        "clips of consecutive frames (a shorter video gets fewer windows; default 0: off)",
    )
    p.add_argument(
        "--window-len",
        type=int,
        default=None,
        metavar="L",
        help=f"consecutive frames per window, at least the clip models' clip_len (default {pre['window_len']})",
    )
    p.add_argument("--size", type=int, default=None, help=f"crop size in pixels (default {pre['size']})")
    p.add_argument("--margin", type=float, default=None, help=f"crop side / face-box side (default {pre['margin']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"frames per MTCNN batch (default {pre['batch_size']})")
    p.add_argument(
        "--detection",
        default=None,
        choices=("track", "full"),
        help="track: whole-frame MTCNN on keyframes, the tracked face's region on the others; "
        f"full: MTCNN on every whole frame (default {pre['detection']})",
    )
    p.add_argument(
        "--keyframes",
        type=int,
        default=None,
        help=f"track: whole-frame detection every N sampled frames (default {pre['keyframes']})",
    )
    p.add_argument("--workers", type=int, default=1, help="videos processed in parallel processes")
    p.add_argument("--shard", default=None, help="process only shard i of n (i/n, 0-based)")
    p.add_argument(
        "--device", default=None, help=f"torch device for MTCNN: cpu, cuda, cuda:1 (default {pre['device']})"
    )
    p.add_argument("--retry-errors", action="store_true", help="retry videos that failed in an earlier run")
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar=("OUT", "FACES"),
        help="merge faces folders written separately (e.g. --shard i/n on several machines) into OUT; "
        "give the index first to report the videos no shard holds",
    )
    p.add_argument(
        "--merge-files",
        default="link",
        choices=("link", "copy", "move"),
        help="--merge: hard-link (default; a copy across file systems), copy or move the crops into OUT",
    )
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
    p.add_argument(
        "--resume", action="store_true", help="skip notebooks already executed with the same parameters and inputs"
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

    p = sub.add_parser("evaluate", help="metrics of a trained model on the test split of one or more faces folders")
    p.add_argument("run_path", metavar="run", help="run folder (uses checkpoints/best.pt) or a checkpoint file")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        help="faces folder from `fmkit preprocess` (repeat for a cross-dataset table)",
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="split to score (default test)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the 95 %% intervals")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="folder (new or existing) for metrics.json, cross_dataset.csv, per data folder figures",
    )
    p.set_defaults(run=_evaluate)

    p = sub.add_parser("predict", help="fake probability of the faces in image or video files (or of a split's items)")
    p.add_argument("run_path", metavar="run", help="run folder (uses checkpoints/best.pt) or a checkpoint file")
    p.add_argument("files", nargs="*", help="image or video files to score")
    p.add_argument("--json", action="store_true", help="print one JSON object: files, their faces and scores")
    p.add_argument(
        "--frames",
        type=int,
        default=32,
        help="frames sampled evenly over each video (default 32; a run trained on windows of consecutive frames, "
        "`fmkit preprocess --windows`, reads the same windows instead)",
    )
    p.add_argument(
        "--data", default=None, help="instead of files: a faces folder, its --split scored into -o scores.csv"
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="split to score with --data (default test)")
    p.add_argument("-o", "--output", default=None, help="CSV of video_id, label, prob (with --data)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.set_defaults(run=_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv``, run the command, turn FmkitError into a one-line error."""
    args = build_parser().parse_args(argv)
    try:
        with warnings_once():  # the same text once, not at every epoch or bootstrap
            return args.run(args)
    except FmkitError as exc:
        print(f"fmkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fmkit: interrupted", file=sys.stderr)
        return 130
