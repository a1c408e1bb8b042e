r"""Explanation methods compared on held-out faces: cost, faithfulness and placement, with intervals.

Re-label distillation (:mod:`fmkit.interpret.relabel`) and the Captum baselines
(:mod:`fmkit.interpret.attribution`) explain one detector's decisions on the same test crops:

1. :func:`explanation_faces` picks the crops: ``n`` test videos, half real and half fake
   (whichever class runs short is filled from the other), one crop per video, spread over
   identities first and, among fakes, over manipulation methods; a fake's crop is one with a
   ground-truth blend mask where the video has one, and fakes with one are preferred. A blend mask
   holds the blend ratio per pixel, whose maximum varies between fakes (0.25 to 1 for the
   synthetic self-blends), while the mask metrics call a pixel "inside" above 0.5: each mask is
   therefore divided by its maximum (inside = blended at least half as strongly as the mask's
   strongest pixel), and a mask whose maximum is below :data:`MIN_BLEND` counts as none.
   Deterministic under ``seed``.
2. :func:`compare_methods` explains every crop with every method (the same teacher, seeds and
   query budget: ``n_samples`` is both the distiller's neighbours and LIME's perturbations) and
   scores each map with the functions of :mod:`fmkit.interpret.faithfulness`: seconds per
   explanation; deletion AUC (pixels replaced by black, lower = more faithful); insertion AUC
   (pixels put back into a Gaussian blur of the image, higher = more faithful); mask agreement
   (share of the top ``top`` |map| pixels inside the blend mask; chance = the mask's area,
   recorded as ``mask_area``) and the pointing game (the map's maximum inside the mask), both on
   fakes with a non-empty mask only (NaN otherwise); and for re-label distillation the student's
   fidelity on held-out neighbours (accuracy and AUC of predicting their re-labels).
3. :func:`method_table`: per method, the mean of each figure with a 95 % bootstrap interval that
   resamples *identities* (:func:`fmkit.metrics.bootstrap_interval`): all faces of a drawn
   person together. :func:`versus_random`: paired per-face differences between re-label
   distillation and the random map, oriented so that positive = better (deletion: random −
   relabel; insertion and mask agreement: relabel − random), with intervals and a verdict against
   0: MET only when the whole interval lies above 0 (a clear margin over chance), MISSED when it
   lies below, UNDECIDED otherwise.

:func:`reconstruction_error` measures the VAE the distiller perturbs (per-pixel squared error and
PSNR of its reconstructions); :func:`trained` reuses a finished run folder or trains it.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from fmkit.data.datasets import filter_split, load_image, load_mask, open_manifest
from fmkit.errors import FmkitError
from fmkit.interpret.attribution import METHODS, attribute
from fmkit.interpret.faithfulness import deletion_auc, insertion_auc, mask_agreement, pointing_game
from fmkit.interpret.relabel import Explanation, ReLabelDistiller, as_teacher, teacher_probs
from fmkit.metrics import MetricWarning, bootstrap_interval, verdict

#: Every explanation method :func:`compare_methods` knows: re-label distillation, then the Captum baselines.
ALL_METHODS = ("relabel", *METHODS)

#: Figure of :func:`compare_methods`'s scores → which direction is better (what :func:`method_table` summarises).
FIGURES = {
    "seconds": "lower",
    "deletion": "lower",
    "insertion": "higher",
    "mask_agreement": "higher",
    "pointing": "higher",
    "fidelity_acc": "higher",
    "fidelity_auc": "higher",
}

#: A blend mask whose maximum is below this (a blend changing pixels by under 10 %) counts as no mask.
MIN_BLEND = 0.1

#: Columns of :func:`compare_methods`'s scores that only ``relabel`` fills (NaN for the other methods).
RELABEL_ONLY = ("fidelity_acc", "fidelity_auc", "n_flipped", "recon_prob")

#: Figures :func:`versus_random` compares, with the sign that makes a positive difference "better".
VERSUS = {"deletion": -1.0, "insertion": 1.0, "mask_agreement": 1.0}

_DISTILLER_KEYS = set(inspect.signature(ReLabelDistiller).parameters) - {"teacher", "vae", "n_samples", "sigma", "seed"}
_ATTRIBUTE_KEYS = {
    k for k, p in inspect.signature(attribute).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
} - {"seed", "n_samples", "batch_size", "clip_len"}


# --- faces ---------------------------------------------------------------------------------


def _resized(x: Tensor, size: int | None) -> Tensor:
    """(C, H, W) → (C, size, size), bilinear and antialiased; unchanged when size is None or already so."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def _spread(videos: pd.DataFrame, by_method: bool) -> pd.DataFrame:
    """Videos (already shuffled) reordered: one per identity first, then a second per identity, …;
    within each such round (``by_method``) the manipulation methods take turns."""
    videos = videos.assign(_round=videos.groupby("identity", sort=False).cumcount())
    keys = ["_round"]
    if by_method:
        videos = videos.assign(_turn=videos.groupby(["_round", "method"], sort=False).cumcount())
        keys.append("_turn")
    return videos.sort_values(keys, kind="stable")


