"""Preprocessing speed on synthetic data: decode, detect, and the whole pipeline.

Prints decode frames/s, detection frames/s, whole-pipeline frames/s, and the ratio
whole-pipeline time / (decode + detect) time. Target: ≤ 1.3 (cropping, saving and
bookkeeping add at most 30 %). All three are measured in the same run on the same
videos and sampled frames, one process, so the ratio is robust to a noisy machine.

    python benchmarks/preprocess.py [--videos 6 --frames 16 --size 256 --sample 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import synth_index

from fmkit.config import PREPROCESS, resolve
from fmkit.data.faces import FaceDetector
from fmkit.data.preprocess import preprocess
from fmkit.data.video import probe, read_frames, sample_indices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6, help="real videos to synthesize")
    ap.add_argument("--frames", type=int, default=16, help="frames per synthetic video")
    ap.add_argument("--size", type=int, default=256, help="synthetic frame size (px)")
    ap.add_argument("--sample", type=int, default=16, help="frames sampled per video by preprocess")
    ap.add_argument("--crop", type=int, default=224, help="crop size (px)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (the best is kept)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index = synth_index(tmp / "data", videos=args.videos, frames=args.frames, size=args.size, seed=0)
        paths = [tmp / "data" / p for p in index["path"]]
        cfg = resolve(PREPROCESS, {"frames": args.sample, "size": args.crop})
        detector = FaceDetector(cfg["device"], cfg["batch_size"], cfg["min_face_size"])

        def decode() -> list:
            return [read_frames(p, sample_indices(probe(p).num_frames, args.sample)) for p in paths]

        def best(fn) -> float:
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return min(times)

        decoded = decode()
        n = sum(len(f) for f in decoded)
        detector.detect(decoded[0])  # warm-up
        t_decode = best(decode)
        t_detect = best(lambda: [detector.detect(f) for f in decoded])
        runs = iter(range(args.repeats))
        t_whole = best(
            lambda: preprocess(index, tmp / f"faces{next(runs)}", root=tmp / "data", cfg=cfg, progress=False)
        )
    print(f"videos: {len(paths)}  sampled frames: {n}  frame size: {args.size}px  crop: {args.crop}px")
    print(f"decode            {n / t_decode:8.1f} frames/s")
    print(f"detect (MTCNN)    {n / t_detect:8.1f} frames/s")
    print(f"whole pipeline    {n / t_whole:8.1f} frames/s")
    print(f"ratio whole / (decode + detect) = {t_whole / (t_decode + t_detect):.2f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
