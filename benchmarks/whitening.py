"""Feature whitening vs the plain backbone: accuracy, decorrelation, concept AUC and step time.

In one run, on the same synthetic faces and seed, trains ``baseline2d`` and ``whitening``
with the same backbone and prints, for each:

* the test frame-level AUC (and video-level AUC) of its best-on-validation checkpoint,
  with a 95 % interval of the difference (paired bootstrap over test videos);
* the mean |off-diagonal correlation| of the analysed layer's features over the test
  crops (all spatial positions, eval mode): the whitening layer's output z = R x̂ for
  ``whitening``, the output of the same BatchNorm for ``baseline2d``;
* the concept AUC of axes 0..K-1 on the test split's concept images: the aligned axes of
  ``whitening``; for ``baseline2d`` the same channels of its layer, a reference;
* the time of one training step, measured in this process on fresh models alternating
  step by step on the same batch (so machine noise hits both alike); the whitening step
  includes its concept alignment (one every ``align_every`` steps), amortised. The mean
  step time inside the two real training loops is printed as a check.

Targets (the method's claim is accuracy kept while interpretability is gained):
decorrelation at least 5x lower than the baseline's, step time ratio whitening /
baseline <= 1.3 on CPU, test AUC within 0.02 of the baseline's.

    python benchmarks/whitening.py [--backbone resnet18 --epochs 8 --videos 96 --crop 64 --layer ...]

The defaults take about 5 minutes on 2 idle CPU cores. Choices behind them:

* The test features come from identities never seen in training, and eval mode whitens
  them with statistics gathered on the training batches. How well those transfer bounds
  the test decorrelation, so the defaults favour identities over frames: 96 real
  videos of 96 identities (synth's default of 8 leaves two in the test split), 3 frames
  each. Even the exact population whitening of the training features (layer3.1.bn2 of
  a resnet18 trained 2 epochs) left a test |r| of 0.15 / 0.12 / 0.11 with 8 / 32 / 48
  identities (0.39 unwhitened).
* A whitened layer needs more feature columns per batch (m = batch x h x w) than
  channels, else the batch covariance is singular and its running whitening matrix
  does not whiten new images. The model's default layer is used when m >= 2 C; else,
  for resnet18, layer2.1.bn2. On 64 px crops resnet18's default layer4.1.bn2 has
  m = 32 x 2 x 2 = 128 < 512 channels, layer2.1.bn2 has 128 channels and
  m = 32 x 8 x 8 = 2048. ``--layer`` picks any BatchNorm (the baseline is then
  analysed at the same module).
* ``--mode exact`` whitens each training batch to rounding error at the cost of one
  C x C eigendecomposition. The iterative mode (IterNorm, ``--T`` Newton steps) left a
  whitening error of 0.07-0.14 (T = 10) and a slightly higher test |r| at
  layer2.1.bn2, and at 512 channels (layer4.1.bn2) its steps were markedly slower on
  CPU than the exact mode's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from common import synth_faces
from torch import nn

from fmkit.config import train_config
from fmkit.data.concepts import concept_datasets
from fmkit.data.datasets import FrameDataset
from fmkit.data.schema import read_faces
from fmkit.data.synth import METHODS
from fmkit.data.transforms import build_transform
from fmkit.engine import ConceptAlignment, TrainContext, train
from fmkit.engine.loop import LossModule
from fmkit.engine.trainer import resolve_device
from fmkit.interpret.concepts import concept_auc, feature_correlation, mean_abs_offdiag
from fmkit.metrics import auc
from fmkit.models import create_model, load

#: Whitened layer per backbone for small crops (see the module docstring); others: the model's default.
SMALL_CROP_LAYER = {"resnet18": "layer2.1.bn2"}

TARGET_DECORRELATION = 5.0  # baseline |r| / whitening |r| at least this
TARGET_STEP_RATIO = 1.3  # whitening step / baseline step at most this (CPU)
TARGET_AUC_GAP = 0.02  # |AUC whitening − AUC baseline| at most this
MODELS = ("baseline2d", "whitening")


class StepTimer:
    """Training callback: wall time between consecutive optimizer steps within an epoch.

    Hooks run on the model first, so a step's time includes its data loading and, for
    ``whitening``, the concept alignment run after it.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self._last = None

    def on_train_batch_end(self, ctx: TrainContext, batch: Any) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


