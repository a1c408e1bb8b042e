"""Feature whitening vs the plain backbone: the method's claims on held-out identities, and step time.

In one run, on the same synthetic faces and seed, trains ``baseline2d`` and ``whitening``
from their recipes (``configs/train/``; options given here override them) and prints the
claims table of :func:`fmkit.interpret.claims.whitening_report` (the same table notebook 02 ends
with): test video AUC of each detector, the paired AUC difference, the decorrelation of
the whitened layer against the plain one, the mean concept AUC on test faces, each with a
95 % interval that resamples test identities and a verdict (MET only when the whole
interval clears the target; MISSED when it misses it; UNDECIDED otherwise). It adds the
training step time ratio whitening / baseline on CPU, measured in this process on fresh
models alternating step by step on the same batch (so machine noise hits both alike; the
alignment step is amortised over ``every`` steps), with an interval over timing rounds,
and per axis the concept AUC and the pointing score.

    python benchmarks/whitening.py [--videos 99 --epochs E --crop 64 --layer ... --cache DIR]

The defaults are the data of ``make demo`` (configs/demo.yaml): 99 real videos of 99
identities (the most the shipped photos give), 3 fakes each, 8 frames of 128 px, 64 px face
crops; splits by identity leave 20 people in the test split. With the same recipes and seed
the benchmark's claims table is the demo's. Choices behind the defaults:

* The whitened layer needs more feature columns per batch (m = batch x h x w) than
  channels, else the batch covariance is singular. On 64 px crops resnet18's last block
  has m = 32 x 2 x 2 = 128 for 512 channels, so the recipes whiten ``layer2.1.bn2``
  (128 channels, m = 32 x 8 x 8 = 2048); ``--layer`` picks another BatchNorm.
* Eval whitens test faces with the inverse square root of the running covariance
  (``statistics: covariance``), which whitens held-out features better than IterNorm's
  running average of batch matrices (tested in tests/test_whitening.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from common import alternating_rounds, cuda_sync, per_round, ratio_interval, synth_faces

from fmkit.config import train_config
from fmkit.data.datasets import FrameDataset
from fmkit.data.schema import read_faces
from fmkit.data.synth import METHODS
from fmkit.data.transforms import build_transform
from fmkit.engine import ConceptAlignment, TrainContext, train
from fmkit.engine.loop import LossModule
from fmkit.engine.trainer import resolve_device
from fmkit.interpret.claims import whitening_report
from fmkit.metrics import verdict
from fmkit.models import create_model, load

#: Whitened layer per backbone for small crops (see the module docstring); others: the model's default.
SMALL_CROP_LAYER = {"resnet18": "layer2.1.bn2"}

TARGET_STEP_RATIO = 1.3  # whitening step / baseline step at most this (CPU); the other targets: claims.TARGETS
MODELS = ("baseline2d", "whitening")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    d = ap.add_argument_group("data")
    d.add_argument("--videos", type=int, default=99, help=f"real videos to synthesize (+{len(METHODS)} fakes each)")
    d.add_argument(
        "--identities",
        type=int,
        default=None,
        help="face photos the real videos cycle through (default: one per video, at most 96)",
    )
    d.add_argument("--frames", type=int, default=8, help="frames per synthetic video")
    d.add_argument("--size", type=int, default=128, help="synthetic frame size (px)")
    d.add_argument("--sample", type=int, default=8, help="frames sampled per video by preprocess")
    d.add_argument("--crop", type=int, default=64, help="face crop size (px), also the training size")
    d.add_argument("--workers", type=int, default=2, help="preprocess worker processes")
    d.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep the synthetic videos and faces in this folder and reuse them on later runs",
    )
    m = ap.add_argument_group("models")
    m.add_argument("--backbone", default="resnet18", help="timm backbone of both models")
    m.add_argument(
        "--layer",
        default=None,
        help="BatchNorm replaced by the whitening (and analysed in the baseline); "
        "default: the model's default if a batch gives it >= 2 feature columns per channel, "
        f"else {SMALL_CROP_LAYER}",
    )
    m.add_argument("--mode", default=None, choices=["exact", "iterative"], help="whitening mode (default: recipe's)")
    m.add_argument("--T", type=int, default=None, help="Newton iterations (iterative mode)")
    m.add_argument("--group-size", type=int, default=None, help="whitening group size (default: the model's)")
    m.add_argument("--momentum", type=float, default=None, help="momentum of the whitening's running statistics")
    m.add_argument("--align-every", type=int, default=None, help="concept alignment every this many steps")
    m.add_argument("--concept-batch", type=int, default=None, help="images per concept in an alignment step")
    t = ap.add_argument_group("training (default: the recipes in fmkit/configs/train/)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None, help="learning rate")
    t.add_argument("--scheduler", default=None, choices=["cosine", "none"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu, cuda or auto (the step-time target is for CPU)")
    t.add_argument(
        "--timing-rounds",
        type=int,
        default=10,
        help="alternating timing rounds (one step of each model per round; one more for warm-up)",
    )
    t.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the AUC difference")
    t.add_argument("--out", type=Path, default=None, help="keep the two run folders here (a new folder)")
    args = ap.parse_args()
    if args.identities is None:
        args.identities = min(args.videos, 99)
    return args


def feature_columns(backbone: str, layer: str | None, crop: int, batch: int) -> tuple[int, int]:
    """(m, C) of ``layer`` (None: the model's default) for a training batch: m = batch x h x w columns."""
    model = create_model("whitening", backbone=backbone, layer=layer, concepts=()).eval()
    with torch.no_grad():
        _, c, h, w = model.whitened_features(torch.zeros(1, 3, crop, crop)).shape
    return batch * h * w, c


def default_layer(backbone: str, crop: int, batch: int) -> str:
    """The model's default whitened layer when a batch gives it at least 2 columns per channel, else
    the :data:`SMALL_CROP_LAYER` of the backbone (when it has one)."""
    m, c = feature_columns(backbone, None, crop, batch)
    if m >= 2 * c or backbone not in SMALL_CROP_LAYER:
        return create_model("whitening", backbone=backbone, concepts=()).layer
    return SMALL_CROP_LAYER[backbone]


def given(layer: dict[str, Any]) -> dict[str, Any]:
    """A config layer without its None values (options left to the recipe)."""
    out = {k: given(v) if isinstance(v, dict) else v for k, v in layer.items() if v is not None}
    return {k: v for k, v in out.items() if v != {}}


def configs(args: argparse.Namespace, layer: str) -> dict[str, dict[str, Any]]:
    """The two training configs: the packaged recipes with the options given here; identical but for the model."""
    shared = {
        "data": {"size": args.crop, "batch_size": args.batch_size, "num_workers": 0},
        "optim": {"lr": args.lr, "scheduler": args.scheduler},
        "epochs": args.epochs,
        "seed": args.seed,
        "device": args.device,
    }
    model = {"backbone": args.backbone, "layer": layer}
    whitening = {"mode": args.mode, "T": args.T, "group_size": args.group_size, "momentum": args.momentum}
    align = {"every": args.align_every, "batch": args.concept_batch}
    return {
        "baseline2d": train_config("baseline2d", given({**shared, "model": model})),
        "whitening": train_config(
            "whitening", given({**shared, "model": {**model, **whitening}, "callbacks": {"concept_alignment": align}})
        ),
    }


def model_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg["model"].items() if k != "name"}


