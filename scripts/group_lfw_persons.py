"""Group the photos ``fmkit synth`` uses into persons: dlib's face descriptor proposes, an eye check decides.

Not part of the package (nothing imports it): it needs dlib and its models, which fmkit does not depend on.
Run it from the repository root in a scratch venv outside the project (about 3 minutes on 2 CPU cores)::

    python3 -m venv /tmp/dlibenv
    /tmp/dlibenv/bin/pip install dlib-bin face-recognition-models numpy scipy pillow scikit-image \
        opencv-python-headless matplotlib
    /tmp/dlibenv/bin/python scripts/group_lfw_persons.py --out /tmp/persons

Photos: ``astronaut`` (skimage), ``hopper`` (matplotlib's grace_hopper.jpg) and ``lfw000``..``lfw099``
(the faces of ``skimage.data.lfw_subset()``, 25 × 25 grey, upscaled to 150 px with cubic interpolation).
Each gets dlib's 128-d ResNet descriptor (face box from dlib's HOG detector, else the whole crop; aligned by
the 5-point shape predictor; averaged over ``--jitters``); photos are joined by average-linkage clustering of
the euclidean distances at ``--threshold``.

Writes to ``--out``: ``proposed_persons.csv`` (the descriptor grouping), ``persons.csv`` (after the eye check
in ``EYE_KEPT`` / ``EYE_MERGES``: the committed ``fmkit/data/persons/lfw_subset_persons.csv``),
``descriptors.npy`` and ``distances.npy`` (rows in CSV order), and contact sheets: ``sheet_all.png`` (every
photo with its proposed and final person), ``sheet_groups.png`` (the proposed multi-photo groups),
``sheet_final.png`` (the final ones) and ``sheet_nearest.png`` (the closest pairs of different proposed persons).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import dlib
import face_recognition_models as frm
import matplotlib
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LFW_FACES = 100
LFW_SIDE = 150
#: The eye check (see fmkit/data/persons/README.md). Groups of the descriptor proposal the eye confirmed (each
#: must lie inside one proposed group); every other proposed group was split into single photos.
EYE_KEPT: list[tuple[str, ...]] = [
    ("lfw000", "lfw036", "lfw073", "lfw090"),  # George W. Bush
    ("lfw003", "lfw097"),  # probably Gerhard Schröder: same hairline, brows, mouth and folds
]
#: Photos joined by eye that the descriptor left apart.
EYE_MERGES: list[tuple[str, ...]] = []
#: Pairs the eye could not tell apart at 25 px: joined as a precaution, since a wrong merge costs one split
#: unit while a wrong split would put one person on both sides of a split.
PRECAUTION: list[tuple[str, ...]] = [
    ("lfw031", "lfw075"),
    ("lfw046", "lfw053"),
    ("lfw054", "lfw055"),
    ("lfw058", "lfw065", "lfw089"),
    ("lfw077", "lfw079"),
]


def load_photos() -> dict[str, np.ndarray]:
    """Name → RGB uint8 image, in the order ``fmkit synth`` takes identities."""
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    photos = {"astronaut": data.astronaut()}
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photos["hopper"] = np.asarray(Image.open(f).convert("RGB"))
    lfw = data.lfw_subset()
    for i in range(LFW_FACES):
        gray = np.round(lfw[i] * 255).astype(np.uint8)
        big = cv2.resize(gray, (LFW_SIDE, LFW_SIDE), interpolation=cv2.INTER_CUBIC)
        photos[f"lfw{i:03d}"] = np.repeat(big[..., None], 3, axis=2)
    return photos


def face_rect(detector, img: np.ndarray, name: str) -> tuple[dlib.rectangle, str]:
    """The face box: HOG detection on the image (LFW crops padded so the detector sees the whole face),
    else the whole LFW crop."""
    pad = LFW_SIDE // 2 if name.startswith("lfw") else 0
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else img
    dets = detector(padded, 1)
    if dets:
        d = max(dets, key=lambda r: r.area())
        return dlib.rectangle(d.left() - pad, d.top() - pad, d.right() - pad, d.bottom() - pad), "hog"
    h, w = img.shape[:2]
    return dlib.rectangle(0, 0, w - 1, h - 1), "whole"


def descriptors(photos: dict[str, np.ndarray], jitters: int) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """(N, 128) descriptors, how each face box was found, and each face for the sheets (150 × 150 RGB)."""
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    out, how, faces = [], [], {}
    for name, img in photos.items():
        rect, found = face_rect(detector, img, name)
        landmarks = shape(img, rect)
        out.append(np.array(net.compute_face_descriptor(img, landmarks, jitters, 0.25)))
        # LFW crops as they are (the eye judges them better unwarped); the big photos as dlib's aligned chip
        faces[name] = img if name.startswith("lfw") else dlib.get_face_chip(img, landmarks, size=LFW_SIDE, padding=0.3)
        how.append(found)
    return np.stack(out), how, faces


def cluster(dist: np.ndarray, threshold: float) -> np.ndarray:
    """Average-linkage cluster label of each photo (groups whose mean distance is below ``threshold``)."""
    return fcluster(linkage(squareform(dist, checks=False), method="average"), t=threshold, criterion="distance")


def person_ids(names: list[str], labels: np.ndarray) -> dict[str, str]:
    """Stable ids ``p000``.. numbered in the order of each person's first photo."""
    ids: dict[int, str] = {}
    for lab in labels:
        ids.setdefault(int(lab), f"p{len(ids):03d}")
    return {n: ids[int(lab)] for n, lab in zip(names, labels)}


