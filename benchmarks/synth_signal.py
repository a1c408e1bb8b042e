"""Signal of the synthetic fakes against the noise of the real videos (a detectability ceiling).

Synthesizes a dataset into a temporary folder (``fmkit.data.synth.synthesize``), decodes
every fake video and the real video it was made from, and measures, frame by frame and
pixel by pixel, the paired difference |fake − real| in grey levels (0..255, mean over the
three RGB channels) in three regions of the ground-truth blend mask m of that frame:

* ``inside``: m ≥ 0.5 (at least half the pixel comes from the blended source);
* ``seam``: 0 < m < 0.5 (the soft edge of the mask);
* ``outside``: m = 0 (the pixel is untouched before encoding, so what is left is the
  difference between two H.264 encodings of the same content: the compression floor).

and, inside the mask, how much fine detail the fake keeps: ``detail`` is the mean |Laplacian|
(4-neighbour, of the grey image) of the fake over that of the real in the same pixels
(1: all detail kept; a resampled, lower-resolution source gives less).

A frame detector can only use what one frame shows; a video detector can also use what changes
between frames. So two more figures, measured on each video alone (unpaired, as a detector sees it):

* ``per-frame signal``: |detail ratio − 1| per frame (the fake's |Laplacian| inside the mask over
  the real's, same pixels), averaged over frames; its floor is what real frames of one video show:
  |detail of real frame t+1 over frame t − 1| in the same region (pose, zoom and fresh noise change
  it). A fake at the floor differs from its real frame in fine detail no more than the real frames
  differ from each other.
* ``temporal signal``: how far the inner face (m ≥ 0.5) moves against the head (the ring just
  outside the mask) from one frame to the next, in px: |shift(inner) − shift(ring)| between frames
  t and t+1, each shift by phase correlation (``cv2.phaseCorrelate``) of the masked grey frames.
  The real video's floor is the same figure on the real video under the same fake's mask (its head
  moves rigidly, so the two regions move together up to rotation, zoom and noise).

The reference noise levels of the real videos are measured on the same decoded frames:

* ``compression``: |decoded − decoded after one more encode/decode| with synth's own
  encoder settings (libx264, crf 18): how much one encoding moves a pixel;
* ``temporal``: |frame t − frame t+1| of a real video (sensor noise redrawn each frame,
  plus the head motion and light changes between frames).

Rows are given for all identities and separately for the grey LFW faces and the colour
photos (astronaut, hopper), since a colour jitter does nothing to a grey face. The
``signal / floor`` column is the inside difference over the outside one.

    python benchmarks/synth_signal.py [--videos 24 --size 128 --frames 8 --seed 0]

Only imports fmkit, numpy and pandas (and the standard library).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fmkit.data.signal import laplacian, region_jitter
from fmkit.data.synth import METHODS, synthesize
from fmkit.data.video import read_frames, write_video

REGIONS = ("inside", "seam", "outside")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=24, help="real videos (one identity each, up to 96)")
    ap.add_argument("--size", type=int, default=128, help="frame size (px)")
    ap.add_argument("--frames", type=int, default=8, help="frames per video")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="synthesize into this folder (kept) instead of a temp one")
    return ap.parse_args(argv)


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel |a − b| (H, W), mean over RGB, grey levels."""
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=-1)