def time_steps(cfgs: dict[str, dict[str, Any]], faces: Path, rounds: int, run_dir: Path) -> pd.DataFrame:
    """Per-step seconds of fresh models, one training step of each in turn (order swapped every round;
    :func:`common.alternating_rounds`, one warm-up round).

    ``align``: the whitening model's alignment hook (concept batches + Cayley step), once
    per round, alternating with the steps.
    """
    device = resolve_device(cfgs["baseline2d"]["device"])
    data = cfgs["baseline2d"]["data"]
    train_set = FrameDataset(faces, split="train", transform=build_transform(data["size"], train=False))
    items = [train_set[i] for i in range(min(data["batch_size"], len(train_set)))]
    batch = (torch.stack([x for x, _ in items]).to(device), torch.stack([y for _, y in items]).to(device))
    fns, ctx = {}, None
    align = ConceptAlignment(**cfgs["whitening"]["callbacks"]["concept_alignment"])
    for name, cfg in cfgs.items():
        torch.manual_seed(cfg["seed"])
        model = create_model(name, **model_kwargs(cfg)).to(device).train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg["optim"]["lr"])
        fns[name] = partial(train_step, LossModule(model), opt, batch)
        if name == "whitening":
            ctx = TrainContext(
                config=cfg, run_dir=run_dir, data=faces, datasets={}, model=model, optimizer=opt, device=device
            )
            align.on_train_start(ctx)

    def align_step() -> None:
        ctx.global_step += align.every  # an alignment step is due at every multiple of ``every``
        align.on_train_batch_end(ctx, batch)

    fns["align"] = align_step
    return alternating_rounds(fns, rounds, sync=cuda_sync(device))