class AtLayer(nn.Module):
    """A frame model seen through ``features_at(x, layer)``, for the fmkit.interpret.concepts functions."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        super().__init__()
        self.model, self.layer = model, layer

    def features_at(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features_at(x, self.layer)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    d = ap.add_argument_group("data")
    d.add_argument("--videos", type=int, default=96, help=f"real videos to synthesize (+{len(METHODS)} fakes each)")
    d.add_argument(
        "--identities",
        type=int,
        default=None,
        help="face photos the real videos cycle through (default: one per video, at most 96)",
    )
    d.add_argument("--frames", type=int, default=3, help="frames per synthetic video")
    d.add_argument("--size", type=int, default=128, help="synthetic frame size (px)")
    d.add_argument("--sample", type=int, default=3, help="frames sampled per video by preprocess")
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
    t.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the AUC difference")
    t.add_argument("--out", type=Path, default=None, help="keep the two run folders here (a new folder)")
    args = ap.parse_args()
    if args.identities is None:
        args.identities = min(args.videos, 96)
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


def time_steps(cfgs: dict[str, dict[str, Any]], faces: Path, rounds: int, run_dir: Path) -> dict[str, list[float]]:
    """Per-step seconds of fresh models, one training step of each in turn (order swapped every round).

    ``align``: the whitening model's alignment hook (concept batches + Cayley step), once
    per round. The first round is a warm-up and is dropped.
    """
    device = resolve_device(cfgs["baseline2d"]["device"])
    data = cfgs["baseline2d"]["data"]
    train_set = FrameDataset(faces, split="train", transform=build_transform(data["size"], train=False))
    items = [train_set[i] for i in range(min(data["batch_size"], len(train_set)))]
    batch = (torch.stack([x for x, _ in items]).to(device), torch.stack([y for _, y in items]).to(device))
    steps, ctx = {}, None
    align = ConceptAlignment(**cfgs["whitening"]["callbacks"]["concept_alignment"])
    for name, cfg in cfgs.items():
        torch.manual_seed(cfg["seed"])
        model = create_model(name, **model_kwargs(cfg)).to(device).train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg["optim"]["lr"])
        steps[name] = (model, LossModule(model), opt)
        if name == "whitening":
            ctx = TrainContext(
                config=cfg, run_dir=run_dir, data=faces, datasets={}, model=model, optimizer=opt, device=device
            )
            align.on_train_start(ctx)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {"baseline2d": [], "whitening": [], "align": []}
    for r in range(rounds + 1):
        for name in MODELS if r % 2 == 0 else MODELS[::-1]:
            _, loss_module, opt = steps[name]
            sync()
            start = time.perf_counter()
            loss = loss_module(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
            times[name].append(time.perf_counter() - start)
        ctx.global_step = align.every * (r + 1)
        start = time.perf_counter()
        align.on_train_batch_end(ctx, batch)
        sync()
        times["align"].append(time.perf_counter() - start)
    return {k: v[1:] for k, v in times.items()}


def auc_difference(runs: dict[str, Path], resamples: int, seed: int) -> tuple[float, float, float]:
    """AUC(whitening) − AUC(baseline) on test frames, and its 95 % paired bootstrap interval over videos."""
    preds = {name: pd.read_csv(run / "test_predictions.csv", dtype={"video_id": str}) for name, run in runs.items()}
    base, wh = preds["baseline2d"], preds["whitening"]
    if not (base["video_id"].equals(wh["video_id"]) and base["label"].equals(wh["label"])):
        raise RuntimeError("the two runs scored different test items")
    labels, p_base, p_wh = base["label"].to_numpy(), base["prob"].to_numpy(), wh["prob"].to_numpy()
    diff = auc(p_wh, labels) - auc(p_base, labels)
    groups = [np.flatnonzero(base["video_id"].to_numpy() == v) for v in base["video_id"].unique()]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        if 0 < labels[idx].sum() < len(idx):
            draws.append(auc(p_wh[idx], labels[idx]) - auc(p_base[idx], labels[idx]))
    lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"), float("nan"))
    return diff, float(lo), float(hi)


def analyse(run: Path, layer: str, faces: Path, size: int, concepts: list[str]) -> dict[str, Any]:
    """Test AUCs, feature decorrelation and concept AUC of the best checkpoint of ``run``."""
    summary = json.loads((run / "metrics.json").read_text())
    model = load(run)
    probe = model if hasattr(model, "whitened_features") else AtLayer(model, layer)
    corr = feature_correlation(probe, FrameDataset(faces, split="test", transform=build_transform(size, train=False)))
    history = pd.read_csv(run / "metrics.csv")
    return {
        "auc": summary["test"]["auc"],
        "video_auc": summary["test"].get("video_auc", float("nan")),
        "best_epoch": summary["best_epoch"],
        "seconds": summary["seconds"],
        "decorrelation": mean_abs_offdiag(corr),
        "channels": len(corr),
        "concept_auc": concept_auc(probe, concept_datasets(faces, concepts, split="test")),
        "whitening_error": history["whitening_error"].iloc[-1] if "whitening_error" in history else None,
    }


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


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
        timers = {name: StepTimer() for name in MODELS}
        runs = {}
        for name in MODELS:
            print(f"training {name} ...", flush=True)
            runs[name] = train(cfgs[name], faces, out / name, callbacks=[timers[name]])
        print("analysing the test split, then timing alternating steps ...", flush=True)
        concepts = list(load(runs["whitening"]).concepts)
        results = {name: analyse(runs[name], layer, faces, args.crop, concepts) for name in MODELS}
        diff, lo, hi = auc_difference(runs, args.bootstrap, args.seed)
        t1 = time.perf_counter()
        timing = time_steps(cfgs, faces, args.timing_rounds, tmp)
        t_timing = time.perf_counter() - t1
        manifest = read_faces(faces)

    base, wh = results["baseline2d"], results["whitening"]
    wm = cfgs["whitening"]["callbacks"]["concept_alignment"]
    tc = cfgs["whitening"]
    fw = create_model("whitening", **dict(model_kwargs(cfgs["whitening"]).items())).whitening
    splits = manifest["split"].value_counts()
    print(
        f"data: {prep.videos_total} videos ({args.videos} real over {args.identities} identities, "
        f"{len(METHODS)} fakes each), {len(manifest)} face crops of {args.crop} px (train {splits.get('train', 0)}"
        f" / val {splits.get('val', 0)} / test {splits.get('test', 0)}); synth + preprocess {t_data:.0f} s"
    )
    m_cols, _ = feature_columns(args.backbone, layer, args.crop, tc["data"]["batch_size"])
    print(
        f"backbone {args.backbone}, analysed layer {layer} ({fw.num_features} channels, {m_cols} feature columns "
        f"per batch{'' if m_cols >= fw.num_features else ': FEWER THAN CHANNELS'}); {tc['epochs']} epochs, "
        f"batch {tc['data']['batch_size']}, {tc['optim']['optimizer']} lr {tc['optim']['lr']:g} "
        f"({tc['optim']['scheduler']}, warm-up {tc['optim']['warmup_epochs']}), seed {args.seed}, "
        f"device {args.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"whitening settings: mode {fw.mode}"
        + (f", T {fw.T}" if fw.mode == "iterative" else "")
        + f", group_size {fw.group_size} ({fw.num_groups} group{'s' if fw.num_groups > 1 else ''}), "
        f"momentum {fw.momentum:g}, eps {fw.eps:g}, alignment every {wm['every']} steps, "
        f"{wm['batch']} images per concept; axes 0..{len(concepts) - 1} = {', '.join(concepts)}"
    )
    print()

    factor = base["decorrelation"] / wh["decorrelation"] if wh["decorrelation"] > 0 else float("inf")
    step_b, step_w = statistics.median(timing["baseline2d"]), statistics.median(timing["whitening"])
    align = statistics.median(timing["align"])
    step_w_total = step_w + align / wm["every"]
    ratio = step_w_total / step_b
    loop_b, loop_w = (statistics.mean(timers[n].times) if timers[n].times else float("nan") for n in MODELS)
    cauc_b, cauc_w = (float(r["concept_auc"]["auc"].mean()) for r in (base, wh))
    rows = [
        (
            "test frame AUC",
            f"{base['auc']:.3f}",
            f"{wh['auc']:.3f}",
            f"|diff| <= {TARGET_AUC_GAP:g}: {diff:+.3f} (95% CI {lo:+.3f} .. {hi:+.3f})  "
            f"{verdict(abs(diff) <= TARGET_AUC_GAP)}",
        ),
        ("test video AUC", f"{base['video_auc']:.3f}", f"{wh['video_auc']:.3f}", ""),
        (
            "mean |off-diag corr|, test",
            f"{base['decorrelation']:.4f}",
            f"{wh['decorrelation']:.4f}",
            f">= {TARGET_DECORRELATION:g}x lower: {factor:.1f}x  {verdict(factor >= TARGET_DECORRELATION)}",
        ),
        (
            f"mean concept AUC, axes 0..{len(concepts) - 1}",
            f"{cauc_b:.3f}",
            f"{cauc_w:.3f}",
            "(baseline: same channels, reference)",
        ),
        (
            "train step (s), alternating",
            f"{step_b:.3f}",
            f"{step_w_total:.3f}",
            f"ratio <= {TARGET_STEP_RATIO:g} on CPU: {ratio:.2f}  {verdict(ratio <= TARGET_STEP_RATIO)}",
        ),
        (
            "  of which concept alignment",
            "-",
            f"{align / wm['every']:.3f}",
            f"({align:.2f} s every {wm['every']} steps; step alone: ratio {step_w / step_b:.2f})",
        ),
        (
            "train step (s), training loops",
            f"{loop_b:.3f}",
            f"{loop_w:.3f}",
            f"(check; the runs are sequential: ratio {loop_w / loop_b:.2f})",
        ),
        ("training seconds (all epochs)", f"{base['seconds']:.0f}", f"{wh['seconds']:.0f}", "(incl. validation)"),
        ("best epoch (on validation AUC)", f"{base['best_epoch']}", f"{wh['best_epoch']}", ""),
    ]
    if wh["whitening_error"] is not None:
        rows.append(
            (
                "whitening error, last batch",
                "-",
                f"{wh['whitening_error']:.2g}",
                "(||W S W^T - I||_F / sqrt(C) of the last training batch)",
            )
        )
    w0 = max(len(r[0]) for r in rows) + 2
    print(f"{'':{w0}}{'baseline2d':>11}{'whitening':>11}   target")
    for label, b, w, target in rows:
        print(f"{label:{w0}}{b:>11}{w:>11}   {target}".rstrip())
    print()
    print("concept AUC per axis (test split)")
    table = wh["concept_auc"][["axis", "concept", "n_images"]].assign(
        baseline2d=base["concept_auc"]["auc"].round(3).to_numpy(), whitening=wh["concept_auc"]["auc"].round(3)
    )
    print(table.to_string(index=False))
    print()
    met = [abs(diff) <= TARGET_AUC_GAP, factor >= TARGET_DECORRELATION, ratio <= TARGET_STEP_RATIO]
    named = ", ".join(f"{n} {verdict(ok)}" for n, ok in zip(("AUC gap", "decorrelation", "step time"), met))
    print(
        f"targets met: {sum(met)}/3 ({named}); timing: {len(timing['align'])} alternating rounds in "
        f"{t_timing:.0f} s; total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
