"""Figures shared by the notebooks and the command line (matplotlib/seaborn).

Every function returns its matplotlib Figure, so callers choose to show or save it; :func:`show`
displays one in a notebook and closes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from fmkit.data.schema import landmarks_in_crop, row_to_crop


def show(fig: Figure | None) -> None:
    """Display ``fig`` once and close it; ``None`` (what a ``browse_*`` function returns when it drew widgets) is left.

    A notebook cell that ends in ``plots.show(plots.crop_grid(...))`` shows the figure as one image and
    frees it; a pyplot figure left open would be kept in memory and drawn again by the inline backend at
    the end of the cell.
    """
    if fig is None:
        return
    from IPython.display import display

    display(fig)
    plt.close(fig)


def draw_face(ax: plt.Axes, row: pd.Series, root: str | os.PathLike, annotate: bool = True) -> None:
    """Show one crop of the faces manifest with its MTCNN box and five landmarks drawn."""
    ax.imshow(Image.open(Path(root) / row["crop_path"]))
    ax.set_axis_off()
    if not annotate:
        return
    (x1, y1), (x2, y2) = row_to_crop(row, np.array([[row["x1"], row["y1"]], [row["x2"], row["y2"]]]))
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", lw=1.2))
    pts = landmarks_in_crop(row)
    ax.scatter(pts[:, 0], pts[:, 1], s=8, c="red")


def crop_grid(
    manifest: pd.DataFrame, root: str | os.PathLike, n: int = 12, cols: int = 6, seed: int = 0, annotate: bool = True
) -> Figure:
    """A grid of ``n`` crops, one per video where possible, titled by method and frame."""
    rows = manifest.groupby("video_id", sort=True).head(1)
    if len(rows) < n:
        rows = pd.concat([rows, manifest.drop(rows.index)]).head(n)
    rows = rows.sample(n=min(n, len(rows)), random_state=seed) if len(rows) > n else rows
    cols = max(1, min(cols, len(rows)))
    nrows = max(1, int(np.ceil(len(rows) / cols)))
    fig, axes = plt.subplots(nrows, cols, figsize=(2.0 * cols, 2.2 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (_, row) in zip(axes.ravel(), rows.iterrows()):
        draw_face(ax, row, root, annotate)
        ax.set_title(f"{row['method']} · f{int(row['frame_idx'])}", fontsize=8)
    fig.tight_layout()
    return fig


def video_strip(
    manifest: pd.DataFrame, root: str | os.PathLike, video_id: str, annotate: bool = True, max_frames: int = 16
) -> Figure:
    """All crops of one video in frame order (up to ``max_frames``)."""
    rows = manifest[manifest["video_id"] == video_id].sort_values("frame_idx").head(max_frames)
    fig, axes = plt.subplots(1, max(len(rows), 1), figsize=(1.6 * max(len(rows), 1), 2.0), squeeze=False)
    for ax, (_, row) in zip(axes[0], rows.iterrows()):
        draw_face(ax, row, root, annotate)
        ax.set_title(f"f{int(row['frame_idx'])}", fontsize=8)
    label = "fake" if len(rows) and rows["label"].iloc[0] == 1 else "real"
    fig.suptitle(f"{video_id} ({label})", fontsize=9)
    fig.tight_layout()
    return fig


def browse_videos(manifest: pd.DataFrame, root: str | os.PathLike, interactive: bool = True) -> Figure | None:
    """A dropdown over videos showing each one's crops; a static strip of the first video otherwise."""
    videos: Sequence[str] = sorted(manifest["video_id"].unique())
    if not interactive or not videos:
        return video_strip(manifest, root, videos[0]) if videos else None
    import ipywidgets as widgets
    from IPython.display import display

    def show(video_id: str) -> None:
        display(video_strip(manifest, root, video_id))
        plt.close("all")

    widgets.interact(show, video_id=widgets.Dropdown(options=videos, description="video"))
    return None


def count_table_plot(summary: pd.DataFrame) -> Figure:
    """Bar plot of video counts by split and method (the index summary)."""
    fig, ax = plt.subplots(figsize=(6, 3))
    sns.barplot(summary, x="split", y="videos", hue="method", ax=ax)
    ax.set_title("videos by split and method")
    fig.tight_layout()
    return fig


