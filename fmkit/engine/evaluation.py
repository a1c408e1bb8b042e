"""``fmkit evaluate``: a run's best checkpoint scored on the test split of one or more faces folders.

For each faces folder (named by :func:`data_name`), ``evaluate_run`` writes into ``out/<name>/``:

- ``videos.csv``: one row per test video of the faces folder: video_id, label, prob (mean of its
  frames or clips; 0.5 for a video the model has no item for), identity, method, fallback
  (:mod:`fmkit.engine.coverage`: a video without any face crop, or for a video model with fewer
  crops than a clip, is scored 0.5 and counted, so every detector meets on the same videos);
- ``roc.png`` (video-level ROC curve) and ``scores.png`` (video scores by class);
- ``methods.csv``: the video AUC on all fakes and on each manipulation method's fakes (against
  all real videos), with 95 % intervals resampling identities, and the fallback videos in each;

and into ``out/``: ``metrics.json`` (per faces folder: item-level — frames, or clips for video
models, over the items that exist — and video-level metrics over every video of the split,
``n_videos`` and ``fallback_videos``, accuracy at 0.5 and at the validation EER thresholds,
each with a 95 % interval resampling identities) and ``cross_dataset.csv``, the tidy
generalisation table: one row per (train set, test set, level) with AUC, its interval, ACC,
ACC at the validation threshold, EER, items or videos, fallback videos (video rows) and
identities.

Thresholds come from the run's validation predictions (``val_predictions.csv``, written by
the trainer: the EER point of the validation split it was trained with), never from the
evaluated data; runs without that file report accuracy at 0.5 only.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from fmkit.config import resolve_config
from fmkit.data.datasets import ClipDataset
from fmkit.engine.compare import auc_by_method
from fmkit.engine.coverage import (
    folder_videos,
    intervals_with_fallback,
    metrics_with_fallback,
    split_videos,
    video_table,
)
from fmkit.engine.data import build_datasets
from fmkit.engine.hooks import is_detector
from fmkit.engine.loop import predict
from fmkit.engine.report import json_safe
from fmkit.errors import FmkitError
from fmkit.io import atomic_path, write_csv, write_json
from fmkit.metrics import MetricWarning, eer_threshold, roc, video_level
from fmkit.models.checkpoint import checkpoint_path, load, read_checkpoint

Extras = Callable[[nn.Module, Dataset, Path, str], Mapping[str, Any]]
LEVEL_KEYS = ("auc", "acc", "acc_at_threshold", "eer")


def data_name(path: str | os.PathLike) -> str:
    """A faces folder's name in tables: the folder's name, or its parent's when it is called ``faces``."""
    folder = Path(path).resolve()
    folder = folder.parent if folder.suffix == ".csv" else folder
    return folder.parent.name if folder.name == "faces" and folder.parent.name else folder.name


def run_config(run: str | os.PathLike) -> dict[str, Any]:
    """The resolved training config stored in a run's checkpoint (FmkitError when absent)."""
    run = Path(run)
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
    return resolve_config(stored)


def run_settings(run: str | os.PathLike) -> tuple[int | None, int | None]:
    """(input size, clip length or None for a frame model) of a trained detector's run or checkpoint."""
    data = run_config(run)["data"]
    return data["size"], data["clip_len"] if data["kind"] == "clip" else None


