"""Self-Blended Images training against training on the dataset's own fakes, on held-out identities.

Trains ``baseline2d`` twice from its recipe on the same synthetic faces and seed: once on the
training split's real and fake crops (``data.balance``), once with ``data.sbi`` (each real
training crop paired with a fresh self-blend of it; the dataset's fakes are never seen).
Both are validated and tested on the dataset's own fakes, so the SBI run measures how the
self-blend recipe generalises to manipulations it never trained on. Prints test video AUC
of each (95 % interval resampling test identities), per manipulation method, and the paired
difference SBI − dataset fakes.

    python benchmarks/sbi.py [--videos 99 --cache DIR --epochs E]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import synth_faces

from fmkit.config import train_config
from fmkit.data.schema import LABEL_REAL, read_faces
from fmkit.engine import train
from fmkit.engine.report import heldout_auc_difference, heldout_auc_table
from fmkit.metrics import auc_interval, video_level


def per_method(run: Path, manifest: pd.DataFrame, resamples: int) -> dict[str, str]:
    """Test video AUC of real videos against each method's fakes, with its interval."""
    pred = pd.read_csv(run / "test_predictions.csv", dtype={"video_id": str})
    videos = video_level(pred["prob"], pred["label"], pred["video_id"].tolist())
    info = manifest.groupby("video_id")[["method", "source_id"]].first()
    videos = videos.join(info, on="video_id")
    out = {}
    for method in sorted(set(videos["method"]) - {"real"}):
        sel = videos[(videos["label"] == LABEL_REAL) | (videos["method"] == method)]
        value, lo, hi = auc_interval(sel["prob"], sel["label"], sel["source_id"], resamples=resamples)
        out[method] = f"{value:.3f} ({lo:.3f}–{hi:.3f})"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=99, help="real videos (= identities) to synthesize")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=128, help="synthetic frame size (px)")
    ap.add_argument("--crop", type=int, default=64, help="face crop size (px)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=None, help="keep the synthetic faces here and reuse them")
    args = ap.parse_args()
    started = time.perf_counter()
    overrides = {"epochs": args.epochs} if args.epochs else {}
    with tempfile.TemporaryDirectory() as tmp:
        faces, _ = synth_faces(
            args.cache or tmp,
            videos=args.videos,
            identities=args.videos,
            frames=args.frames,
            size=args.size,
            sample=args.frames,
            crop=args.crop,
            seed=args.seed,
            workers=2,
        )
        seconds, runs = {}, {}
        for name, settings in (("dataset fakes", []), ("SBI", ["data.sbi=true"])):
            t0 = time.perf_counter()
            cfg = train_config("baseline2d", settings=[*settings, f"seed={args.seed}", "device=cpu"], **overrides)
            runs[name] = train(cfg, faces, Path(tmp) / name.replace(" ", "_"))
            seconds[name] = time.perf_counter() - t0
        manifest = read_faces(faces)
        identities = manifest.groupby("video_id")["source_id"].first().to_dict()
        table = heldout_auc_table(runs, identities, resamples=args.bootstrap, seed=args.seed)
        diff = heldout_auc_difference(
            runs["SBI"], runs["dataset fakes"], identities, resamples=args.bootstrap, seed=args.seed
        )
        methods = {name: per_method(run, manifest, args.bootstrap) for name, run in runs.items()}
    held_out = manifest.loc[manifest["split"] == "test", "source_id"].nunique()
    print(
        f"baseline2d recipe, {args.videos} identities ({held_out} in test), seed {args.seed}; "
        f"training {seconds['dataset fakes']:.0f} s and {seconds['SBI']:.0f} s"
    )
    print(table.round(3).to_string(index=False))
    print(f"video AUC, SBI − dataset fakes: {diff[0]:+.3f} (95 % interval {diff[1]:+.3f} … {diff[2]:+.3f})")
    print("test video AUC per manipulation (real videos against that method's fakes):")
    print(pd.DataFrame(methods).to_string())
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
