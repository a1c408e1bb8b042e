"""TD-3DCNN against its ablation, a 3D ResNet-18 and the frame model: detection on held-out identities, and cost.

In one run, on the same synthetic faces and seed, trains ``td3dcnn``, ``td3dcnn_nodrop``,
``r3d18`` and the frame model ``baseline2d`` from their recipes (``configs/train/``; the
clip length, crop size and epochs given here override them) and prints:

* test video AUC with 95 % intervals resampling test identities, on all fakes and on
  each method's fakes (``wobble`` is the temporal-only one: its frames are each real-looking), every detector on
  the same videos (a video: the mean of its evenly spaced clips, or of its frames for
  ``baseline2d``);
* the paper's claims with paired intervals and verdicts (:data:`fmkit.engine.compare.TD3DCNN_CLAIMS`):
  temporal dropout beats no dropout; the 3D model beats the frame model on ``wobble``
  fakes by >= 0.05 video AUC;
* cost per clip (T x crop x crop): parameters, FLOPs (``torch.utils.flop_counter``; a
  multiply-add is 2 FLOPs; ``baseline2d`` scores a clip as T frames), training and
  inference clips/s measured in this process with the models alternating on the same
  batch (machine noise hits all alike), and the inference throughput ratio
  td3dcnn / r3d18 with a 95 % interval over timing rounds (goal: >= 1, TD-3DCNN at most as
  costly as r3d18).

    python benchmarks/td3dcnn.py [--videos 99 --clip-len 8 --crop 64 --epochs E --cache DIR]

The defaults are the data of ``make demo`` (configs/demo.yaml): 99 real videos of 99
identities, 3 fakes each, 8 frames of 128 px, 64 px face crops, 20 test identities.
Videos with fewer face crops than the clip length are left out of every detector's table
(``data.short_videos: skip``); the count is printed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from common import (
    add_demo_data_arguments,
    alternating_rounds,
    count_flops,
    cuda_sync,
    demo_faces,
    median_seconds,
    ratio_interval,
)

from fmkit.config import train_config
from fmkit.data.schema import read_faces
from fmkit.data.synth import METHODS
from fmkit.engine import compare, train
from fmkit.engine.trainer import resolve_device
from fmkit.metrics import verdict
from fmkit.models import create_model

MODELS = ("td3dcnn", "td3dcnn_nodrop", "r3d18", "baseline2d")
VIDEO_MODELS = MODELS[:3]
TARGET_THROUGHPUT_RATIO = 1.0  # td3dcnn inference clips/s over r3d18's, at least this


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_demo_data_arguments(ap)
    t = ap.add_argument_group("training (default: the recipes in fmkit/configs/train/)")
    t.add_argument("--clip-len", type=int, default=8, help="frames per clip T")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="detectors to train")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    t.add_argument("--timing-rounds", type=int, default=8, help="alternating timing rounds (+1 warm-up)")
    t.add_argument("--timing-batch", type=int, default=8, help="clips per timed batch")
    t.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    t.add_argument("--out", type=Path, default=None, help="keep the run folders here (a new folder)")
    return ap.parse_args()


def configs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each model's recipe with this run's clip length, crop size, epochs, seed and device."""
    shared = [f"data.size={args.crop}", f"seed={args.seed}", f"device={args.device}"]
    if args.epochs:
        shared.append(f"epochs={args.epochs}")
    clips = [f"data.clip_len={args.clip_len}", "data.short_videos=skip"]
    return {m: train_config(m, settings=shared + (clips if m in VIDEO_MODELS else [])) for m in args.models}


def build(cfg: dict[str, Any]) -> torch.nn.Module:
    return create_model(cfg["model"]["name"], **{k: v for k, v in cfg["model"].items() if k != "name"})