def explanation_faces(
    faces: str | os.PathLike | pd.DataFrame,
    n: int,
    split: str = "test",
    seed: int = 0,
    size: int | None = None,
    root: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """``n`` crops of the ``split`` to explain: balanced real / fake, one per video (module docstring, step 1).

    Args:
        faces: a faces folder, its ``faces.csv``, or the manifest as a DataFrame (then ``root`` is required).
        n: faces wanted (fewer when the split has fewer videos).
        seed: seed of the draw of videos and crops: equal seeds, equal faces.
        size: side the crops (and masks) are resized to (bilinear, antialiased), e.g. the detector's
            training size; None keeps the crop size.

    Returns:
        One dict per face, fakes and reals alternating: ``image`` (3, H, W) float tensor in [0, 1],
        ``mask`` (H, W) float tensor in [0, 1]: the blend mask divided by its maximum (None for real
        faces and fakes without a mask whose maximum reaches :data:`MIN_BLEND`), ``video_id``,
        ``identity`` (``source_id``), ``method`` (manipulation method; ``real`` for real videos),
        ``label`` (1 fake, 0 real), ``crop_path`` and ``frame_idx``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise FmkitError(f"explanation_faces needs n >= 1, got {n!r}")
    df, root = open_manifest(faces, root)
    df = filter_split(df, split).reset_index(drop=True)
    if df.empty:
        raise FmkitError(f"no {split} crops to explain in {root}")
    rng = np.random.default_rng(seed)
    videos = df.groupby("video_id", sort=True).agg(
        label=("label", "first"), method=("method", "first"), identity=("source_id", "first")
    )
    videos = videos.iloc[rng.permutation(len(videos))]
    real = _spread(videos[videos["label"] == 0], by_method=False)
    fake = _spread(videos[videos["label"] == 1], by_method=True)
    n_real = min(len(real), n // 2)
    n_fake = min(len(fake), n - n_real)
    n_real = min(len(real), n - n_fake)
    crops = dict(list(df.groupby("video_id", sort=True)))

    def pick(video_id: str, masked: bool) -> dict[str, Any] | None:
        rows = crops[video_id].iloc[rng.permutation(len(crops[video_id]))]
        if masked:
            for _, row in rows[rows["mask_path"] != ""].iterrows():
                mask = load_mask(root / row["mask_path"])
                if float(mask.max()) >= MIN_BLEND:
                    return {"row": row, "mask": mask / mask.max()}
            return None
        return {"row": rows.iloc[0], "mask": None}

    chosen_fake, spare = [], []
    for video_id in fake.index:
        if len(chosen_fake) >= n_fake:
            break
        got = pick(video_id, masked=True)
        if got is None:
            spare.append(video_id)
        else:
            chosen_fake.append(got)
    chosen_fake += [pick(v, masked=False) for v in spare[: n_fake - len(chosen_fake)]]
    chosen_real = [pick(v, masked=False) for v in real.index[:n_real]]
    out = []
    for k in range(max(len(chosen_fake), len(chosen_real))):
        out += [c[k] for c in (chosen_fake, chosen_real) if k < len(c)]
    return [_face(c["row"], c["mask"], root, size) for c in out]


def _face(row: pd.Series, mask: Tensor | None, root: Path, size: int | None) -> dict[str, Any]:
    image = _resized(load_image(root / row["crop_path"]), size).clamp(0, 1)
    if mask is not None:
        mask = _resized(mask[None], size)[0].clamp(0, 1)
    return {
        "image": image,
        "mask": mask,
        "video_id": str(row["video_id"]),
        "identity": str(row["source_id"]),
        "method": str(row["method"]),
        "label": int(row["label"]),
        "crop_path": str(row["crop_path"]),
        "frame_idx": int(row["frame_idx"]),
    }


# --- explanations and their scores ---------------------------------------------------------


class RelabelExplainer:
    """A callable ``(image, sigma, n_samples) → Explanation``: re-label distillation of one detector
    with one VAE at any scale and budget (what :func:`fmkit.plots.browse_explanations` re-runs).

    Built by :func:`relabel_explainer`; other :class:`ReLabelDistiller` arguments are fixed here.
    """

    def __init__(self, model: nn.Module, vae: Any, clip_len: int | None = None, seed: int = 0, **kw: Any) -> None:
        unknown = set(kw) - _DISTILLER_KEYS
        if unknown:
            raise FmkitError(f"unknown ReLabelDistiller argument(s): {', '.join(sorted(unknown))}")
        self.teacher = as_teacher(model, kw.get("batch_size", 64), clip_len)
        self.vae, self.seed, self.kw = vae, seed, kw

    def distiller(self, sigma: float = 1.0, n_samples: int = 500) -> ReLabelDistiller:
        """The distiller at this scale and budget."""
        return ReLabelDistiller(self.teacher, self.vae, n_samples=n_samples, sigma=sigma, seed=self.seed, **self.kw)

    def __call__(self, image: Tensor, sigma: float = 1.0, n_samples: int = 500) -> Explanation:
        return self.distiller(sigma, n_samples).explain(image)


def relabel_explainer(
    model: nn.Module, vae: Any, clip_len: int | None = None, seed: int = 0, **kw: Any
) -> RelabelExplainer:
    """Re-label distillation of ``model``'s decisions with ``vae`` as a callable ``(image, sigma, n_samples)
    → Explanation``; ``kw``: further :class:`ReLabelDistiller` arguments (``grid``, ``mode``, …)."""
    return RelabelExplainer(model, vae, clip_len, seed, **kw)


def _warm_up(methods: Sequence[str]) -> None:
    """Import what the methods import lazily, so that the first face's timing does not pay for it."""
    if set(methods) & {"gradcam", "ig", "occlusion", "lime"}:
        import captum.attr  # noqa: F401
    if "lime" in methods:
        import skimage.segmentation  # noqa: F401


def compare_methods(
    model: nn.Module,
    vae: Any,
    faces_list: Sequence[Mapping[str, Any]],
    methods: Sequence[str] = ALL_METHODS,
    n_samples: int = 500,
    sigma: float = 1.0,
    seed: int = 0,
    clip_len: int | None = None,
    *,
    steps: int = 50,
    top: float = 0.1,
    tolerance: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    **kw: Any,
) -> tuple[dict[str, list[np.ndarray]], pd.DataFrame]:
    """Explain every face with every method and score every map (module docstring, step 2).

    Args:
        model: the detector (an ``nn.Module`` returning fake logits); the teacher is
            :func:`~fmkit.interpret.relabel.as_teacher` of it.
        vae: the VAE re-label distillation perturbs (needed only for ``"relabel"``).
        faces_list: faces as :func:`explanation_faces` returns them (``image``, ``mask``, ``video_id``,
            ``identity``, ``method``, ``label``).
        methods: among :data:`ALL_METHODS`.
        n_samples: the distiller's neighbours and LIME's perturbed samples (one query budget).
        sigma: the distiller's perturbation scale, in posterior stds.
        seed: face i is explained with seed ``seed + i`` (distiller, LIME, random map).
        clip_len: frames of the still clip a video detector sees (default: its ``clip_len`` attribute).
        steps: deletion and insertion curve steps.
        top, tolerance: :func:`~fmkit.interpret.faithfulness.mask_agreement`'s share of top pixels and
            :func:`~fmkit.interpret.faithfulness.pointing_game`'s tolerance in px.
        batch_size: images per forward pass of the teacher (and the distiller's decode batch).
        progress: a progress bar over faces.
        kw: further arguments of :class:`ReLabelDistiller` (``grid``, ``alpha``, ``mode``, …) or of
            :func:`~fmkit.interpret.attribution.attribute` (``layer``, ``steps`` of IG is ``ig_steps``
            here, ``window``, ``stride``, ``segments``, ``superpixels``).

    Returns:
        ``maps[method]``: one (H, W) float64 map per face, in ``faces_list``'s order; ``scores``: one
        row per face × method with ``face`` (index), ``video_id``, ``identity``, ``manipulation``,
        ``label``, ``prob`` (the teacher's fake probability), ``decision``, ``method``, ``seconds``,
        ``deletion``, ``insertion``, ``mask_agreement``, ``pointing``, ``mask_area`` (NaN without a
        mask), and for ``relabel`` ``fidelity_acc``, ``fidelity_auc``, ``n_flipped``, ``recon_prob``
        (NaN for the other methods).
    """
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown or not methods:
        raise FmkitError(f"unknown explanation method(s) {unknown}; expected some of {', '.join(ALL_METHODS)}")
    attr_kw = {k: v for k, v in kw.items() if k in _ATTRIBUTE_KEYS - {"steps"}}
    if "ig_steps" in kw:
        attr_kw["steps"] = kw["ig_steps"]
    relabel_kw = {k: v for k, v in kw.items() if k in _DISTILLER_KEYS - {"batch_size"}}
    bad = set(kw) - set(attr_kw) - set(relabel_kw) - {"ig_steps"}
    if bad:
        raise FmkitError(f"compare_methods got unknown argument(s): {', '.join(sorted(bad))}")
    if "relabel" in methods and vae is None:
        raise FmkitError("the relabel method needs a VAE")
    teacher = as_teacher(model, batch_size, clip_len)
    _warm_up(methods)
    maps: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    rows = []
    faces_iter: Iterable[tuple[int, Mapping[str, Any]]] = enumerate(faces_list)
    if progress:
        from fmkit.console import progress_bar

        faces_iter = progress_bar(faces_iter, progress=True, total=len(faces_list), desc="explaining faces")
    for i, face in faces_iter:
        image = face["image"]
        prob = float(teacher_probs(teacher, torch.as_tensor(image)[None])[0])
        mask = face.get("mask")
        scored_mask = mask is not None and int(face["label"]) == 1 and float(torch.as_tensor(mask).max()) > 0.5
        for method in methods:
            extra: dict[str, float] = dict.fromkeys(
                ("fidelity_acc", "fidelity_auc", "n_flipped", "recon_prob"), math.nan
            )
            start = time.perf_counter()
            if method == "relabel":
                exp = ReLabelDistiller(
                    teacher, vae, n_samples=n_samples, sigma=sigma, seed=seed + i, batch_size=batch_size, **relabel_kw
                ).explain(image)
                saliency = exp.map
                extra = {
                    "fidelity_acc": exp.fidelity["acc"],
                    "fidelity_auc": exp.fidelity["auc"],
                    "n_flipped": float(exp.n_flipped),
                    "recon_prob": exp.recon_prob,
                }
            else:
                explained = model if method in ("gradcam", "ig") else teacher
                saliency = attribute(
                    method,
                    explained,
                    image,
                    seed=seed + i,
                    n_samples=n_samples,
                    batch_size=batch_size,
                    clip_len=clip_len,
                    **attr_kw,
                )
            seconds = time.perf_counter() - start
            maps[method].append(saliency)
            rows.append(
                {
                    "face": i,
                    "video_id": face["video_id"],
                    "identity": face["identity"],
                    "manipulation": face["method"],
                    "label": int(face["label"]),
                    "prob": prob,
                    "decision": int(prob >= 0.5),
                    "method": method,
                    "seconds": seconds,
                    "deletion": deletion_auc(teacher, image, saliency, steps=steps, batch_size=batch_size),
                    "insertion": insertion_auc(teacher, image, saliency, steps=steps, batch_size=batch_size),
                    "mask_agreement": mask_agreement(saliency, mask, top) if scored_mask else math.nan,
                    "pointing": pointing_game(saliency, mask, tolerance) if scored_mask else math.nan,
                    "mask_area": float((torch.as_tensor(mask) > 0.5).double().mean()) if scored_mask else math.nan,
                    **extra,
                }
            )
    return maps, pd.DataFrame(rows)


def explanation_titles(faces_list: Sequence[Mapping[str, Any]], scores: pd.DataFrame) -> list[str]:
    """One title per face (two lines): its manipulation method (``real``), identity, and the teacher's fake
    probability (from ``scores`` of :func:`compare_methods`)."""
    prob = scores.groupby("face")["prob"].first()
    return [f"{f['method']} · {f['identity']}\np(fake) {prob.get(i, math.nan):.2f}" for i, f in enumerate(faces_list)]


# --- summaries with intervals ---------------------------------------------------------------


def _mean_interval(values: np.ndarray, groups: np.ndarray, resamples: int, seed: int) -> tuple[float, float, float]:
    """Mean of the finite values and its bootstrap interval resampling their groups."""
    ok = np.isfinite(values)
    v, g = values[ok], groups[ok]
    if not len(v):
        return math.nan, math.nan, math.nan
    lo, hi = bootstrap_interval(lambda rows: float(v[rows].mean()), list(g), resamples=resamples, seed=seed)
    return float(v.mean()), lo, hi


def method_table(scores: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per method and figure of :data:`FIGURES`: the mean over faces and its 95 % interval resampling identities.

    Columns: ``figure``, ``method``, ``mean``, ``lo``, ``hi``, ``better`` (``lower``/``higher``), ``faces``
    (with a finite value), ``identities``. Figures a method has no value for (fidelity of the
    baselines, mask figures without masked fakes) are left out. With a single identity the
    interval is NaN (a :class:`~fmkit.metrics.MetricWarning` says so once).
    """
    rows = []
    methods = list(dict.fromkeys(scores["method"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        for figure, better in FIGURES.items():
            for method in methods:
                s = scores[scores["method"] == method]
                values = s[figure].to_numpy(float)
                ok = np.isfinite(values)
                if not ok.any():
                    continue
                mean, lo, hi = _mean_interval(values, s["identity"].to_numpy(), resamples, seed)
                rows.append(
                    {
                        "figure": figure,
                        "method": method,
                        "mean": mean,
                        "lo": lo,
                        "hi": hi,
                        "better": better,
                        "faces": int(ok.sum()),
                        "identities": int(s.loc[ok, "identity"].nunique()),
                    }
                )
    _rewarn(caught)
    return pd.DataFrame(rows, columns=["figure", "method", "mean", "lo", "hi", "better", "faces", "identities"])


def _rewarn(caught: list[warnings.WarningMessage]) -> None:
    """Re-issue the distinct caught warnings once each."""
    for message in dict.fromkeys(str(w.message) for w in caught):
        warnings.warn(message, MetricWarning, stacklevel=3)


def versus_random(
    scores: pd.DataFrame,
    resamples: int = 1000,
    seed: int = 0,
    method: str = "relabel",
    baseline: str = "random",
    target: float = 0.0,
) -> pd.DataFrame:
    """Does ``method`` beat the ``baseline`` map by a clear margin? Paired per-face differences with verdicts.

    For each figure of :data:`VERSUS` the per-face difference, oriented so that positive means
    ``method`` is better: deletion ``baseline − method`` (lower is better), insertion and mask
    agreement ``method − baseline``. ``value`` is its mean over faces, ``[lo, hi]`` a 95 % bootstrap
    interval resampling identities (paired: a face's two maps stay together); ``verdict`` is MET only
    when the whole interval lies above ``target`` (0), MISSED when it lies below, UNDECIDED otherwise.
    Columns: ``claim``, ``figure``, ``value``, ``lo``, ``hi``, ``target``, ``verdict``, ``faces``, ``identities``.
    """
    present = set(scores["method"])
    if method not in present or baseline not in present:
        raise FmkitError(f"versus_random needs scores of {method!r} and {baseline!r}; got {sorted(present)}")
    rows = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        for figure, sign in VERSUS.items():
            wide = scores.pivot_table(index=["face", "identity"], columns="method", values=figure, dropna=False)
            diff = (sign * (wide[method] - wide[baseline])).to_numpy(float)
            identities = wide.index.get_level_values("identity").to_numpy()
            value, lo, hi = _mean_interval(diff, identities, resamples, seed)
            decided = verdict(lo, hi, target)
            if decided == "MET" and not lo > target:  # an interval touching the target is no clear margin
                decided = "UNDECIDED"
            ok = np.isfinite(diff)
            order = f"{baseline} − {method}" if sign < 0 else f"{method} − {baseline}"
            rows.append(
                {
                    "claim": f"{method} beats {baseline}: {figure.replace('_', ' ')} ({order})",
                    "figure": figure,
                    "value": value,
                    "lo": lo,
                    "hi": hi,
                    "target": target,
                    "verdict": decided,
                    "faces": int(ok.sum()),
                    "identities": int(len(set(identities[ok]))),
                }
            )
    _rewarn(caught)
    return pd.DataFrame(rows)


# --- the VAE and the runs --------------------------------------------------------------------


def _batches(images: Dataset | Tensor | Sequence[Tensor], batch_size: int) -> Iterable[Tensor]:
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise FmkitError(f"reconstruction_error takes images (N, 3, H, W), got {tuple(images.shape)}")
        yield from images.split(batch_size)
        return
    batch = []
    for k in range(len(images)):
        item = images[k]
        batch.append(item[0] if isinstance(item, (tuple, list)) else item)
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def reconstruction_error(
    vae: nn.Module, images: Dataset | Tensor | Sequence[Tensor], batch_size: int = 64
) -> dict[str, float]:
    """How well the VAE reconstructs images: ``{"mse", "psnr", "n"}``.

    ``images``: a dataset of ``(x, y)`` items (e.g. a test :class:`~fmkit.data.datasets.FrameDataset`),
    a tensor (N, 3, H, W) or a sequence of (3, H, W) tensors, in [0, 1]; each is resized (bilinear,
    antialiased) to the VAE's side ``vae.size`` when it has one. The reconstruction is the posterior
    mean's decode, ``vae(x)`` = decode(mu(x)), in eval mode. ``mse``: mean squared error per pixel and
    channel over all images; ``psnr``: mean over images of 10 · log10(1 / mse of the image), in dB.
    """
    from fmkit.models.modes import eval_mode

    device = next(iter(vae.parameters()), torch.empty(0)).device
    side = getattr(vae, "size", None)
    errors = []
    with eval_mode(vae):
        for x in _batches(images, batch_size):
            if side is not None and tuple(x.shape[-2:]) != (side, side):
                x = F.interpolate(x.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)
            x = x.to(device, torch.float32).clamp(0, 1)
            errors.append((vae(x) - x).square().flatten(1).mean(1).double().cpu())
    if not errors:
        raise FmkitError("reconstruction_error needs at least one image")
    mse = torch.cat(errors)
    psnr = 10 * torch.log10(1 / mse.clamp_min(1e-12))
    return {"mse": float(mse.mean()), "psnr": float(psnr.mean()), "n": float(len(mse))}


def trained(
    config: Mapping[str, Any], faces: str | os.PathLike, out: str | os.PathLike, progress: bool | None = None
) -> Path:
    """The run folder ``out`` as it is when it holds a finished run (``metrics.json``), whatever its
    config; else ``fmkit.engine.train(config, faces, out, resume=True, progress=progress)`` (trained, or
    resumed)."""
    from fmkit.engine import train

    out = Path(out)
    if (out / "metrics.json").is_file():
        return out
    return train(config, faces, out, resume=True, progress=progress)
