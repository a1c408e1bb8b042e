"""Face detection (facenet-pytorch MTCNN, weights shipped in its wheel) and main-face tracking.

:class:`FaceDetector` takes frames of one size, (H, W, 3) ``uint8`` RGB, and returns the
faces of each frame as :class:`Face` objects: a box ``(x1, y1, x2, y2)`` and five
landmarks ``(x, y)`` in frame pixels (MTCNN's order: left eye, right eye, nose, left mouth
corner, right mouth corner) and MTCNN's probability in [0, 1]. :func:`track_main_face`
keeps one face per frame over a video. The square crops around the tracked face are cut
by the crop-geometry helpers of :mod:`fmkit.data.schema`.

Two ways to find the main face of a video's frames:

- **whole frames** (``detection: full``): MTCNN on every whole frame, then
  :func:`track_main_face`; the reference, and what photos and ``fmkit predict`` use;
- **tracking** (:class:`FaceTracker`, ``detection: track``, the preprocessing default):
  whole-frame detection only on keyframes (every k-th frame, at a reduced size where the
  smallest face sought, a fraction of the frame's shorter side, spans
  :data:`KEY_MIN_FACE_PX` px), the main face tracked over them, its box interpolated in
  between, and every frame's face detected in a square region around that predicted box
  (:data:`REGION_CONTEXT` × its side, resized to :data:`REGION_SIZE` px). A frame whose
  region holds no face overlapping the prediction (the face moved fast or jumped) becomes
  a keyframe and is searched again around its own box; a frame still without a face there,
  like a keyframe on which the reduced size finds nothing, is detected the first way, so
  tracking loses no face that whole-frame detection finds. Keyframes and regions run
  MTCNN's three stages with a cap on the candidates each stage passes on
  (:meth:`FaceDetector.detect_capped`): on a whole frame MTCNN spends most of its time on
  hundreds of candidates, few of which are faces.

Tracking is several times faster than whole-frame detection, and its boxes agree with it
to a mean IoU of about 0.92, close to the 0.93-0.94 that MTCNN itself shows between two
equally valid runs on one frame (a shifted region, another smallest face size). The crops
keep their geometry: :func:`fmkit.data.schema.square_region` around the box either way.
Figures, the benchmark (``benchmarks/preprocess.py``) and the reason for one torch thread
per process on CPU are in ``docs/measurements.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from fmkit.data.schema import crop_square, square_region

#: Keyframes are detected at a size where the smallest face sought spans this many px.
KEY_MIN_FACE_PX = 24
#: The region searched around a predicted box: a square of this × the box's longer side …
REGION_CONTEXT = 2.0
#: … resized to this many px, so that the predicted face spans REGION_SIZE / REGION_CONTEXT px.
REGION_SIZE = 160
#: Faces sought in a region: from this fraction of the predicted face's side up.
REGION_MIN_FACE = 0.5
#: Candidates kept per image after MTCNN's first (P-Net) and second (R-Net) stage, best first:
#: on keyframes (several faces may be there) and in regions (one face is expected).
KEY_CANDIDATES = (32, 8)
REGION_CANDIDATES = (8, 2)


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

    def moved(self, scale: float, x0: float = 0.0, y0: float = 0.0) -> Face:
        """The face with its coordinates multiplied by ``scale`` then shifted by (x0, y0) px."""
        return Face(
            self.box * np.float32(scale) + np.float32([x0, y0, x0, y0]),
            self.prob,
            self.landmarks * np.float32(scale) + np.float32([x0, y0]),
        )


class FaceDetector:
    """MTCNN run batched over frames of one size.

    ``max_side`` (px) downsizes large frames for detection only; boxes and landmarks
    come back in the original frame's pixels. ``cpu_threads`` torch threads run MTCNN on
    the CPU (default 1): its many small convolutions gain little from more threads and
    lose much when the cores are shared (figures in docs/measurements.md); scale out
    with processes instead. On CUDA every batch runs on the device.
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
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.thresholds = tuple(thresholds)
        self.cpu_threads = cpu_threads if torch.device(device).type == "cpu" else None

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        threads = torch.get_num_threads()
        if self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(threads)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces of each frame (H, W, 3 uint8 RGB, all the same size), largest first: MTCNN on the whole frame."""
        if not frames:
            return []
        h, w = frames[0].shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            size = (int(round(w * scale)), int(round(h * scale)))
            frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        with self._threads():
            return self._detect_batches(frames, scale)

    def _detect_batches(self, frames: Sequence[np.ndarray], scale: float) -> list[list[Face]]:
        out: list[list[Face]] = []
        for start in range(0, len(frames), self.batch_size):
            batch = np.stack(frames[start : start + self.batch_size])
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

    def detect_capped(self, images: Sequence[np.ndarray], min_face: float, keep: tuple[int, int]) -> list[list[Face]]:
        """Faces of each image (H, W, 3 uint8 RGB, all the same size; image pixels), largest first.

        MTCNN's three stages as :meth:`detect` runs them, on faces of at least ``min_face``
        px, except that only the ``keep[0]`` best candidates of each image after the first
        stage and the ``keep[1]`` best after the second go on to the next stage.
        """
        out: list[list[Face]] = []
        with self._threads():
            for start in range(0, len(images), self.batch_size):
                out += _capped_cascade(
                    self.mtcnn, images[start : start + self.batch_size], min_face, keep, self.thresholds
                )
        return out


def _best_per_image(scores: torch.Tensor, image: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest ``scores`` of each ``image`` index (in no particular order)."""
    order = torch.argsort(scores, descending=True)
    order = order[torch.argsort(image[order], stable=True)]
    grouped = image[order]
    rank = torch.arange(len(order), device=order.device) - torch.searchsorted(grouped, grouped)
    return order[rank < k]