def train_step(loss_module: LossModule, opt: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    loss = loss_module(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def step_ratio(timing: pd.DataFrame, every: int, resamples: int, seed: int) -> tuple[float, float, float]:
    """(whitening step + alignment / every) / baseline step, median seconds over rounds, with a 95 % interval
    resampling rounds (:func:`common.ratio_interval`)."""
    wide = per_round(timing)
    amortised = (wide["whitening"] + wide["align"] / every).rename("whitening+align")
    rows = amortised.reset_index().melt(id_vars="round", var_name="name", value_name="seconds")
    return ratio_interval(pd.concat([timing, rows]), "whitening+align", "baseline2d", resamples, seed)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    layer = args.layer or default_layer(args.backbone, args.crop, args.batch_size or 32)
    cfgs = configs(args, layer)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        print(f"synthesizing {args.videos} real videos and cropping their faces ...", flush=True)
        faces, prep = synth_faces(
            args.cache or tmp,
            videos=args.videos,
            identities=args.identities,
            frames=args.frames,
            size=args.size,
            sample=args.sample,
            crop=args.crop,
            seed=args.seed,
            workers=args.workers,
        )
        t_data = time.perf_counter() - t0
        out = args.out or tmp / "runs"
        runs = {}
        for name in MODELS:
            print(f"training {name} ...", flush=True)
            runs[name] = train(cfgs[name], faces, out / name)
        print("measuring the claims on the test split, then timing alternating steps ...", flush=True)
        report = whitening_report(runs, faces, resamples=args.bootstrap, seed=args.seed)
        concepts = list(load(runs["whitening"]).concepts)
        manifest = read_faces(faces)
        seconds = {name: json.loads((run / "metrics.json").read_text())["seconds"] for name, run in runs.items()}
        t1 = time.perf_counter()
        timing = time_steps(cfgs, faces, args.timing_rounds, tmp)
        t_timing = time.perf_counter() - t1

    tc = cfgs["whitening"]
    wm = tc["callbacks"]["concept_alignment"]
    fw = create_model("whitening", **model_kwargs(tc)).whitening
    splits = manifest.groupby("split")["source_id"].nunique()
    print(
        f"data: {prep.videos_total} videos ({args.videos} real over {args.identities} identities, {len(METHODS)} "
        f"fakes each), {len(manifest)} face crops of {args.crop} px; identities train {splits.get('train', 0)} / "
        f"val {splits.get('val', 0)} / test {splits.get('test', 0)}; synth + preprocess {t_data:.0f} s"
    )
    m_cols, _ = feature_columns(args.backbone, layer, args.crop, tc["data"]["batch_size"])
    print(
        f"recipes: configs/train/{{baseline2d,whitening}}.yaml with the options given here; backbone "
        f"{args.backbone}, analysed layer {layer} ({fw.num_features} channels, {m_cols} feature columns per "
        f"batch); {tc['epochs']} epochs, batch {tc['data']['batch_size']}, {tc['optim']['optimizer']} lr "
        f"{tc['optim']['lr']:g} ({tc['optim']['scheduler']}, warm-up {tc['optim']['warmup_epochs']}), seed "
        f"{args.seed}, device {args.device}, torch threads {torch.get_num_threads()}; "
        f"training {seconds['baseline2d']:.0f} s and {seconds['whitening']:.0f} s"
    )
    print(
        f"whitening: mode {fw.mode}"
        + (f", T {fw.T}" if fw.mode == "iterative" else "")
        + f", eval statistics {fw.statistics}, group_size {fw.group_size}, momentum {fw.momentum:g}; alignment "
        f"every {wm['every']} steps, {wm['batch']} images per concept; axes 0..{len(concepts) - 1} = "
        f"{', '.join(concepts)}"
    )
    print()
    ratio, r_lo, r_hi = step_ratio(timing, wm["every"], args.bootstrap, args.seed)
    claims = pd.concat(
        [
            report.claims,
            pd.DataFrame(
                [
                    {
                        "claim": "train step time, whitening / baseline2d (CPU)",
                        "value": ratio,
                        "lo": r_lo,
                        "hi": r_hi,
                        "target": TARGET_STEP_RATIO,
                        "verdict": verdict(r_lo, r_hi, TARGET_STEP_RATIO, larger=False),
                        "n": timing["round"].nunique(),
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    print("claims (95 % intervals resample test identities; the step-time interval resamples timing rounds)")
    print(claims.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print("concept AUC and pointing per axis, both models (test split; 'area' is the pointing score of chance)")
    print(report.concept_auc.join(report.pointing).to_string(float_format=lambda v: f"{v:.3f}"))
    print()
    counts = claims["verdict"].value_counts().to_dict()
    print(
        f"verdicts: {counts}; timing: {timing['round'].nunique()} alternating rounds in {t_timing:.0f} s; "
        f"total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