def apply_eye(proposed: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Person and ``how`` of each photo after the eye check: ``EYE_KEPT``, ``EYE_MERGES`` and ``PRECAUTION``,
    all else single."""
    group = {n: n for n in proposed}
    how = dict.fromkeys(proposed, "single")
    for kept in EYE_KEPT:
        if len({proposed[n] for n in kept}) != 1:
            print(f"warning: {kept} is no longer one proposed group (descriptor results changed?)")
        for n in kept:
            group[n], how[n] = kept[0], "descriptor+eye"
    for merged, label in [(m, "eye") for m in EYE_MERGES] + [(m, "precaution") for m in PRECAUTION]:
        for n in merged:
            group[n], how[n] = merged[0], label
    ids: dict[str, int] = {}
    labels = np.array([ids.setdefault(group[n], len(ids)) for n in proposed])
    return person_ids(list(proposed), labels), how


def write_csv(path: Path, persons: dict[str, str], how: dict[str, str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["photo", "person", "how"])
        for n, p in persons.items():
            w.writerow([n, p, how[n]])


def sheet_all(path: Path, faces: dict[str, np.ndarray], proposed: dict[str, str], final: dict[str, str]) -> None:
    """Every photo, titled with its name and proposed → final person (red: in a multi-photo person)."""
    names = list(faces)
    counts = {p: list(final.values()).count(p) for p in set(final.values())}
    pcounts = {p: list(proposed.values()).count(p) for p in set(proposed.values())}
    cols = 12
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.85))
    for ax in axes.flat:
        ax.axis("off")
    for ax, n in zip(axes.flat, names):
        ax.imshow(faces[n])
        multi = counts[final[n]] > 1 or pcounts[proposed[n]] > 1
        ax.set_title(f"{n}\n{proposed[n]} → {final[n]}", fontsize=8, color="red" if multi else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def sheet_rows(path: Path, rows: list[tuple[str, list[str]]], faces: dict[str, np.ndarray]) -> None:
    """One row per entry: a label and its photos side by side."""
    if not rows:
        return
    cols = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 1.7 + 1, len(rows) * 1.9), squeeze=False)
    for (label, names), row in zip(rows, axes):
        for ax in row:
            ax.axis("off")
        for ax, n in zip(row, names):
            ax.imshow(faces[n])
            ax.set_title(n, fontsize=9)
        row[0].text(-0.1, 0.5, label, transform=row[0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def sheet_pairs(path: Path, pairs: list[tuple[str, list[str]]], faces: dict[str, np.ndarray], per_row: int = 5) -> None:
    """Pairs of photos in a grid, ``per_row`` pairs a row, each titled with its label."""
    rows = -(-len(pairs) // per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(2 * per_row * 1.5, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (label, (a, b)) in enumerate(pairs):
        r, c = divmod(k, per_row)
        for j, n in enumerate((a, b)):
            ax = axes[r, 2 * c + j]
            ax.imshow(faces[n])
            ax.set_title(f"{n}" + (f"  {label}" if j == 0 else ""), fontsize=8, loc="left" if j == 0 else "center")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def groups_of(persons: dict[str, str]) -> dict[str, list[str]]:
    """Person → its photos, for persons with more than one photo."""
    members: dict[str, list[str]] = {}
    for n, p in persons.items():
        members.setdefault(p, []).append(n)
    return {p: g for p, g in members.items() if len(g) > 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/persons"))
    ap.add_argument("--threshold", type=float, default=0.55, help="average-linkage distance cut")
    ap.add_argument("--jitters", type=int, default=10, help="dlib descriptor jitters averaged per photo")
    ap.add_argument("--nearest", type=int, default=30, help="closest different-person pairs on sheet_nearest.png")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    photos = load_photos()
    names = list(photos)
    desc, found, faces = descriptors(photos, args.jitters)
    print(f"dlib {dlib.__version__}; face boxes: " + ", ".join(f"{k} {found.count(k)}" for k in sorted(set(found))))
    print("whole-crop boxes:", [n for n, f in zip(names, found) if f == "whole"])
    dist = np.linalg.norm(desc[:, None] - desc[None], axis=-1)
    np.save(args.out / "descriptors.npy", desc)
    np.save(args.out / "distances.npy", dist)
    iu = np.triu_indices(len(names), 1)
    pair = dist[iu]
    qs = (0, 1, 5, 25, 50, 75, 95, 100)
    print(f"pairwise distances ({pair.size} pairs): " + ", ".join(f"p{q}={np.percentile(pair, q):.3f}" for q in qs))
    hist, edges = np.histogram(pair, bins=np.arange(0.3, 1.05, 0.05))
    for h, e in zip(hist, edges):
        print(f"  {e:.2f}-{e + 0.05:.2f} {h:5d}")

    proposed = person_ids(names, cluster(dist, args.threshold))
    groups = groups_of(proposed)
    write_csv(
        args.out / "proposed_persons.csv",
        proposed,
        {n: "descriptor" if proposed[n] in groups else "single" for n in names},
    )
    print(f"threshold {args.threshold}: {len(set(proposed.values()))} persons, {len(groups)} multi-photo groups")
    idx = {n: i for i, n in enumerate(names)}
    rows = []
    for p, g in groups.items():
        worst = max(dist[idx[a], idx[b]] for k, a in enumerate(g) for b in g[k + 1 :])
        print(f"  {p}: {' '.join(g)} (max distance {worst:.3f})")
        rows.append((f"{p}\nmax {worst:.2f}", g))
    sheet_rows(args.out / "sheet_groups.png", rows, faces)

    near = []
    for k in np.argsort(pair):
        a, b = names[iu[0][k]], names[iu[1][k]]
        if proposed[a] != proposed[b]:
            near.append((f"{pair[k]:.3f}", [a, b]))
        if len(near) == args.nearest:
            break
    print("closest pairs of different proposed persons:", ", ".join(f"{a}-{b} {d}" for d, (a, b) in near))
    sheet_pairs(args.out / "sheet_nearest.png", near, faces)

    final, how = apply_eye(proposed)
    write_csv(args.out / "persons.csv", final, how)
    final_groups = groups_of(final)
    sheet_rows(args.out / "sheet_final.png", [(p, g) for p, g in final_groups.items()], faces)
    sheet_all(args.out / "sheet_all.png", faces, proposed, final)
    print(
        f"after the eye check: {len(set(final.values()))} persons, groups "
        + "; ".join(f"{p}: {' '.join(g)}" for p, g in final_groups.items())
    )
    print(f"wrote {args.out / 'persons.csv'} and the sheets in {args.out}")


if __name__ == "__main__":
    main()
