"""What a detector can see in a video: per-frame fine detail and frame-to-frame motion of the face's inner region.

Used by ``benchmarks/synth_signal.py`` and the tests of the synthetic fakes (:mod:`fmkit.data.synth`).
"""

from __future__ import annotations

import cv2
import numpy as np


def laplacian(frames: np.ndarray) -> np.ndarray:
    """|4-neighbour Laplacian| (T, H, W) of the grey frames (edges replicated)."""
    g = np.pad(frames.astype(np.float32).mean(axis=-1), ((0, 0), (1, 1), (1, 1)), mode="edge")
    return np.abs(4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:])


def region_jitter(frames: np.ndarray, masks: np.ndarray) -> float:
    """How far the inner face moves against the head between frames, px: mean over t of
    |shift(inner) − shift(ring)| from frame t to t+1.

    ``frames`` (T, H, W, 3), ``masks`` (T, H, W) in [0, 1]; inner = m ≥ 0.5, ring = a band of
    about 0.3 × the inner region's width just outside m > 0 (the head around the face). Each
    shift is ``cv2.phaseCorrelate`` of the grey frames under the (slightly blurred) region. A
    rigidly moving head gives about 0 (up to rotation, zoom and noise); NaN with < 2 frames.
    """
    grey = frames.astype(np.float32).mean(axis=-1)
    out = []
    for t in range(len(grey) - 1):
        inner = (masks[t] >= 0.5).astype(np.float32)
        if inner.sum() < 16:
            continue
        width = max(3, int(0.3 * np.sqrt(inner.sum())))
        around = cv2.dilate((masks[t] > 0).astype(np.uint8), np.ones((width, width), np.uint8)).astype(np.float32)
        ring = around - (masks[t] > 0)
        shifts = []
        for region in (inner, ring):
            window = cv2.GaussianBlur(region, (0, 0), 1.0)
            (dx, dy), _ = cv2.phaseCorrelate(grey[t] * window, grey[t + 1] * window)
            shifts.append(np.array([dx, dy]))
        out.append(float(np.linalg.norm(shifts[0] - shifts[1])))
    return float(np.mean(out)) if out else np.nan