def _to_net(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images (N, H, W, 3) → MTCNN's input (N, 3, H, W) in [-1, 1] on ``device``, channels-last
    (2-3× faster on CPU for its small convolutions and poolings)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    return ((x - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def _stage_input(
    frames: Sequence[np.ndarray], boxes: torch.Tensor, image: np.ndarray, size: int, device: torch.device
) -> torch.Tensor:
    """The candidates' boxes cut from their frames (clipped to the frame as MTCNN clips them), resized to
    ``size`` px (OpenCV, area averaging), as MTCNN's input."""
    from facenet_pytorch.models.utils.detect_face import pad

    h, w = frames[0].shape[:2]
    y, ey, x, ex = pad(boxes, w, h)
    crops = np.zeros((len(y), size, size, 3), np.uint8)  # a box wholly outside the frame stays black
    for k in range(len(y)):
        cut = frames[image[k]][y[k] - 1 : ey[k], x[k] - 1 : ex[k]]
        if cut.size:
            crops[k] = cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA)
    return _to_net(crops, device)


def _capped_cascade(
    mtcnn, frames: Sequence[np.ndarray], min_face: float, keep: tuple[int, int], thresholds: Sequence[float]
) -> list[list[Face]]:
    """facenet-pytorch's ``detect_face`` (same networks, scales, thresholds and non-maximum suppression) with
    the candidates of each image capped after the first and second stage (:meth:`FaceDetector.detect_capped`).

    The networks run on MTCNN's device; the image pyramid and the candidates' cut-outs are resampled
    on the CPU by OpenCV from the uint8 frames, much faster than torch's float resampling there.
    """
    from facenet_pytorch.models.utils.detect_face import (
        batched_nms,
        batched_nms_numpy,
        bbreg,
        generateBoundingBox,
        rerec,
    )

    device = next(mtcnn.pnet.parameters()).device
    n, (h, w) = len(frames), frames[0].shape[:2]
    # stage 1: P-Net over the image pyramid (faces from min_face px up)
    scale, side, scales = 12.0 / min_face, min(h, w) * 12.0 / min_face, []
    while side >= 12:
        scales.append(scale)
        scale, side = scale * mtcnn.factor, side * mtcnn.factor
    boxes, image = [torch.zeros(0, 9, device=device)], [torch.zeros(0, dtype=torch.long, device=device)]
    for scale in scales:
        size = (int(w * scale + 1), int(h * scale + 1))
        level = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        reg, probs = mtcnn.pnet(_to_net(level, device))
        b, i = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
        pick = batched_nms(b[:, :4], b[:, 4], i, 0.5)
        boxes.append(b[pick])
        image.append(i[pick])
    boxes, image = torch.cat(boxes), torch.cat(image)
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image, 0.7)
    pick = pick[_best_per_image(boxes[pick, 4], image[pick], keep[0])]
    boxes, image = boxes[pick], image[pick]
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * width,
            boxes[:, 1] + boxes[:, 6] * height,
            boxes[:, 2] + boxes[:, 7] * width,
            boxes[:, 3] + boxes[:, 8] * height,
            boxes[:, 4],
        ],
        dim=1,
    )
    boxes = rerec(boxes)
    # stage 2: R-Net on 24 px cut-outs of the candidates
    if len(boxes):
        reg, probs = mtcnn.rnet(_stage_input(frames, boxes, image.cpu().numpy(), 24, device))
        ok = probs[:, 1] > thresholds[1]
        boxes, image, reg = torch.cat([boxes[ok, :4], probs[ok, 1:2]], dim=1), image[ok], reg[ok]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image, 0.7)
        pick = pick[_best_per_image(boxes[pick, 4], image[pick], keep[1])]
        boxes = rerec(bbreg(boxes[pick], reg[pick]))
        image = image[pick]
    # stage 3: O-Net on 48 px cut-outs: final boxes, probabilities and landmarks
    points = torch.zeros(0, 5, 2, device=device)
    if len(boxes):
        reg, marks, probs = mtcnn.onet(_stage_input(frames, boxes, image.cpu().numpy(), 48, device))
        ok = probs[:, 1] > thresholds[2]
        boxes, image, reg, marks = torch.cat([boxes[ok, :4], probs[ok, 1:2]], dim=1), image[ok], reg[ok], marks[ok]
        width = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
        height = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
        points = torch.stack(
            [width * marks[:, :5] + boxes[:, 0:1] - 1, height * marks[:, 5:] + boxes[:, 1:2] - 1], dim=2
        )
        boxes = bbreg(boxes, reg)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image, 0.7, "Min")
        boxes, image, points = boxes[pick], image[pick], points[pick]
    boxes_np, points_np, image_np = boxes.cpu().numpy(), points.cpu().numpy(), image.cpu().numpy()
    out: list[list[Face]] = []
    for k in range(n):
        faces = [
            Face(b[:4].astype(np.float32), float(b[4]), p.astype(np.float32))
            for b, p in zip(boxes_np[image_np == k], points_np[image_np == k])
        ]
        out.append(sorted(faces, key=lambda f: f.area, reverse=True))
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2), px; 0 when they do not overlap."""
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
            best = max(faces, key=lambda f: box_iou(f.box, last.box))
            if box_iou(best.box, last.box) >= min_iou:
                pick = best
        chosen.append(pick)
        last = pick
    return chosen


def interpolate_boxes(anchors: dict[int, np.ndarray], n: int) -> np.ndarray:
    """Boxes (n, 4) of frames 0 … n−1, linear between the ``anchors`` (frame → box (4,)), held beyond them."""
    at = sorted(anchors)
    boxes = np.stack([anchors[i] for i in at]).astype(np.float32)
    frames = np.arange(n)
    return np.stack([np.interp(frames, at, boxes[:, c]) for c in range(4)], axis=1).astype(np.float32)


def keyframe_positions(n: int, every: int, windows: Sequence[int] | None = None) -> list[int]:
    """Keyframes of ``n`` frames: every ``every``-th frame and the last, counted within each run of frames of one
    window (``windows``: the window of each frame; None: one run)."""
    bounds = [0, n] if windows is None else [0, *(i for i in range(1, n) if windows[i] != windows[i - 1]), n]
    keys: set[int] = set()
    for start, end in zip(bounds, bounds[1:]):
        keys.update(range(start, end, every))
        keys.add(end - 1)
    return sorted(keys)


@dataclass
class TrackCounts:
    """What :meth:`FaceTracker.track` did, summed over its calls: frames tracked; frames detected whole at
    keyframe size (keyframes, and frames whose region lost the face); regions detected; frames detected
    whole by the full detector (where the keyframe size found no face, or a region still lost it); and
    frames whose region lost the face in the first pass."""

    frames: int = 0
    keyframes: int = 0
    regions: int = 0
    whole: int = 0
    lost: int = 0

    def add(self, other: TrackCounts) -> None:
        """Add ``other``'s counts to these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class FaceTracker:
    """The main face of each frame of a video, tracked: whole-frame detection on keyframes only.

    ``keyframes``: every how many frames (and on the last; within each window of consecutive
    frames, when ``track`` is given their windows) the whole frame is detected, at a
    size where a face of ``min_face_ratio`` × the frame's shorter side (at least the
    detector's ``min_face_size``) spans :data:`KEY_MIN_FACE_PX` px; a keyframe on which
    nothing is found there is detected by ``detector.detect`` (the whole-frame path). The
    main face is tracked over the keyframes (:func:`track_main_face`), its box interpolated in
    between, and every frame's faces are detected in the region around that predicted box.
    A frame whose region holds no face overlapping the prediction by ``min_iou`` (the face
    moved or jumped away) becomes a keyframe itself and is searched again around its own
    box; if that fails too, its faces are those of ``detector.detect``. The final choice over
    the frames is :func:`track_main_face` again. ``counts`` sums what the calls did.
    """

    detector: FaceDetector
    keyframes: int = 8
    min_face_ratio: float = 0.1
    min_iou: float = 0.2
    counts: TrackCounts = field(default_factory=TrackCounts)

    def track(self, frames: Sequence[np.ndarray], windows: Sequence[int] | None = None) -> list[Face | None]:
        """The main face of each frame (H, W, 3 uint8 RGB, in time order, all the same size), or None.

        ``windows``: the window of each frame when the frames are windows of consecutive video
        frames with gaps between them (``fmkit preprocess --windows``): every window's first and
        last frame are keyframes too, so a box is only interpolated between keyframes of its own
        window, never across a gap. None: one run of frames.
        """
        n = len(frames)
        if n == 0:
            return []
        if windows is not None and len(windows) != n:
            raise ValueError(f"{len(windows)} window ids for {n} frames")
        counts = TrackCounts(frames=n)
        found: dict[int, list[Face]] = {}  # frame → faces detected on the whole frame
        whole: set[int] = set()  # frames detected by the full detector

        def detect_keyframes(indices: Sequence[int]) -> None:
            if not indices:
                return
            found.update(zip(indices, self._keyframe_faces([frames[i] for i in indices])))
            counts.keyframes += len(indices)
            detect_whole([i for i in indices if not found[i]])

        def detect_whole(indices: Sequence[int]) -> None:
            todo = [i for i in indices if i not in whole]
            found.update(zip(todo, self.detector.detect([frames[i] for i in todo])))
            whole.update(todo)
            counts.whole += len(todo)

        def anchors() -> dict[int, np.ndarray]:
            keys = sorted(found)
            return {i: f.box for i, f in zip(keys, track_main_face([found[i] for i in keys], self.min_iou)) if f}

        detect_keyframes(keyframe_positions(n, self.keyframes, windows))
        tracked = anchors()
        if not tracked:  # no face on any keyframe: every frame is detected whole
            detect_whole(range(n))
            self.counts.add(counts)
            return track_main_face([found[i] for i in range(n)], self.min_iou)
        near = self._near_faces(frames, interpolate_boxes(tracked, n), range(n), counts)
        lost = [i for i in range(n) if not near[i]]
        counts.lost = len(lost)
        if lost:  # search again around each lost frame's own whole-frame detection
            detect_keyframes([i for i in lost if i not in found])
            tracked = anchors()
            again = [i for i in lost if i in tracked]
            boxes = np.zeros((n, 4), np.float32)
            if again:
                boxes[again] = np.stack([tracked[i] for i in again])
            near.update(self._near_faces(frames, boxes, again, counts))
            detect_whole([i for i in lost if not near.get(i)])
        self.counts.add(counts)
        return track_main_face([near.get(i) or found[i] for i in range(n)], self.min_iou)

    def _near_faces(
        self, frames: Sequence[np.ndarray], boxes: np.ndarray, indices: Sequence[int], counts: TrackCounts
    ) -> dict[int, list[Face]]:
        """Faces of the regions around ``boxes[i]`` (i in ``indices``) that overlap the box by ``min_iou``."""
        indices = list(indices)
        if not indices:
            return {}
        counts.regions += len(indices)
        faces = self._region_faces([frames[i] for i in indices], boxes[indices])
        return {i: [f for f in fs if box_iou(f.box, boxes[i]) >= self.min_iou] for i, fs in zip(indices, faces)}

    def min_face(self, height: int, width: int) -> float:
        """The smallest face (px) sought on a keyframe of this size."""
        return max(float(self.detector.min_face_size), self.min_face_ratio * min(height, width))

    def _keyframe_faces(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        h, w = frames[0].shape[:2]
        min_face = self.min_face(h, w)
        scale = min(1.0, KEY_MIN_FACE_PX / min_face)
        if scale < 1.0:
            size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
            frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        found = self.detector.detect_capped(frames, min_face * scale, KEY_CANDIDATES)
        return [[f.moved(1 / scale) for f in faces] for faces in found]

    def _region_faces(self, frames: Sequence[np.ndarray], boxes: np.ndarray) -> list[list[Face]]:
        regions = [square_region(box, REGION_CONTEXT) for box in boxes]
        crops = [crop_square(frame, region, REGION_SIZE) for frame, region in zip(frames, regions)]
        min_face = REGION_MIN_FACE * REGION_SIZE / REGION_CONTEXT
        found = self.detector.detect_capped(crops, min_face, REGION_CANDIDATES)
        return [[f.moved(side / REGION_SIZE, x0, y0) for f in faces] for faces, (x0, y0, side) in zip(found, regions)]


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
