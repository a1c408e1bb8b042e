"""Every claim the kit tests, in one table: k-fold cross-validation over persons, pooled intervals, verdicts.

On the demo's synthetic data (defaults = configs/demo.yaml: 99 real videos of 99 persons, one
fake per synth method each, 8 frames of 128 px, 64 px face crops) and at the recipes' settings
(``fmkit/configs/train/*.yaml``), this measures the claims of the three papers the kit tests
(feature whitening, TD-3DCNN, re-label distillation) and of the Self-Blended Images recipe:

* **Folds.** The persons (the index's ``source_id``) are split into ``--folds`` k = 5 folds
  (:func:`fmkit.engine.folds.person_folds`): every person is tested exactly once; each fold's
  validation persons (``--val-fraction`` of the others) are carved from its training persons.
  Each fold is a faces folder of its own whose manifest carries the fold's splits and links the
  same crops (:func:`fmkit.engine.folds.write_fold_faces`); the original faces folder is only read.
* **Fits.** A fit is one fold trained with one seed: ``baseline2d``, ``whitening``, ``td3dcnn``,
  ``td3dcnn_nodrop``, ``baseline2d`` with ``data.sbi`` (``sbi``) and the ``vae``, each from its
  recipe (checkpoints chosen on the fold's validation persons by the engine), then measured on
  the fold's test persons. Fold f trains with seed ``--seed`` + f; fold 0 is also trained with
  ``--seeds`` − 1 more seeds (``--seed`` + k, k + 1, …), so that seed-to-seed spread stands beside
  fold-to-fold spread (``per_fit.csv``, ``claims.png``). The claims themselves pool the k fold fits.
* **Intervals.** :func:`fmkit.metrics.pooled_bootstrap`: each claim's statistic is computed per
  fold on that fold's test persons and averaged over folds (weights: persons per fold); a
  resample draws persons with replacement from all folds, each person's rows coming from the fit
  that tested it; differences of two methods are paired (same faces, same resampled persons).
  95 % percentile intervals; a verdict is MET only when the whole interval clears the target,
  MISSED when it misses it, UNDECIDED otherwise (:func:`fmkit.metrics.verdict`).
* **Cost claims** (step time, inference speed) are timed in alternating rounds on fresh models
  (``benchmarks/common.py``), not over folds: their interval resamples timing rounds.

Outputs in ``-o`` (default ``outputs/claims/``): ``claims.csv`` (one row per claim, the columns
of ``common.CLAIM_COLUMNS``), ``claims.png`` (a forest plot: one panel per claim, its interval
against its target, every fit's own value as a dot), ``per_fit.csv`` (fold, seed, model, metric,
value of every fit, with ``claim`` naming the claim a figure belongs to), ``run.json`` (wall time,
seconds per fit, machine, command). ``--commit`` copies ``claims.csv``, ``claims.png`` and
``run.json`` to ``benchmarks/results/`` (``claims.json``). The run resumes: finished trainings
and measurements in ``-o`` are reused (use a new ``-o`` for other settings).

    python benchmarks/claims.py [-o outputs/claims --folds 5 --seeds 3 --commit]
    python benchmarks/claims.py --quick -o /tmp/claims     # 2 folds, 1 seed, 1 epoch, tiny data

Cuts for the 2-CPU budget (each said in its claim's ``metric``): the video models train for
``--video-epochs`` 4 epochs on ``--clips-per-video`` 2 clips per video, as the demo does
(recipes: 6 and 4); the VAE for ``--vae-epochs`` 4 (recipe: 8); re-label distillation explains
``--images`` 20 test faces per fold. ``r3d18`` is not trained: it enters one claim only, its
inference cost, which is timed on fresh models. Faceswap fakes borrow a donor from their own
person's synth split, which a fold may put elsewhere: a test fake may show a training person's
inner face (its label and person stay the target's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import shlex
import shutil
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from common import CLAIM_COLUMNS, add_demo_data_arguments, alternating_rounds, claim_row, demo_faces, ratio_interval

from fmkit.config import train_config
from fmkit.data.concepts import concept_datasets
from fmkit.data.datasets import FrameDataset
from fmkit.data.transforms import build_transform
from fmkit.engine import compare, train
from fmkit.engine.folds import (
    folder_persons,
    person_folds,
    pooled_video_auc,
    pooled_video_auc_difference,
    write_fold_faces,
)
from fmkit.engine.report import json_safe
from fmkit.interpret import explain_eval as ee
from fmkit.interpret.claims import TARGETS as WHITENING_TARGETS
from fmkit.interpret.pooled import (
    ConceptScores,
    DecorrelationRatio,
    concept_scores,
    frame_persons,
    layer_moments,
    versus_random_differences,
)
from fmkit.io import atomic_path, write_csv, write_json
from fmkit.metrics import pooled_bootstrap, pooled_mean
from fmkit.models import load

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DETECTORS = ("baseline2d", "whitening", "td3dcnn", "td3dcnn_nodrop", "sbi")
VIDEO_MODELS = ("td3dcnn", "td3dcnn_nodrop")
TEMPORAL_FAKES = "wobble"  # fmkit.data.synth's temporal-only fake
STEP_RATIO_TARGET = 1.3  # whitening step / baseline2d step (benchmarks/whitening.py)
SPEED_RATIO_TARGET = 1.0  # td3dcnn inference clips/s over r3d18's (benchmarks/td3dcnn.py)
SBI_MARGIN = -0.02  # SBI "at least as well": the non-inferiority margin of "whitening keeps accuracy"

PAPERS = {
    "whitening": "feature whitening",
    "td3dcnn": "TD-3DCNN (Zhang et al., IJCAI 2021)",
    "relabel": "re-label distillation",
    "sbi": "Self-Blended Images (Shiohara & Yamasaki, CVPR 2022)",
}
QUICK = {
    "data": {"videos": 8, "frames": 8, "size": 96, "crop": 32, "workers": 1},
    "run": {
        "folds": 2,
        "seeds": 1,
        "epochs": 1,
        "video_epochs": 1,
        "clips_per_video": 1,
        "vae_epochs": 1,
        "images": 2,
        "n_samples": 24,
        "timing_rounds": 2,
        "timing_batch": 2,
        "bootstrap": 100,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "outputs" / "claims", help="output folder (resumed)")
    ap.add_argument("--quick", action="store_true", help="2 folds, 1 seed, 1 epoch, tiny data (a smoke test)")
    ap.add_argument("--commit", action="store_true", help="copy the results to benchmarks/results/")
    add_demo_data_arguments(ap)
    p = ap.add_argument_group("protocol")
    p.add_argument("--folds", type=int, default=5, help="k: folds over persons")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation persons among each fold's others")
    p.add_argument("--seeds", type=int, default=3, help="fits of fold 0 with distinct seeds (the fold's own included)")
    p.add_argument("--seed", type=int, default=0, help="base seed: data, folds; fold f trains with seed + f")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    t = ap.add_argument_group("training (default: the recipes in fmkit/configs/train/)")
    t.add_argument("--epochs", type=int, default=None, help="epochs of the frame models (default: recipe)")
    t.add_argument("--video-epochs", type=int, default=4, help="epochs of td3dcnn, td3dcnn_nodrop (recipe 6)")
    t.add_argument("--clips-per-video", type=int, default=2, help="training clips per video and epoch (recipe 4)")
    t.add_argument("--vae-epochs", type=int, default=4, help="epochs of the VAE (recipe 8)")
    t.add_argument("--device", default="cpu", help="cpu, cuda or auto (the cost targets are for CPU)")
    e = ap.add_argument_group("explanations and timing")
    e.add_argument("--images", type=int, default=20, help="test faces explained per fit (half real, half fake)")
    e.add_argument("--n-samples", type=int, default=500, help="re-label distillation's neighbours")
    e.add_argument("--sigma", type=float, default=1.0, help="latent perturbation scale, in posterior stds")
    e.add_argument("--timing-rounds", type=int, default=10, help="alternating timing rounds (+1 warm-up)")
    e.add_argument("--timing-batch", type=int, default=8, help="clips per timed inference batch")
    argv = sys.argv[1:] if argv is None else argv
    if "--quick" in argv:  # quick defaults; options given on the command line still win
        ap.set_defaults(**QUICK["data"], **QUICK["run"])
    args = ap.parse_args(argv)
    args.argv = argv
    return args


# --- one fit: a fold trained with one seed -------------------------------------------------


def fit_configs(args: argparse.Namespace, seed: int) -> dict[str, dict[str, Any]]:
    """Each model of a fit: its recipe with this run's crop size, seed, device and cuts."""
    shared = [f"seed={seed}", f"device={args.device}"]
    frame = [*shared, f"data.size={args.crop}"] + ([f"epochs={args.epochs}"] if args.epochs else [])
    video = [
        *shared,
        f"data.size={args.crop}",
        f"epochs={args.video_epochs}",
        f"data.clips_per_video={args.clips_per_video}",
        "data.short_videos=skip",
    ]
    return {
        "baseline2d": train_config("baseline2d", settings=frame),
        "whitening": train_config("whitening", settings=frame),
        "td3dcnn": train_config("td3dcnn", settings=video),
        "td3dcnn_nodrop": train_config("td3dcnn_nodrop", settings=video),
        "sbi": train_config("baseline2d", settings=[*frame, "data.sbi=true"]),
        "vae": train_config("vae", settings=[*shared, f"epochs={args.vae_epochs}"]),
    }