def measure(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per fake video: mean |fake − real| per mask region; per real video: its noise levels."""
    meta = pd.read_csv(root / "metadata.csv", keep_default_na=False)
    meta["video"] = meta["path"].map(lambda p: Path(p).stem.split("_")[0])  # a fake rNNN_x is made from rNNN
    reals = meta[meta["method"] == "real"].set_index("video")
    fake_rows, real_rows = [], []
    tmp = root / "_reencoded.mp4"
    for video, real in reals.iterrows():
        real_frames = np.stack(read_frames(root / real["path"]))
        colour = "grey (LFW)" if str(real["photo"]).startswith("lfw") else "colour"
        write_video(tmp, list(real_frames), 25)  # synth's encoder settings: libx264, crf 18
        again = np.stack(read_frames(tmp))
        real_rows.append(
            {
                "video": video,
                "group": colour,
                "compression": float(_abs_diff(real_frames, again).mean()),
                "temporal": float(_abs_diff(real_frames[1:], real_frames[:-1]).mean())
                if len(real_frames) > 1
                else np.nan,
            }
        )
        for _, fake in meta[(meta["video"] == video) & (meta["label"] == 1)].iterrows():
            fake_frames = np.stack(read_frames(root / fake["path"]))
            with np.load((root / "masks" / fake["path"]).with_suffix(".npz")) as f:
                masks = f["masks"].astype(np.float32) / 255.0
            n = min(len(fake_frames), len(real_frames), len(masks))
            diff = _abs_diff(fake_frames[:n], real_frames[:n])
            m = masks[:n]
            regions = {"inside": m >= 0.5, "seam": (m > 0) & (m < 0.5), "outside": m == 0}
            row = {
                "method": fake["method"],
                "video": video,
                "group": colour,
                "mask_area": float((m >= 0.5).mean()),
            }
            for name, sel in regions.items():
                row[name] = float(diff[sel].mean()) if sel.any() else np.nan
            inside = regions["inside"]
            lap_real = laplacian(real_frames[:n])[inside].mean() if inside.any() else np.nan
            row["detail"] = float(laplacian(fake_frames[:n])[inside].mean() / lap_real) if inside.any() else np.nan
            # per frame: |detail of the fake / the real's − 1|, same pixels; its floor, what real frames of
            # one video show: |detail of real frame t+1 / frame t's − 1| (pose, zoom and noise change it)
            lap_r, lap_f = laplacian(real_frames[:n]), laplacian(fake_frames[:n])
            ratio = [
                lap_f[t][m[t] >= 0.5].mean() / lap_r[t][m[t] >= 0.5].mean() for t in range(n) if (m[t] >= 0.5).any()
            ]
            row["detail_change"] = float(np.mean(np.abs(np.asarray(ratio) - 1)))
            steps = [lap_r[t + 1][sel[t + 1]].mean() / lap_r[t][sel[t + 1]].mean() for t in range(n - 1)]
            row["detail_change_floor"] = float(np.mean(np.abs(np.asarray(steps) - 1)))
            row["jitter"] = region_jitter(fake_frames[:n], m)
            row["jitter_floor"] = region_jitter(real_frames[:n], m)
            fake_rows.append(row)
    tmp.unlink(missing_ok=True)
    return pd.DataFrame(fake_rows), pd.DataFrame(real_rows)


def table(fakes: pd.DataFrame, reals: pd.DataFrame) -> str:
    """The markdown table: one row per method × identity group, then the real videos' noise."""
    lines = [
        "| fakes | videos | inside (m ≥ 0.5) | seam (0 < m < 0.5) | outside (m = 0) | signal / floor | "
        "detail kept inside | mask area (m ≥ 0.5) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def spread(values: pd.Series, digits: int = 1) -> str:
        values = values.dropna()
        lo, hi = values.quantile(0.1), values.quantile(0.9)
        return f"{values.mean():.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"

    for method in [m for m in METHODS if m in set(fakes["method"])]:
        for group in ("all", "colour", "grey (LFW)"):
            sel = fakes[(fakes["method"] == method) & ((fakes["group"] == group) | (group == "all"))]
            if not len(sel):
                continue
            ratio = sel["inside"].mean() / sel["outside"].mean()
            lines.append(
                f"| {method}, {group} | {len(sel)} | {spread(sel['inside'])} | {spread(sel['seam'])} | "
                f"{spread(sel['outside'])} | {ratio:.0f}× | {spread(sel['detail'], 2)} | "
                f"{sel['mask_area'].mean():.0%} |"
            )
    lines += [
        "",
        "| fakes | per-frame signal: \\|detail fake / real − 1\\| | its floor: \\|real frame t+1 / t − 1\\| | "
        "temporal signal: inner-vs-head jitter (px/frame) | its floor: the real video | jitter / floor |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method in [m for m in METHODS if m in set(fakes["method"])]:
        sel = fakes[fakes["method"] == method]
        lines.append(
            f"| {method} | {spread(sel['detail_change'], 3)} | {spread(sel['detail_change_floor'], 3)} | "
            f"{spread(sel['jitter'], 2)} | {spread(sel['jitter_floor'], 2)} | "
            f"{sel['jitter'].mean() / sel['jitter_floor'].mean():.1f}× |"
        )
    lines += [
        "",
        "| real videos | videos | compression: \\|decoded − re-encoded\\| | temporal: \\|frame t − frame t+1\\| |",
        "| --- | --- | --- | --- |",
    ]
    for group in ("all", "colour", "grey (LFW)"):
        sel = reals[(reals["group"] == group) | (group == "all")]
        if len(sel):
            lines.append(f"| {group} | {len(sel)} | {spread(sel['compression'])} | {spread(sel['temporal'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "data"
        synthesize(
            root,
            videos=args.videos,
            identities=min(args.videos, 96),
            frames=args.frames,
            size=args.size,
            seed=args.seed,
            progress=False,
        )
        fakes, reals = measure(root)
        config = json.loads((root / "synth.json").read_text())["config"]
    command = "python benchmarks/synth_signal.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(
        f"`{command.strip()}` — arguments: videos={args.videos}, size={args.size}, frames={args.frames}, "
        f"seed={args.seed}; synth config {json.dumps(config)}"
    )
    print()
    print(
        "Mean |fake − real| in grey levels (0..255, mean over RGB) per fake video, then averaged over videos "
        "(10th–90th percentile over videos in brackets); m is the ground-truth blend mask."
    )
    print()
    print(table(fakes, reals))
    print()
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