def correlation_heatmaps(matrices: dict[str, np.ndarray], max_channels: int = 64) -> Figure:
    """Side-by-side |correlation| heatmaps of a layer's first ``max_channels`` channels."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.8), squeeze=False)
    for ax, (title, corr) in zip(axes[0], matrices.items()):
        sns.heatmap(
            np.abs(corr[:max_channels, :max_channels]),
            vmin=0,
            vmax=1,
            cmap="magma",
            ax=ax,
            square=True,
            xticklabels=False,
            yticklabels=False,
            cbar_kws={"shrink": 0.8},
        )
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def image_rows(rows: dict[str, list[np.ndarray]], maps: dict[str, list[np.ndarray]] | None = None) -> Figure:
    """One row of images (H, W, 3 in [0, 1]) per key, each map (H, W) overlaid as a heat layer."""
    ncols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.7 * ncols, 1.8 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(images):
                continue
            ax.imshow(images[c])
            if maps is not None:
                ax.imshow(maps[name][c], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axes[r, 0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def browse_axes(
    images: dict[str, list[np.ndarray]], maps: dict[str, list[np.ndarray]], interactive: bool = True
) -> Figure | None:
    """A dropdown over axes showing each one's top images and maps; the first axis statically otherwise."""
    names = list(images)
    if not interactive or not names:
        return image_rows({names[0]: images[names[0]]}, {names[0]: maps[names[0]]}) if names else None
    import ipywidgets as widgets
    from IPython.display import display

    def show(axis: str) -> None:
        display(image_rows({axis: images[axis]}, {axis: maps[axis]}))
        plt.close("all")

    widgets.interact(show, axis=widgets.Dropdown(options=names, description="axis"))
    return None


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], aucs: dict[str, float] | None = None) -> Figure:
    """ROC curves (fpr, tpr) of several detectors on one plot, labelled with their AUC when given."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    palette = sns.color_palette("tab10", len(curves))
    for color, (name, (fpr, tpr)) in zip(palette, curves.items()):
        label = f"{name} (AUC {aucs[name]:.3f})" if aucs and name in aucs else name
        ax.plot(fpr, tpr, color=color, lw=1.6, label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def clip_strips(rows: dict[str, tuple[np.ndarray, Sequence[int]]]) -> Figure:
    """Face volumes as rows of frames: ``rows[name] = (volume (3, T, H, W) in [0, 1], positions)``
    (a tensor or array), each frame titled by its position in the source clip (for temporal
    dropout: which frames were kept). ``k`` positions for ``T`` frames (k < T, a volume resampled
    back to T as :class:`fmkit.models.td3dcnn.TemporalDropout` does) title frame j with the
    position ⌊j·k/T⌋."""
    rows = {name: (np.asarray(v).transpose(1, 2, 3, 0), list(pos)) for name, (v, pos) in rows.items()}
    rows = {
        name: (frames, [pos[j * len(pos) // len(frames)] for j in range(len(frames))] if pos else pos)
        for name, (frames, pos) in rows.items()
    }
    ncols = max(len(frames) for frames, _ in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.3 * ncols, 1.55 * len(rows)), squeeze=False)
    for r, (name, (frames, positions)) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < len(frames):
                ax.imshow(frames[c])
                ax.set_title(f"t={positions[c]}", fontsize=7)
        axes[r, 0].text(-0.1, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def explanation_overlay(image: np.ndarray, saliency: np.ndarray, title: str) -> Figure:
    """One explanation: the face (H, W, 3 in [0, 1]), its signed map (H, W; red = evidence for the
    decision, blue = against, centred at 0) and the map over the face."""
    limit = float(np.abs(saliency).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.7))
    axes[0].imshow(image)
    axes[0].set_title("face", fontsize=8)
    shown = axes[1].imshow(saliency, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[1].set_title("map", fontsize=8)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(image)
    axes[2].imshow(saliency, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.5)
    axes[2].set_title("overlay", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def score_histogram(probs: Sequence[float], labels: Sequence[int], title: str = "") -> Figure:
    """Histograms of fake probabilities by class (real, fake) on [0, 1]."""
    frame = pd.DataFrame(
        {"P(fake)": np.asarray(probs, float), "class": np.where(np.asarray(labels) == 1, "fake", "real")}
    )
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    sns.histplot(frame, x="P(fake)", hue="class", hue_order=["real", "fake"], bins=20, binrange=(0, 1), ax=ax)
    ax.set(title=title, ylabel="videos")
    fig.tight_layout()
    return fig


def _hwc(image: object) -> np.ndarray:
    """An image (3, H, W) tensor/array or (H, W, 3) array in [0, 1] as an (H, W, 3) float array."""
    a = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float64)
    return np.clip(a.transpose(1, 2, 0) if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3 else a, 0, 1)


def _overlay(ax: plt.Axes, image: np.ndarray, saliency: np.ndarray, alpha: float = 0.6) -> None:
    """The image in grey under the map: a diverging colormap centred at 0 (blue −, red +) for a signed
    map, a sequential one from 0 for a non-negative map; each map scaled to its own largest |value|."""
    ax.imshow(image.mean(-1), cmap="gray", vmin=0, vmax=1)
    s = np.asarray(saliency, dtype=np.float64)
    top = float(np.abs(s).max()) if s.size and np.isfinite(s).all() else 0.0
    top = top if top > 0 else 1.0
    if s.min() >= 0:
        ax.imshow(s, cmap="inferno", vmin=0, vmax=top, alpha=alpha)
    else:
        ax.imshow(s, cmap="RdBu_r", vmin=-top, vmax=top, alpha=alpha)


def explanation_grid(
    images: Sequence[object],
    maps: dict[str, Sequence[np.ndarray]],
    masks: Sequence[object | None] | None = None,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Explanations of several faces side by side: one row per face; columns the image, its ground-truth
    mask (blank without one), then each method's map overlaid on the image in grey.

    ``images``: (3, H, W) tensors/arrays in [0, 1]; ``maps[method][i]``: the (H, W) map of face i;
    ``masks[i]``: (H, W) in [0, 1] or None; ``titles[i]``: the row's title. Signed maps use a
    diverging colormap centred at 0 (red: evidence for the detector's decision, blue: against it),
    non-negative maps (Grad-CAM) a sequential one; each map is scaled to its own largest |value|,
    so colours compare places within a map, not strengths across maps.
    """
    n = len(images)
    cols = 2 + len(maps)
    fig, axes = plt.subplots(max(n, 1), cols, figsize=(1.55 * cols, 1.7 * max(n, 1) + 0.2), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(n):
        image = _hwc(images[i])
        axes[i, 0].imshow(image)
        mask = masks[i] if masks is not None else None
        if mask is not None:
            axes[i, 1].imshow(_hwc(mask), cmap="gray", vmin=0, vmax=1)
        else:
            axes[i, 1].text(0.5, 0.5, "no mask", ha="center", va="center", fontsize=7, transform=axes[i, 1].transAxes)
        for c, method_maps in enumerate(maps.values(), start=2):
            _overlay(axes[i, c], image, method_maps[i])
        if titles is not None:
            axes[i, 0].text(-0.08, 0.5, titles[i], transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=7)
    for c, name in enumerate(["image", "ground-truth mask", *maps]):
        axes[0, c].set_title(name, fontsize=8)
    fig.tight_layout()
    return fig


def neighbour_grid(images: Sequence[object], probs: Sequence[float], relabels: Sequence[int], cols: int = 8) -> Figure:
    """Neighbours of one image (re-label distillation), each titled by the teacher's fake probability
    and its re-label (1, in red: the teacher's label flipped from its label on the image)."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, p, r in zip(axes.ravel(), images, probs, relabels):
        ax.imshow(_hwc(image))
        ax.set_title(f"p(fake) {float(p):.2f}\nre-label {int(r)}", fontsize=7, color="crimson" if r else "black")
    fig.tight_layout()
    return fig


def _explained_row(
    images: Sequence[object],
    masks: Sequence[object | None] | None,
    titles: Sequence[str] | None,
    explain: object,
    face: int,
    sigma: float,
    n_samples: int,
) -> Figure:
    """One face explained by ``explain(image, sigma, n_samples)``, as one row of :func:`explanation_grid`."""
    out = explain(images[face], sigma, n_samples)
    saliency = getattr(out, "map", out)
    title = (titles[face] if titles is not None else f"face {face}").replace("\n", " · ")
    fidelity = getattr(out, "fidelity", None)
    if fidelity is not None:
        title += f"\n{out.n_flipped} of {out.n_samples} neighbours flipped · student fidelity acc {fidelity['acc']:.2f}"
    mask = [masks[face]] if masks is not None else None
    fig = explanation_grid([images[face]], {f"relabel σ={sigma:g}, n={n_samples}": [saliency]}, mask)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def browse_explanations(
    images: Sequence[object],
    explain: object,
    masks: Sequence[object | None] | None = None,
    titles: Sequence[str] | None = None,
    sigma: float = 1.0,
    n_samples: int = 500,
    interactive: bool = True,
) -> Figure | None:
    """An explorer of re-label distillation: pick a face, move ``sigma`` and ``n_samples``; the map is
    recomputed by ``explain(image, sigma, n_samples)`` (an Explanation or an (H, W) map, e.g.
    :func:`fmkit.interpret.explain_eval.relabel_explainer`) when a slider is released. Static
    (``interactive=False``): the first face at the given ``sigma`` and ``n_samples``, one figure."""
    if not len(images):
        return None
    if not interactive:
        return _explained_row(images, masks, titles, explain, 0, sigma, n_samples)
    import ipywidgets as widgets
    from IPython.display import display

    def show(face: int, sigma: float, n_samples: int) -> None:
        display(_explained_row(images, masks, titles, explain, face, sigma, n_samples))
        plt.close("all")

    widgets.interact(
        show,
        face=widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="face", continuous_update=False),
        sigma=widgets.FloatLogSlider(value=sigma, base=2, min=-3, max=3, step=0.25, continuous_update=False),
        n_samples=widgets.IntSlider(
            value=n_samples, min=50, max=max(2000, n_samples), step=50, description="n_samples", continuous_update=False
        ),
    )
    return None


def confusion_matrices(matrices: dict[str, pd.DataFrame]) -> Figure:
    """2 × 2 count tables (rows true class, columns called class) side by side as annotated heatmaps."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(2.6 * len(matrices), 2.5), squeeze=False)
    for ax, (name, table) in zip(axes[0], matrices.items()):
        sns.heatmap(table, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax)
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    return fig