@dataclass
class Fit:
    """What one fit measured on its fold's test persons (pickled in its folder, so a rerun reuses it)."""

    fold: int
    seed: int
    scores: pd.DataFrame  # compare.video_scores of the detectors, with fold and seed
    decorrelation: DecorrelationRatio
    concepts: ConceptScores
    explain: pd.DataFrame  # versus_random_differences, with fold and seed
    runs: dict[str, dict[str, Any]]  # per model: best epoch, seconds, val and test video AUC
    seconds: float


def run_summary(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "metrics.json").read_text())
    return {
        "best_epoch": summary.get("best_epoch"),
        "train seconds": summary.get("seconds"),
        "val video AUC": summary.get("val", {}).get("video_auc"),
        "test video AUC": summary.get("test", {}).get("video_auc"),
    }


def run_fit(args: argparse.Namespace, fold: int, seed: int, faces: Path, folder: Path) -> Fit:
    """Train every model of the fit (resuming finished runs) and measure it on the fold's test persons."""
    cached = folder / "fit.pkl"
    if cached.is_file():
        with cached.open("rb") as f:
            return pickle.load(f)
    started = time.perf_counter()
    runs = {}
    for name, cfg in fit_configs(args, seed).items():
        t0 = time.perf_counter()
        runs[name] = train(cfg, faces, folder / name, resume=True)
        print(f"    {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    scores = compare.video_scores({name: runs[name] for name in DETECTORS}, faces).assign(fold=fold, seed=seed)
    plain, whitening = load(runs["baseline2d"]), load(runs["whitening"])
    test = FrameDataset(faces, split="test", transform=build_transform(args.crop, train=False))
    persons = frame_persons(test)
    decorrelation = DecorrelationRatio(layer_moments(plain, test, persons), layer_moments(whitening, test, persons))
    sets = concept_datasets(faces, list(whitening.concepts), split="test", size=args.crop)
    concepts = concept_scores(whitening, sets)
    t1 = time.perf_counter()
    chosen = ee.explanation_faces(faces, args.images, seed=seed, size=args.crop)
    _, explained = ee.compare_methods(
        plain, load(runs["vae"]), chosen, ["relabel", "random"], n_samples=args.n_samples, sigma=args.sigma, seed=seed
    )
    explain = versus_random_differences(explained).assign(fold=fold, seed=seed)
    print(
        f"    measured on the test persons: {time.perf_counter() - t0:.0f} s (scores, layer statistics, concepts "
        f"{t1 - t0:.0f} s; {len(chosen)} faces explained {time.perf_counter() - t1:.0f} s)",
        flush=True,
    )
    fit = Fit(
        fold,
        seed,
        scores,
        decorrelation,
        concepts,
        explain,
        {name: run_summary(run) for name, run in runs.items()},
        time.perf_counter() - started,
    )
    with atomic_path(cached) as tmp, tmp.open("wb") as f:
        pickle.dump(fit, f)
    return fit


# --- the claims ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A claim measured over fits: ``measure(fits, resamples, seed) → (value, lo, hi, persons)``."""

    key: str
    paper: str
    model: str  # what per_fit.csv names the figure's model
    metric: str
    target: float
    larger: bool
    measure: Callable[[list[Fit], int, int], tuple[float, float, float, int]]


def _scores(fits: list[Fit]) -> pd.DataFrame:
    return pd.concat([f.scores for f in fits], ignore_index=True)


def video_auc(model: str, fakes: str = "all") -> Callable:
    return lambda fits, resamples, seed: pooled_video_auc(_scores(fits), model, fakes, resamples, seed)


def video_auc_difference(a: str, b: str, fakes: str = "all") -> Callable:
    return lambda fits, resamples, seed: pooled_video_auc_difference(_scores(fits), a, b, fakes, resamples, seed)


def decorrelation(fits: list[Fit], resamples: int, seed: int) -> tuple[float, float, float, int]:
    stats = [f.decorrelation for f in fits]
    groups = [f.decorrelation.plain.persons for f in fits]
    return (*pooled_bootstrap(stats, groups, resamples=resamples, seed=seed), sum(len(g) for g in groups))


def concept_auc(fits: list[Fit], resamples: int, seed: int) -> tuple[float, float, float, int]:
    stats = [f.concepts for f in fits]
    groups = [f.concepts.persons for f in fits]
    return (*pooled_bootstrap(stats, groups, resamples=resamples, seed=seed), len({p for g in groups for p in g}))


def explanation(figure: str) -> Callable:
    def measure(fits: list[Fit], resamples: int, seed: int) -> tuple[float, float, float, int]:
        d = pd.concat([f.explain for f in fits], ignore_index=True)
        d = d[(d["figure"] == figure) & d["value"].notna()]
        if d.empty:
            return math.nan, math.nan, math.nan, 0
        value = pooled_mean(d["value"], d["identity"].astype(str), d["fold"], resamples=resamples, seed=seed)
        return (*value, int(d["identity"].nunique()))

    return measure


def claims_list(args: argparse.Namespace, has_temporal: bool) -> list[Claim]:
    k = args.folds
    pooled = f"{k}-fold over persons, each tested once; per-fold value averaged over folds, pooled bootstrap"
    video_cut = f"td3dcnn models: {args.video_epochs} epochs, {args.clips_per_video} clips/video (recipe 6, 4)"
    w_targets = {key: WHITENING_TARGETS[key] for key in WHITENING_TARGETS}
    out = [
        Claim(
            "baseline2d detects",
            PAPERS["whitening"],
            "baseline2d",
            f"test video AUC, all fakes; {pooled}",
            *w_targets["baseline2d test video AUC"],
            video_auc("baseline2d"),
        ),
        Claim(
            "whitening detects",
            PAPERS["whitening"],
            "whitening",
            f"test video AUC, all fakes; {pooled}",
            *w_targets["whitening test video AUC"],
            video_auc("whitening"),
        ),
        Claim(
            "whitening keeps accuracy",
            PAPERS["whitening"],
            "whitening − baseline2d",
            f"video AUC whitening − baseline2d, paired; {pooled}",
            *w_targets["whitening − baseline2d video AUC"],
            video_auc_difference("whitening", "baseline2d"),
        ),
        Claim(
            "whitening decorrelates",
            PAPERS["whitening"],
            "baseline2d / whitening",
            f"mean |r| plain layer / whitened layer over every test pixel; {pooled}",
            *w_targets["decorrelation, plain / whitened"],
            decorrelation,
        ),
        Claim(
            "whitened axes align with concepts",
            PAPERS["whitening"],
            "whitening",
            f"mean concept AUC of the aligned axes, test faces; {pooled}",
            *w_targets["mean concept AUC (test)"],
            concept_auc,
        ),
        Claim(
            "td3dcnn detects",
            PAPERS["td3dcnn"],
            "td3dcnn",
            f"test video AUC, all fakes; {video_cut}; {pooled}",
            *compare_target("detects (video AUC)"),
            video_auc("td3dcnn"),
        ),
        Claim(
            "temporal dropout helps",
            PAPERS["td3dcnn"],
            "td3dcnn − td3dcnn_nodrop",
            f"video AUC td3dcnn − td3dcnn_nodrop, paired (target: > 0); {video_cut}; {pooled}",
            *compare_target("temporal dropout helps (AUC − no dropout)"),
            video_auc_difference("td3dcnn", "td3dcnn_nodrop"),
        ),
        Claim(
            "3D beats frames on temporal-only fakes",
            PAPERS["td3dcnn"],
            "td3dcnn − baseline2d",
            f"video AUC td3dcnn − baseline2d, real vs {TEMPORAL_FAKES} fakes, paired; {video_cut}; {pooled}"
            + ("" if has_temporal else f"; NO {TEMPORAL_FAKES} FAKES IN THE DATA: not measured"),
            0.05,
            True,
            video_auc_difference("td3dcnn", "baseline2d", TEMPORAL_FAKES),
        ),
    ]
    relabel = (
        f"re-label distillation vs the random map, paired per face, mean over {args.images} test faces per fold "
        f"(VAE trained per fold, {args.vae_epochs} epochs; recipe 8; {args.n_samples} neighbours, sigma {args.sigma:g})"
    )
    out += [
        Claim(
            "re-label distillation beats random: deletion",
            PAPERS["relabel"],
            "relabel vs random (baseline2d, vae)",
            f"deletion AUC random − relabel (lower is better; target: > 0); {relabel}; {pooled}",
            0.0,
            True,
            explanation("deletion"),
        ),
        Claim(
            "re-label distillation beats random: insertion",
            PAPERS["relabel"],
            "relabel vs random (baseline2d, vae)",
            f"insertion AUC relabel − random (target: > 0); {relabel}; {pooled}",
            0.0,
            True,
            explanation("insertion"),
        ),
        Claim(
            "re-label distillation beats random: mask agreement",
            PAPERS["relabel"],
            "relabel vs random (baseline2d, vae)",
            f"mask agreement relabel − random, fakes with a blend mask (target: > 0); {relabel}; {pooled}",
            0.0,
            True,
            explanation("mask_agreement"),
        ),
        Claim(
            "SBI generalises at least as well as the dataset's fakes",
            PAPERS["sbi"],
            "sbi − baseline2d",
            f"video AUC baseline2d trained on self-blends − on the dataset's fakes, paired, all test fakes "
            f"(non-inferiority margin {SBI_MARGIN:+.2f}); {pooled}",
            SBI_MARGIN,
            True,
            video_auc_difference("sbi", "baseline2d"),
        ),
    ]
    return out


def compare_target(claim: str) -> tuple[float, bool]:
    """A TD-3DCNN claim's target in :data:`fmkit.engine.compare.TD3DCNN_CLAIMS` (larger is better)."""
    for name, *_, target in compare.TD3DCNN_CLAIMS:
        if name == claim:
            return float(target), True
    raise KeyError(claim)


# --- cost claims: timing rounds on fresh models ----------------------------------------------


def time_costs(args: argparse.Namespace, faces: Path, run_dir: Path) -> dict[str, Any]:
    """Whitening training step over baseline2d's (benchmarks/whitening.py) and td3dcnn inference speed
    over r3d18's (as benchmarks/td3dcnn.py times it), in alternating rounds."""
    from td3dcnn import build, infer_step
    from whitening import step_ratio, time_steps

    from fmkit.engine.trainer import resolve_device

    device = resolve_device(args.device)
    cfgs = {name: fit_configs(args, args.seed)[name] for name in ("baseline2d", "whitening")}
    steps = time_steps(cfgs, faces, args.timing_rounds, run_dir)
    every = cfgs["whitening"]["callbacks"]["concept_alignment"]["every"]
    step = step_ratio(steps, every, args.bootstrap, args.seed)
    video = {name: train_config(name, settings=[f"data.size={args.crop}"]) for name in ("td3dcnn", "r3d18")}
    clip_len = video["td3dcnn"]["data"]["clip_len"]
    x = torch.rand(args.timing_batch, 3, clip_len, args.crop, args.crop, device=device)
    fns = {}
    for name, cfg in video.items():
        torch.manual_seed(args.seed)
        fns[f"{name} infer"] = partial(infer_step, build(cfg).to(device), x)
    infer = alternating_rounds(fns, args.timing_rounds)
    speed = ratio_interval(infer, "r3d18 infer", "td3dcnn infer", args.bootstrap, args.seed)
    wide_steps = steps.pivot(index="round", columns="name", values="seconds")
    wide_infer = infer.pivot(index="round", columns="name", values="seconds")
    return {
        "step": step,
        "speed": speed,
        "step_rounds": ((wide_steps["whitening"] + wide_steps["align"] / every) / wide_steps["baseline2d"]).tolist(),
        "speed_rounds": (wide_infer["r3d18 infer"] / wide_infer["td3dcnn infer"]).tolist(),
        "seconds": {"steps": steps.to_dict("list"), "inference": infer.to_dict("list")},
    }


# --- figure ----------------------------------------------------------------------------------

VERDICT_COLOURS = {"MET": "#2e7d32", "MISSED": "#c62828", "UNDECIDED": "#ef6c00"}


def forest_plot(claims: pd.DataFrame, per_fit: pd.DataFrame, rounds: dict[str, list[float]]):
    """One small panel per claim: the pooled value and its interval against the target (dashed), the side
    that meets the target shaded, and every fit's own value as a dot (fold fits ●, extra seeds of fold 0 ▲,
    timing rounds ×)."""
    from matplotlib.figure import Figure

    n = len(claims)
    cols = 3
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5.2 * cols, 1.75 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (_, c) in zip(axes, claims.iterrows()):
        own = per_fit[per_fit["claim"] == c["claim"]]
        first = own[own["role"] == "fold"]["value"].to_numpy(float)
        extra = own[own["role"] == "seed"]["value"].to_numpy(float)
        timed = np.asarray(rounds.get(c["claim"], []), float)
        xs = np.r_[[c["value"], c["lo"], c["hi"], c["target"]], first, extra, timed]
        xs = xs[np.isfinite(xs)]
        lo_x, hi_x = (xs.min(), xs.max()) if xs.size else (c["target"] - 1, c["target"] + 1)
        pad = max(hi_x - lo_x, 1e-3 * max(1.0, abs(c["target"]))) * 0.12
        lo_x, hi_x = lo_x - pad, hi_x + pad
        colour = VERDICT_COLOURS.get(c["verdict"], "grey")
        meets = (c["target"], hi_x) if c["direction"] == ">=" else (lo_x, c["target"])
        ax.axvspan(*meets, color="#2e7d32", alpha=0.07, lw=0)
        ax.axvline(c["target"], color="black", ls="--", lw=1)
        if np.isfinite(c["lo"]) and np.isfinite(c["hi"]):
            ax.plot([c["lo"], c["hi"]], [1, 1], color=colour, lw=3, solid_capstyle="butt")
        if np.isfinite(c["value"]):
            ax.plot([c["value"]], [1], "o", color=colour, ms=8)
        ax.plot(first, np.full(first.size, 0.45), "o", mfc="none", mec="#455a64", ms=5, label="fold fits")
        ax.plot(extra, np.full(extra.size, 0.15), "^", mfc="none", mec="#7b1fa2", ms=5, label="fold 0, other seeds")
        ax.plot(timed, np.full(timed.size, 0.3), "x", color="#455a64", ms=5, label="timing rounds")
        ax.set(xlim=(lo_x, hi_x), ylim=(-0.15, 1.45), yticks=[])
        ax.tick_params(axis="x", labelsize=8)
        value = "n/a" if not np.isfinite(c["value"]) else f"{c['value']:.3f}"
        interval = "" if not np.isfinite(c["lo"]) else f" [{c['lo']:.3f}, {c['hi']:.3f}]"
        title = textwrap.shorten(c["claim"], 64, placeholder="…")
        ax.set_title(
            f"{title}\n{value}{interval}  target {c['direction']} {c['target']:g}:  {c['verdict']}",
            fontsize=8.5,
            color=colour,
            loc="left",
        )
    for ax in axes[n:]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes[:n]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and len(h.get_xdata()):
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower right", fontsize=8, ncol=3, frameon=False)
    fig.suptitle(
        "claims: pooled value and 95 % interval (line) against the target (dashed; shaded: meets it)",
        fontsize=10,
        x=0.01,
        ha="left",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    return fig


# --- main ------------------------------------------------------------------------------------


def per_fit_rows(fit: Fit, role: str, claims: list[Claim]) -> list[dict[str, Any]]:
    """Every figure of one fit: its own value of each claim (its fold alone, no interval) and its runs'
    summaries. ``role``: ``fold`` (a fold's own fit) or ``seed`` (another seed of fold 0)."""
    base = {"fold": fit.fold, "seed": fit.seed}
    rows = [
        {**base, "model": c.model, "metric": c.key, "value": c.measure([fit], 0, 0)[0], "claim": c.key, "role": role}
        for c in claims
    ]
    for name, summary in fit.runs.items():
        rows += [
            {**base, "model": name, "metric": metric, "value": value, "claim": "", "role": role}
            for metric, value in summary.items()
        ]
    rows.append({**base, "model": "all", "metric": "fit seconds", "value": fit.seconds, "claim": "", "role": role})
    return rows


def spread(per_fit: pd.DataFrame) -> pd.DataFrame:
    """Per claim: the standard deviation of the fits' own values over folds (one seed each) and over the
    seeds of fold 0 (its own fit included)."""
    claims = per_fit[per_fit["claim"] != ""]
    rows = []
    for claim, own in claims.groupby("claim", sort=False):
        folds = own[own["role"] == "fold"]["value"].astype(float)
        seeds = own[own["fold"] == 0]["value"].astype(float)
        rows.append(
            {
                "claim": claim,
                "fold-to-fold sd": folds.std(ddof=1) if folds.notna().sum() > 1 else math.nan,
                "folds": int(folds.notna().sum()),
                "seed-to-seed sd (fold 0)": seeds.std(ddof=1) if seeds.notna().sum() > 1 else math.nan,
                "seeds": int(seeds.notna().sum()),
            }
        )
    return pd.DataFrame(rows)


def shown_path(path: Path) -> str:
    """A path as run.json records it: relative to the repository when inside it (no machine's home in results)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    started = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "benchmarks/claims.py", *args.argv])
    t0 = time.perf_counter()
    faces, prep = demo_faces(args, args.cache or out / "data")
    t_data = time.perf_counter() - t0
    persons = folder_persons(faces)
    folds = person_folds(persons, args.folds, args.seed, args.val_fraction)
    plan = [(f, args.seed + f, "fold") for f in range(args.folds)]
    plan += [(0, args.seed + args.folds + j, "seed") for j in range(args.seeds - 1)]
    print(
        f"data: {len(persons)} persons, {prep.videos_total} videos; "
        f"{args.folds} folds (test persons per fold: {', '.join(str(list(a.values()).count('test')) for a in folds)}); "
        f"{len(plan)} fits; synth + preprocess {t_data:.0f} s",
        flush=True,
    )
    fits: list[tuple[Fit, str]] = []
    fit_seconds = []
    for i, (fold, seed, role) in enumerate(plan):
        fold_faces = write_fold_faces(faces, folds[fold], out / "folds" / f"fold{fold}")
        t1 = time.perf_counter()
        print(f"fit {i + 1}/{len(plan)}: fold {fold}, seed {seed} ...", flush=True)
        fit = run_fit(args, fold, seed, fold_faces, out / "fits" / f"fold{fold}_seed{seed}")
        took = time.perf_counter() - t1
        fit_seconds.append({"fold": fold, "seed": seed, "role": role, "seconds": took, "fit seconds": fit.seconds})
        done = np.mean([r["seconds"] for r in fit_seconds])
        print(
            f"fit {i + 1}/{len(plan)} done in {took:.0f} s (trained and measured: {fit.seconds:.0f} s); elapsed "
            f"{time.perf_counter() - started:.0f} s; about {done * (len(plan) - i - 1):.0f} s of fits left",
            flush=True,
        )
        fits.append((fit, role))

    print("timing the cost claims in alternating rounds ...", flush=True)
    t2 = time.perf_counter()
    costs = time_costs(args, out / "folds" / "fold0", out / "timing")
    t_timing = time.perf_counter() - t2

    fold_fits = [fit for fit, role in fits if role == "fold"]
    has_temporal = bool((_scores(fold_fits)["method"] == TEMPORAL_FAKES).any())
    claims = claims_list(args, has_temporal)
    seeds = ",".join(str(f.seed) for f in fold_fits)
    rows = []
    for c in claims:
        value, lo, hi, n = c.measure(fold_fits, args.bootstrap, args.seed)
        rows.append(
            claim_row(c.key, c.paper, c.metric, value, lo, hi, c.target, c.larger, n, len(fold_fits), seeds, command)
        )
    rounds = f"95 % interval over {args.timing_rounds} alternating timing rounds on fresh models"
    rows.insert(
        5,
        claim_row(
            "whitening step time",
            PAPERS["whitening"],
            f"training step time whitening (alignment amortised) / baseline2d, {args.device}; {rounds}",
            *costs["step"],
            STEP_RATIO_TARGET,
            False,
            0,
            0,
            str(args.seed),
            command,
        ),
    )
    rows.append(
        claim_row(
            "td3dcnn at least as fast as r3d18",
            PAPERS["td3dcnn"],
            f"inference clips/s td3dcnn / r3d18, batches of {args.timing_batch} clips, {args.device}; {rounds} "
            "(r3d18 not trained: only its cost is claimed)",
            *costs["speed"],
            SPEED_RATIO_TARGET,
            True,
            0,
            0,
            str(args.seed),
            command,
        ),
    )
    table = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    order = ["whitening", "td3dcnn", "relabel", "sbi"]
    table = table.sort_values(
        "paper", key=lambda s: s.map({PAPERS[k]: i for i, k in enumerate(order)}), kind="stable", ignore_index=True
    )

    per_fit = pd.DataFrame([r for fit, role in fits for r in per_fit_rows(fit, role, claims)])
    write_csv(table, out / "claims.csv")
    write_csv(per_fit[["fold", "seed", "model", "metric", "value", "claim", "role"]], out / "per_fit.csv")
    rounds_by_claim = {
        "whitening step time": costs["step_rounds"],
        "td3dcnn at least as fast as r3d18": costs["speed_rounds"],
    }
    fig = forest_plot(table, per_fit, rounds_by_claim)
    with atomic_path(out / "claims.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    spreads = spread(per_fit)
    wall = time.perf_counter() - started
    run = {
        "command": command,
        "wall_seconds": wall,
        "data_seconds": t_data,
        "timing_seconds": t_timing,
        "fits": fit_seconds,
        "seconds_per_fold_fit": float(np.mean([r["seconds"] for r in fit_seconds if r["role"] == "fold"])),
        "persons": len(persons),
        "folds": [{s: sum(v == s for v in a.values()) for s in ("train", "val", "test")} for a in folds],
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "settings": {k: shown_path(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "argv"},
        "spread": spreads.to_dict("records"),
        "timing": costs["seconds"],
    }
    write_json(json_safe(run), out / "run.json")
    if args.commit:
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "claims.csv", RESULTS / "claims.csv")
        shutil.copyfile(out / "claims.png", RESULTS / "claims.png")
        shutil.copyfile(out / "run.json", RESULTS / "claims.json")

    shown = table[["paper", "claim", "value", "lo", "hi", "direction", "target", "verdict", "n_persons", "n_fits"]]
    print()
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print("spread of the fits' own values (per_fit.csv)")
    print(spreads.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(
        f"verdicts: {table['verdict'].value_counts().to_dict()}; {len(plan)} fits, "
        f"{run['seconds_per_fold_fit']:.0f} s per fold fit; data {t_data:.0f} s, timing {t_timing:.0f} s; "
        f"total {wall:.0f} s; written to {out}" + (f" and {RESULTS}" if args.commit else "")
    )
    return table


if __name__ == "__main__":
    main()
