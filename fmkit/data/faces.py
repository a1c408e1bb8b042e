"""Face detection (facenet-pytorch MTCNN, weights shipped in its wheel) and main-face tracking.

:class:`FaceDetector` takes frames of one size, (H, W, 3) ``uint8`` RGB, and returns the
faces of each frame as :class:`Face` objects: a box ``(x1, y1, x2, y2)`` and five
landmarks ``(x, y)`` in frame pixels (MTCNN's order: left eye, right eye, nose, left mouth
corner, right mouth corner) and MTCNN's probability in [0, 1]. :func:`track_main_face`
keeps one face per frame over a video. The square crops around the tracked face are cut
by the crop-geometry helpers of :mod:`fmkit.data.schema`.

Detection speed and the reason for one torch thread per process on CPU are measured in
``docs/measurements.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from fmkit.data.schema import crop_square, square_region


@dataclass(frozen=True)
class Face:
    """One detected face: box (4,), probability, landmarks (5, 2), all in frame pixels."""

    box: np.ndarray
    prob: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(x2 - x1, 0) * max(y2 - y1, 0))


class FaceDetector:
    """MTCNN run batched over frames of one size.

    ``max_side`` (px) downsizes large frames for detection only; boxes and landmarks
    come back in the original frame's pixels. ``cpu_threads`` torch threads run MTCNN on
    the CPU (default 1): its many small convolutions gain little from more threads and
    lose much when the cores are shared (figures in docs/measurements.md); scale out
    with processes instead.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        min_face_size: int = 20,
        max_side: int = 640,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        cpu_threads: int | None = 1,
    ) -> None:
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(
            keep_all=True,
            device=torch.device(device),
            min_face_size=min_face_size,
            thresholds=list(thresholds),
            post_process=False,
        )
        self.batch_size = batch_size
        self.max_side = max_side
        self.cpu_threads = cpu_threads if torch.device(device).type == "cpu" else None

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces of each frame (H, W, 3 uint8 RGB, all the same size), best first."""
        if not frames:
            return []
        h, w = frames[0].shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            size = (int(round(w * scale)), int(round(h * scale)))
            frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        threads = torch.get_num_threads()
        if self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        try:
            return self._detect_batches(frames, scale)
        finally:
            torch.set_num_threads(threads)

    def _detect_batches(self, frames: Sequence[np.ndarray], scale: float) -> list[list[Face]]:
        out: list[list[Face]] = []
        for start in range(0, len(frames), self.batch_size):
            batch = np.stack(frames[start : start + self.batch_size])
            with torch.inference_mode():
                boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            for b, p, pts in zip(boxes, probs, points):
                if b is None:
                    out.append([])
                    continue
                out.append(
                    [
                        Face(np.asarray(bb, np.float32) / scale, float(pp), np.asarray(ll, np.float32) / scale)
                        for bb, pp, ll in zip(b, p, pts)
                    ]
                )
        return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0) * max(y2 - y1, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_main_face(detections: Sequence[Sequence[Face]], min_iou: float = 0.2) -> list[Face | None]:
    """Pick the main face of each frame: the largest at first, then the one that overlaps it.

    The face of largest area starts the track; each later frame takes the detection with
    the highest IoU against the last tracked box (at least ``min_iou``), else the largest
    one, so a passer-by does not steal the track. Frames without faces give None.
    """
    chosen: list[Face | None] = []
    last: Face | None = None
    for faces in detections:
        if not faces:
            chosen.append(None)
            continue
        pick = max(faces, key=lambda f: f.area)
        if last is not None:
            best = max(faces, key=lambda f: _iou(f.box, last.box))
            if _iou(best.box, last.box) >= min_iou:
                pick = best
        chosen.append(pick)
        last = pick
    return chosen


def face_crops(
    image: np.ndarray, size: int, margin: float, detector: FaceDetector | None = None
) -> list[tuple[np.ndarray, Face]]:
    """Every face of one RGB image (H, W, 3 uint8), largest first, cropped as ``fmkit preprocess``
    crops a frame: the square of side ``margin`` × the box's longer side around the box centre
    (zero-padded beyond the image), resized to ``size`` × ``size``. Returns (crop, face) pairs;
    an empty list when MTCNN finds no face."""
    faces = (detector or FaceDetector()).detect([image])[0]
    faces = sorted(faces, key=lambda f: f.area, reverse=True)
    return [(crop_square(image, square_region(f.box, margin), size), f) for f in faces]
