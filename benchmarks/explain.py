"""Re-label distillation vs Grad-CAM, IG, Occlusion, LIME and a random map on held-out faces: faithfulness and cost.

On the synthetic test faces of the demo's data, trains (or reuses, ``--detector-run`` /
``--vae-run``) the frame detector ``baseline2d`` and the VAE ``vae`` from their recipes
(``configs/train/``; the crop size, epochs and seed given here override them), explains
``--images`` test crops (half real, half fake with a ground-truth blend mask, one per video,
spread over identities: :func:`fmkit.interpret.explain_eval.explanation_faces`) with every method,
and prints (:mod:`fmkit.interpret.explain_eval`):

* per method, the mean over faces of: seconds per explanation (this process, one after the
  other); deletion AUC (pixels replaced by black, most salient first; lower is better); insertion
  AUC (pixels put back into a Gaussian blur of the image, σ = side / 45; higher is better); mask
  agreement (share of the top 10 % |map| pixels inside the blend mask; fakes only; chance = the
  mask's area, printed) and the pointing game (the map's maximum inside the mask); for re-label
  distillation the student's fidelity (accuracy and AUC of predicting held-out neighbours'
  re-labels) — each with a 95 % bootstrap interval resampling test identities;
* the claims that re-label distillation beats the random map (paired per-face differences,
  positive = better: deletion random − relabel, insertion and mask agreement relabel − random),
  MET only when the whole interval lies above 0.

    python benchmarks/explain.py [--videos 99 --images 20 --n-samples 500 --sigma 1 --cache DIR]

The defaults are the data of ``make demo`` (configs/demo.yaml): 99 real videos of 99 identities,
3 fakes each, 8 frames of 128 px, 64 px face crops, 20 test identities. ``--faces DIR`` uses an
existing faces folder instead (e.g. ``outputs/demo/faces``, with ``--detector-run
outputs/demo/whitening/baseline2d`` from notebook 02).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import add_demo_data_arguments, demo_faces

from fmkit.config import train_config
from fmkit.data.datasets import FrameDataset
from fmkit.data.schema import read_faces
from fmkit.engine.evaluation import run_settings
from fmkit.interpret import explain_eval as ee
from fmkit.models import load

TITLES = {
    "seconds": "seconds per explanation (lower is better)",
    "deletion": "deletion AUC: most salient pixels replaced by black first (lower is better)",
    "insertion": "insertion AUC: most salient pixels put back into the blurred image first (higher is better)",
    "mask_agreement": "mask agreement: share of the top 10 % |map| pixels inside the blend mask (fakes; higher)",
    "pointing": "pointing game: the map's maximum inside the blend mask (fakes; higher is better)",
    "fidelity_acc": "student fidelity: accuracy on held-out neighbours' re-labels (relabel only)",
    "fidelity_auc": "student fidelity: AUC on held-out neighbours' re-labels (relabel only)",
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    d = add_demo_data_arguments(ap)
    d.add_argument("--faces", type=Path, default=None, help="use this faces folder instead of synthesizing one")
    t = ap.add_argument_group("models (default: trained from the recipes in fmkit/configs/train/)")
    t.add_argument("--detector-run", type=Path, default=None, help="a finished baseline2d run folder to explain")
    t.add_argument("--vae-run", type=Path, default=None, help="a finished vae run folder to perturb with")
    t.add_argument("--epochs", type=int, default=None, help="training epochs of both models (default: the recipes')")
    t.add_argument("--device", default="cpu", help="cpu, cuda or auto (training)")
    t.add_argument("--out", type=Path, default=None, help="keep the trained run folders here (reused when finished)")
    e = ap.add_argument_group("explanations")
    e.add_argument("--images", type=int, default=20, help="test faces explained (half real, half fake)")
    e.add_argument("--n-samples", type=int, default=500, help="distiller's neighbours and LIME's perturbed samples")
    e.add_argument("--sigma", type=float, default=1.0, help="latent perturbation scale, in posterior stds")
    e.add_argument("--methods", nargs="+", default=list(ee.ALL_METHODS), choices=ee.ALL_METHODS)
    e.add_argument("--seed", type=int, default=0, help="seed of training, the choice of faces and the explanations")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    e.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return ap.parse_args()


def fmt(v: float) -> str:
    return f"{v:.3f}"


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    shared = [f"seed={args.seed}", f"device={args.device}"]
    overrides = {"epochs": args.epochs} if args.epochs else {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        if args.faces is not None:
            faces = args.faces
        else:
            faces, _ = demo_faces(args, tmp)
        t_data = time.perf_counter() - t0
        out = args.out or tmp / "runs"
        t1 = time.perf_counter()
        detector_cfg = train_config("baseline2d", settings=[*shared, f"data.size={args.crop}"], **overrides)
        vae_cfg = train_config("vae", settings=shared, **overrides)
        if args.detector_run is None:
            print("training baseline2d ...", flush=True)
        detector_run = args.detector_run or ee.trained(detector_cfg, faces, out / "baseline2d")
        if args.vae_run is None:
            print("training vae ...", flush=True)
        vae_run = args.vae_run or ee.trained(vae_cfg, faces, out / "vae")
        t_train = time.perf_counter() - t1
        detector, vae = load(detector_run), load(vae_run)
        size = run_settings(detector_run)[0]
        summary = json.loads((detector_run / "metrics.json").read_text())
        recon = ee.reconstruction_error(vae, FrameDataset(faces, split="test"))
        manifest = read_faces(faces)
        chosen = ee.explanation_faces(faces, args.images, seed=args.seed, size=size)
        print(f"explaining {len(chosen)} test faces with {', '.join(args.methods)} ...", flush=True)
        t2 = time.perf_counter()
        maps, scores = ee.compare_methods(
            detector, vae, chosen, args.methods, n_samples=args.n_samples, sigma=args.sigma, seed=args.seed
        )
        t_explain = time.perf_counter() - t2

    test = manifest[manifest["split"] == "test"]
    faces_table = scores.groupby("face").first()
    print()
    print(
        f"data: {manifest['video_id'].nunique()} videos, {len(manifest)} face crops; test split "
        f"{test['video_id'].nunique()} videos of {test['source_id'].nunique()} identities; synth + preprocess "
        f"{t_data:.0f} s"
    )
    print(
        f"teacher: baseline2d {detector_run if args.detector_run else '(trained here)'} at {size} px, "
        f"test frame AUC {summary['test']['auc']:.3f}, video AUC {summary['test'].get('video_auc', float('nan')):.3f}; "
        f"VAE {vae_run if args.vae_run else '(trained here)'}: {vae.size} px, test MSE {recon['mse']:.4f}, "
        f"PSNR {recon['psnr']:.1f} dB; training {t_train:.0f} s; torch threads {torch.get_num_threads()}"
    )
    print(
        f"faces explained: {len(faces_table)} ({int((faces_table['label'] == 0).sum())} real, "
        f"{int((faces_table['label'] == 1).sum())} fake: "
        + ", ".join(
            f"{m} {n}" for m, n in faces_table.loc[faces_table["label"] == 1, "manipulation"].value_counts().items()
        )
        + f") of {faces_table['identity'].nunique()} identities; teacher correct on "
        f"{int((faces_table['decision'] == faces_table['label']).sum())}; fakes with a mask "
        f"{int(faces_table['mask_area'].notna().sum())} (mean mask area {faces_table['mask_area'].mean():.3f}: "
        f"the chance level of mask agreement)"
    )
    print(
        f"explanations: n_samples {args.n_samples} (distiller neighbours, LIME samples), sigma {args.sigma}, "
        f"seed {args.seed}; {t_explain:.0f} s for {len(scores)} maps and their curves"
    )
    relabel = scores[scores["method"] == "relabel"]
    if len(relabel):
        print(
            f"distiller: neighbours flipped per face median {relabel['n_flipped'].median():.0f} "
            f"(min {relabel['n_flipped'].min():.0f}, max {relabel['n_flipped'].max():.0f}); faces with no flip "
            f"{int((relabel['n_flipped'] == 0).sum())}; teacher p(fake) of the VAE reconstruction vs the image: "
            f"mean |difference| {(relabel['recon_prob'] - relabel['prob']).abs().mean():.3f}"
        )
    print()
    table = ee.method_table(scores, resamples=args.bootstrap, seed=args.seed)
    print("per method: mean over faces, 95 % interval resampling test identities")
    for figure, rows in table.groupby("figure", sort=False):
        print(f"  {TITLES[figure]}")
        shown = rows.drop(columns=["figure", "better"]).to_string(index=False, float_format=fmt)
        print("\n".join("    " + line for line in shown.splitlines()))
    print()
    if {"relabel", "random"} <= set(args.methods):
        claims = ee.versus_random(scores, resamples=args.bootstrap, seed=args.seed)
        print("claims: relabel beats the random map (paired per face; MET only when the whole interval is above 0)")
        print(claims.drop(columns=["figure"]).to_string(index=False, float_format=fmt))
        print()
        print(f"verdicts: {claims['verdict'].value_counts().to_dict()}; total {time.perf_counter() - started:.0f} s")
    else:
        print(f"no claims (they need relabel and random); total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