def validation_thresholds(run: str | os.PathLike) -> tuple[float | None, float | None]:
    """(item, video) EER thresholds on the run's validation predictions; (None, None) without them."""
    path = Path(run) / "val_predictions.csv"
    if not path.is_file():
        return None, None
    val = pd.read_csv(path, dtype={"video_id": str})
    videos = video_level(val["prob"], val["label"], val["video_id"].tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        item, video = eer_threshold(val["prob"], val["label"]), eer_threshold(videos["prob"], videos["label"])
    return (item if item == item else None), (video if video == video else None)


def run_data(run: str | os.PathLike) -> Path | None:
    """The faces folder a run trained on (its ``metrics.json`` records it), None when unknown."""
    summary = Path(run) / "metrics.json"
    data = json.loads(summary.read_text()).get("data") if summary.is_file() else None
    return Path(data) if data else None


def train_name(run: str | os.PathLike) -> str:
    """The training set of a run, for the cross-dataset table (its faces folder's name, else the run's)."""
    data = run_data(run)
    return data_name(data) if data is not None else Path(run).name


def _unique_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    names: list[str] = []
    for path in paths:
        name = data_name(path)
        names.append(name if name not in names else f"{name}_{len(names)}")
    return names


def _figures(videos: pd.DataFrame, folder: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    from fmkit.plots import roc_curves, score_histogram

    curve = roc(videos["prob"], videos["label"])
    figures = {
        "roc.png": roc_curves({title: (curve["fpr"].to_numpy(), curve["tpr"].to_numpy())}),
        "scores.png": score_histogram(videos["prob"], videos["label"], title),
    }
    for name, fig in figures.items():
        with atomic_path(folder / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)  # saved, not shown: a notebook would otherwise display it at the end of the cell


def evaluate_run(
    run: str | os.PathLike,
    data: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    split: str = "test",
    device: str = "cpu",
    resamples: int = 1000,
    seed: int = 0,
    extras: Extras | None = None,
    progress: bool | None = False,
) -> dict[str, dict[str, Any]]:
    """Score ``run`` on ``split`` of every faces folder in ``data``; write the files above into ``out``.

    Returns ``{data name: metrics}``; ``extras(model, dataset, folder, split)`` adds model-specific
    entries (the CLI adds the whitening layer's decorrelation and concept AUC). ``progress``: a bar over
    the batches scored (None: on a terminal only, :func:`fmkit.console.progress_enabled`).
    """
    if not data:
        raise FmkitError("evaluate needs at least one faces folder (--data FACES)")
    cfg = run_config(run)
    model = load(run, device=device)
    if not is_detector(model):
        raise FmkitError(
            f"{run} holds a {cfg['model']['name']} model, not a detector: evaluate scores detectors "
            "(a VAE's test reconstruction error is in notebook 04 and benchmarks/explain.py)"
        )
    threshold, video_threshold = validation_thresholds(run)
    trained_on = train_name(run)
    report: dict[str, dict[str, Any]] = {}
    rows = []
    for name, folder in zip(_unique_names(data), data):
        folder = Path(folder)
        dataset = build_datasets(folder, cfg["data"])[split]
        if len(dataset) == 0:
            raise FmkitError(f"no {split} items in {folder}")
        pred = predict(model, dataset, device=device, progress=progress)
        videos = video_table(pred, split_videos(folder, split), f"run {run}")  # every video; 0.5 without items
        items = "clips" if isinstance(dataset, ClipDataset) else "frames"
        metrics: dict[str, Any] = {"split": split, "items": items}
        metrics.update(metrics_with_fallback(pred, videos, threshold=threshold, video_threshold=video_threshold))
        metrics["intervals"] = intervals_with_fallback(
            pred, videos, threshold=threshold, video_threshold=video_threshold, resamples=resamples, seed=seed
        )
        if extras is not None:
            metrics.update(extras(model, dataset, folder, split))
        methods = auc_by_method(videos.assign(model=trained_on), resamples=resamples, seed=seed).drop(columns="model")
        metrics["methods"] = methods.set_index("fakes")[["auc", "lo", "hi"]].to_dict("index")
        report[name] = metrics
        for level, prefix in ((items[:-1], ""), ("video", "video_")):
            row = {"train": trained_on, "test": name, "level": level}
            row.update({key: metrics.get(prefix + key) for key in LEVEL_KEYS})
            row["lo"], row["hi"] = metrics["intervals"][prefix + "auc"]
            row["n"] = metrics["n_videos"] if prefix else metrics["n"]
            row["fallback_videos"] = metrics["fallback_videos"] if prefix else None
            row["identities"] = videos["identity"].nunique()
            rows.append(row)
        if out is not None:
            target = Path(out) / name
            write_csv(videos, target / "videos.csv")
            write_csv(methods, target / "methods.csv")
            _figures(videos, target, f"{trained_on} → {name}")
    if out is not None:
        write_json(json_safe(report), Path(out) / "metrics.json")
        columns = ["train", "test", "level", "auc", "lo", "hi", *LEVEL_KEYS[1:], "n", "fallback_videos", "identities"]
        write_csv(pd.DataFrame(rows)[columns], Path(out) / "cross_dataset.csv")
    return report


#: Where notebook 05 writes the pipeline's main table (relative to the pipeline's run folder).
SUMMARY_TABLE = "evaluation/summary.csv"


def find_runs(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Every finished detector run under a pipeline's run folder, by model folder name (sorted by path).

    A run is a folder with ``metrics.json`` and ``test_predictions.csv`` (VAE runs have none).
    """
    runs: dict[str, Path] = {}
    for summary in sorted(Path(run_dir).rglob("metrics.json")):
        folder = summary.parent
        if (folder / "test_predictions.csv").is_file() and (folder / "config.yaml").is_file():
            name = folder.name if folder.name not in runs else f"{folder.parent.name}/{folder.name}"
            runs[name] = folder
    return runs


def evaluate_runs(
    runs: Mapping[str, str | os.PathLike],
    data: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    **kw: Any,
) -> tuple[dict[str, dict[str, dict[str, Any]]], pd.DataFrame]:
    """:func:`evaluate_run` of every run into ``out/<run name>/``: ({run: {data: metrics}}, the
    cross-dataset rows of all runs with a ``model`` column)."""
    reports, tables = {}, []
    for name, run in runs.items():
        reports[name] = evaluate_run(run, data, Path(out) / name, **kw)
        tables.append(pd.read_csv(Path(out) / name / "cross_dataset.csv").assign(model=name))
    cross = pd.concat(tables, ignore_index=True)
    return reports, cross[["model", *[c for c in cross.columns if c != "model"]]]


def summary_table(reports: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> pd.DataFrame:
    """One row per (model, test data): items, item- and video-level AUC with 95 % intervals, video
    accuracy at the validation threshold and at 0.5, video EER, test videos (every video of the split,
    the same for every detector) and fallback videos (those of them scored 0.5 for want of an item:
    no face crop, or for a clip model fewer crops than a clip)."""
    rows = []
    for model, per_data in reports.items():
        for name, m in per_data.items():
            ci = m["intervals"]
            rows.append(
                {
                    "model": model,
                    "data": name,
                    "items": m["items"],
                    "auc": m["auc"],
                    "auc_lo": ci["auc"][0],
                    "auc_hi": ci["auc"][1],
                    "video_auc": m["video_auc"],
                    "video_lo": ci["video_auc"][0],
                    "video_hi": ci["video_auc"][1],
                    "video_acc_at_threshold": m.get("video_acc_at_threshold", float("nan")),
                    "video_acc": m["video_acc"],
                    "video_eer": m["video_eer"],
                    "videos": m["n_videos"],
                    "fallback_videos": m.get("fallback_videos", 0),
                }
            )
    return pd.DataFrame(rows)


def confusion(videos: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """2 × 2 counts of test videos (rows: true real/fake; columns: called real/fake), calling a video
    fake when its probability is at least ``threshold`` (the validation EER threshold; 0.5 when None)."""
    from sklearn.metrics import confusion_matrix

    t = 0.5 if threshold is None else threshold
    counts = confusion_matrix(videos["label"], (videos["prob"] >= t).astype(int), labels=[0, 1])
    return pd.DataFrame(counts, index=["real", "fake"], columns=["called real", "called fake"])


def protocol_claims(path: str | os.PathLike | None = None) -> pd.DataFrame | None:
    """The committed claims table of the full protocol (``benchmarks/claims.py``), or None when absent.

    ``path`` None: ``benchmarks/results/claims.csv`` of the repository this fmkit was installed from
    (an editable install of a clone); an installed wheel has none.
    """
    path = (
        Path(path)
        if path is not None
        else Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "claims.csv"
    )
    return pd.read_csv(path) if path.is_file() else None


# --- sentences the notebooks print under their tables (computed, so they hold when numbers move) ---------


def lost_frames(faces: str | os.PathLike) -> pd.DataFrame:
    """Per manipulation method of a faces folder (``real`` included) and in all: the videos, the frames
    sampled from the readable ones, the frames MTCNN found no face in (``lost``), the videos that gave no
    crop at all (a test one scores 0.5 for every detector: :mod:`fmkit.engine.coverage`) and the videos
    that could not be read. Indexed by method, the last row ``all``."""
    from fmkit.data.schema import read_errors, read_faces

    crops = read_faces(faces).groupby("method").size()
    errors = read_errors(faces)
    per_frame = errors[errors["frame_idx"].notna()]
    unreadable = errors[errors["frame_idx"].isna() & ~errors["reason"].astype(str).str.startswith("no face")]
    videos = folder_videos(faces)
    table = pd.DataFrame(
        {
            "videos": videos.groupby("method").size(),
            "frames": crops.add(per_frame.groupby("method").size(), fill_value=0),
            "lost": per_frame.groupby("method").size(),
            "videos_without_crops": videos[videos["crops"] == 0].groupby("method").size(),
            "unreadable_videos": unreadable.drop_duplicates("video_id").groupby("method").size(),
        }
    )
    table = table.reindex(sorted(table.index, key=lambda m: (m != "real", m))).fillna(0).astype(int)
    table.loc["all"] = table.sum()
    return table.rename_axis("method")


def lost_frames_sentence(table: pd.DataFrame) -> str:
    """What :func:`lost_frames`'s table shows, in words: frames lost per method, fakes against reals, and
    the videos without a crop."""
    every = table.loc["all"]
    methods = table.drop(index="all")
    if every["lost"] == 0:
        text = f"MTCNN found the face in all {every['frames']:,} sampled frames."
    else:
        per = ", ".join(f"{m} {r['lost']:,} of {r['frames']:,}" for m, r in methods.iterrows())
        text = (
            f"MTCNN found no face in {every['lost']:,} of {every['frames']:,} sampled frames "
            f"({every['lost'] / max(every['frames'], 1):.1%}): {per}."
        )
    fakes = methods.drop(index="real", errors="ignore").sum()
    if "real" in methods.index and len(methods) > 1:
        real = methods.loc["real"]
        text += (
            f" Fakes lost {fakes['lost'] / max(fakes['frames'], 1):.1%} of their frames, reals "
            f"{real['lost'] / max(real['frames'], 1):.1%}."
        )
    without = every["videos_without_crops"]
    text += (
        " No video lost all its crops."
        if without == 0
        else f" {without} video(s) gave no crop at all ("
        + ", ".join(f"{m} {n}" for m, n in methods["videos_without_crops"].items() if n)
        + "): a test one is scored 0.5 by every detector (notebook 05)."
    )
    if every["unreadable_videos"]:
        text += f" {every['unreadable_videos']} video(s) could not be read."
    return text


def chance_call(lo: float, hi: float) -> str:
    """Where a 95 % AUC interval lies against chance (0.5): above, below, or holding it."""
    if not (lo == lo and hi == hi):
        return "no interval"
    if lo > 0.5:
        return "above chance"
    if hi < 0.5:
        return "below chance"
    return "not told apart from chance (the interval holds 0.5)"


def chance_sentences(table: pd.DataFrame) -> str:
    """One line per kind of fakes of :func:`fmkit.engine.compare.auc_by_method`'s table: each detector's video
    AUC with its interval and where the interval lies against chance (:func:`chance_call`)."""
    lines = []
    for fakes, rows in table.groupby("fakes", sort=False):
        parts = [
            f"{r['model']} {r['auc']:.3f} ({r['lo']:.3f} … {r['hi']:.3f}): {chance_call(r['lo'], r['hi'])}"
            if r["lo"] == r["lo"] and r["hi"] == r["hi"]
            else f"{r['model']} {r['auc']:.3f} (no interval)"
            for r in rows.to_dict("records")
        ]
        lines.append(f"{fakes} fakes: " + "; ".join(parts))
    return "\n".join(lines)


def pointing_sentence(pointing: pd.DataFrame, model: str = "whitening") -> str:
    """What the pointing table of :func:`fmkit.interpret.claims.whitening_report` shows for ``model``: for each
    concept axis the share of its activation inside the concept's region over the region's area (1×: a map
    that points nowhere)."""
    own = pointing[model]
    ratio = own["inside"] / own["area"]
    parts = ", ".join(f"{c} {r:.2f}×" for c, r in ratio.items())
    best = ratio.idxmax() if ratio.notna().any() else None
    tail = f"; the most localised axis is {best} ({ratio[best]:.2f}×)" if best is not None else ""
    return f"{model}: share inside the concept's region over the region's area (1× = points nowhere): {parts}{tail}."


def flip_sentence(face: Mapping[str, Any], explanation: Any, flipping_faces: int, faces: int) -> str:
    """The re-label explanation of the face a notebook shows: its flip rate and fidelity, and what a map
    without any flipped neighbour is worth. ``flipping_faces`` of the ``faces`` explained have a flipped
    neighbour."""
    rate = explanation.n_flipped / max(explanation.n_samples, 1)
    text = (
        f"{face['method']} face {face['video_id']}: p(fake) {explanation.prob:.3f}, decision {explanation.label}; "
        f"VAE reconstruction p(fake) {explanation.recon_prob:.3f}; {explanation.n_flipped} of "
        f"{explanation.n_samples} neighbours flipped ({rate:.1%}) at scales {explanation.sigmas}; "
        f"student fidelity {explanation.fidelity}. Faces with a flipped neighbour: {flipping_faces} of {faces}."
    )
    if explanation.n_flipped == 0:
        text += (
            " No neighbour flipped the decision: the student had a single re-label to learn from, so its map "
            "is uninformative (and so is every re-label map of a face without flips)."
        )
    return text