def time_models(
    cfgs: dict[str, dict[str, Any]], clip_len: int, crop: int, batch: int, rounds: int, device: torch.device
) -> pd.DataFrame:
    """Seconds per training step (``<model> train``) and per inference batch (``<model> infer``) of ``batch``
    random clips, in turn (:func:`common.alternating_rounds`: order reversed every round, one warm-up round).
    Frame models train on the batch's frames (batch x T images) and score clips as T frames."""
    x = torch.rand(batch, 3, clip_len, crop, crop, device=device)
    y = (torch.arange(batch, device=device) % 2).float()
    frames = x.transpose(1, 2).reshape(-1, 3, crop, crop)
    fns = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(cfg["seed"])
        model = build(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        inputs, labels = (x, y) if name in VIDEO_MODELS else (frames, y.repeat_interleave(clip_len))
        fns[f"{name} train"] = partial(train_step, model, opt, inputs, labels)
        fns[f"{name} infer"] = partial(infer_step, model, x)
    return alternating_rounds(fns, rounds, sync=cuda_sync(device))


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    model.train()
    loss = F.binary_cross_entropy_with_logits(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def infer_step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        model(x)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    cfgs = configs(args)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        faces, prep = demo_faces(args, tmp)
        t_data = time.perf_counter() - t0
        out = args.out or tmp / "runs"
        runs = {}
        for name, cfg in cfgs.items():
            print(f"training {name} ...", flush=True)
            runs[name] = train(cfg, faces, out / name)
        scores = compare.video_scores(runs, faces)
        manifest = read_faces(faces)
        summaries = {name: json.loads((run / "metrics.json").read_text()) for name, run in runs.items()}
        print("timing alternating steps ...", flush=True)
        t1 = time.perf_counter()
        timing = time_models(cfgs, args.clip_len, args.crop, args.timing_batch, args.timing_rounds, device)
        t_timing = time.perf_counter() - t1

    test = manifest[manifest["split"] == "test"]
    splits = manifest.groupby("split")["source_id"].nunique()
    left_out = test["video_id"].nunique() - scores["video_id"].nunique()
    print(
        f"data: {prep.videos_total} videos ({args.videos} real, {len(METHODS)} fakes each), {len(manifest)} face "
        f"crops of {args.crop} px; identities train {splits.get('train', 0)} / val {splits.get('val', 0)} / test "
        f"{splits.get('test', 0)}; {scores['video_id'].nunique()} test videos scored by every detector "
        f"({left_out} left out: fewer than {args.clip_len} face crops); synth + preprocess {t_data:.0f} s"
    )
    cfg0 = cfgs[next(iter(cfgs))]
    print(
        f"recipes: configs/train/<model>.yaml; clips of {args.clip_len} x {args.crop} x {args.crop}, "
        f"{cfg0['epochs']} epochs, seed {args.seed}, device {device}, torch threads {torch.get_num_threads()}; "
        "training seconds: " + ", ".join(f"{n} {s['seconds']:.0f}" for n, s in summaries.items())
    )
    print()
    table = compare.auc_by_method(scores, resamples=args.bootstrap, seed=args.seed)
    print("test video AUC by fakes (95 % intervals resample test identities)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    clip = torch.rand(1, 3, args.clip_len, args.crop, args.crop)
    seconds = median_seconds(timing)
    cost = pd.DataFrame(
        [
            {
                "model": name,
                "params_M": sum(p.numel() for p in build(cfg).parameters()) / 1e6,
                "GFLOPs_per_clip": count_flops(build(cfg), clip) / 1e9,
                "train_clips_per_s": args.timing_batch / seconds[f"{name} train"],
                "infer_clips_per_s": args.timing_batch / seconds[f"{name} infer"],
                "best_epoch": summaries[name]["best_epoch"],
            }
            for name, cfg in cfgs.items()
        ]
    )
    print(
        f"cost per clip of {args.clip_len} x {args.crop} x {args.crop} on {device} (median of {args.timing_rounds} "
        f"alternating rounds of {args.timing_batch} clips; baseline2d trains on the clips' frames)"
    )
    print(cost.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    claims = compare.td3dcnn_claims(scores, resamples=args.bootstrap, seed=args.seed)
    if {"td3dcnn", "r3d18"} <= set(cfgs):
        # throughput td3dcnn / r3d18 = seconds r3d18 / seconds td3dcnn
        ratio, lo, hi = ratio_interval(timing, "r3d18 infer", "td3dcnn infer", args.bootstrap, args.seed)
        row = {
            "claim": "inference clips/s, td3dcnn / r3d18",
            "value": ratio,
            "lo": lo,
            "hi": hi,
            "target": TARGET_THROUGHPUT_RATIO,
            "verdict": verdict(lo, hi, TARGET_THROUGHPUT_RATIO),
            "identities": np.nan,
        }
        claims = pd.concat([claims, pd.DataFrame([row])], ignore_index=True)
    print("claims (AUC intervals resample test identities, paired; the throughput interval resamples timing rounds)")
    print(claims.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(
        f"verdicts: {claims['verdict'].value_counts().to_dict()}; timing {t_timing:.0f} s; "
        f"total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
