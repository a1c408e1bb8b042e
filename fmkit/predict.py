"""``fmkit predict RUN FILE …``: score the faces of photos and videos with a trained detector.

A file is scored as the training data was made: MTCNN finds the faces, each is cropped as
``fmkit preprocess`` crops it (the square of side ``margin`` × the face box, resized to the crop
size and JPEG-encoded at the same quality, read from the training faces folder's
``preprocess.json`` when the run records its folder, else the preprocessing defaults at the
model's input size), then resized as in evaluation.

- **Photo** (any format Pillow reads): every face is scored; the file's score is the highest
  face probability (a photo is fake when any face in it is).
- **Video** (any container PyAV decodes): ``frames`` frames sampled evenly over the video —
  or, when the training faces folder was cropped in windows of consecutive frames
  (``fmkit preprocess --windows``), the same windows — the main face tracked through them
  (:func:`fmkit.data.faces.track_main_face`). A frame model scores every tracked crop, a
  video model ``data.eval_clips`` evenly spaced clips of ``clip_len`` consecutive tracked
  crops of one window (the run's settings; :func:`fmkit.data.datasets.even_clip_starts`); the
  face's and the file's score is the mean, as ``fmkit evaluate`` scores a video.

A file that cannot be read, holds no face, or has too few face frames for one clip gets an
``error`` instead of a score; the other files are still scored.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fmkit.config import PREPROCESS, defaults
from fmkit.data.datasets import clip_runs, even_clip_starts, read_rgb
from fmkit.data.faces import Face, FaceDetector, face_crops, track_main_face
from fmkit.data.preprocess import frame_plan
from fmkit.data.schema import crop_square, square_region
from fmkit.data.transforms import build_transform
from fmkit.data.video import probe, read_frames
from fmkit.engine.evaluation import run_config, run_data
from fmkit.errors import FmkitError
from fmkit.models.checkpoint import load
from fmkit.models.modes import eval_mode

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass
class FaceScore:
    """One scored face: its box in the file's pixels (first frame for a video), its fake probability,
    and how many crops (frames) or clips were scored."""

    face: int
    box: list[float]
    prob: float
    crops: int


@dataclass
class FileScore:
    """A scored file: its kind (image/video), faces, the file's fake probability, or the error."""

    path: str
    kind: str
    faces: list[FaceScore] = field(default_factory=list)
    prob: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "kind": self.kind,
            "prob": None if self.prob is None else round(self.prob, 6),
            "faces": [{**f.__dict__, "prob": round(f.prob, 6)} for f in self.faces],
            "error": self.error,
        }


class Predictor:
    """A trained detector ready to score files (see the module docstring)."""

    def __init__(
        self, run: str | os.PathLike, frames: int = 32, device: str = "cpu", margin: float | None = None
    ) -> None:
        data = run_config(run)["data"]
        prep = defaults(PREPROCESS)
        folder = run_data(run)
        stored = folder / "preprocess.json" if folder is not None else None
        if stored is not None and stored.is_file():
            prep.update({k: v for k, v in json.loads(stored.read_text()).items() if k in prep})
        elif data["size"]:
            prep["size"] = data["size"]
        if margin is not None:
            prep["margin"] = margin
        self.prep, self.frames, self.device = prep, frames, torch.device(device)
        self.clip_len = data["clip_len"] if data["kind"] == "clip" else None
        self.eval_clips = data["eval_clips"]
        self.model = load(run, device=device)
        self.transform = build_transform(data["size"], train=False)
        self.detector = FaceDetector(device=device, min_face_size=prep["min_face_size"])

    def crop(self, image: np.ndarray, face: Face) -> torch.Tensor:
        """The face crop as preprocessing saves it (JPEG round trip), then as evaluation resizes it: (3, H, W)."""
        crop = crop_square(image, square_region(face.box, self.prep["margin"]), self.prep["size"])
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, format="JPEG", quality=self.prep["jpeg_quality"])
        buffer.seek(0)
        return self.as_input(np.asarray(Image.open(buffer).convert("RGB")))

    def as_input(self, rgb: np.ndarray) -> torch.Tensor:
        """An RGB crop (H, W, 3 uint8) as the model's input: (3, size, size) in [0, 1], resized as in evaluation."""
        return self.transform(torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous())

    def faces(self, path: Path) -> list[tuple[torch.Tensor, Face]]:
        """Every face of an image file, largest first: (model input (3, H, W), face); FmkitError without one."""
        image = read_rgb(path)
        found = face_crops(image, self.prep["size"], self.prep["margin"], self.detector)
        if not found:
            raise FmkitError(f"no face found in {path}")
        return [(self.crop(image, face), face) for _, face in found]

    def probs(self, x: torch.Tensor) -> np.ndarray:
        """Fake probabilities of a batch of crops (N, 3, H, W) or clips (N, 3, T, H, W)."""
        with eval_mode(self.model):
            return torch.sigmoid(self.model(x.to(self.device)).float()).cpu().numpy().reshape(-1)

    def score_image(self, path: Path) -> FileScore:
        found = self.faces(path)
        crops = torch.stack([crop for crop, _ in found])
        if self.clip_len is not None:  # a photo is a still clip for a video model
            crops = crops.unsqueeze(2).expand(-1, -1, self.clip_len, -1, -1)
        probs = self.probs(crops)
        faces = [
            FaceScore(k, [round(float(v), 1) for v in face.box], float(p), 1)
            for k, ((_, face), p) in enumerate(zip(found, probs))
        ]
        return FileScore(str(path), "image", faces, float(probs.max()))

    def score_video(self, path: Path) -> FileScore:
        indices, windows = frame_plan(probe(path).num_frames, {**self.prep, "frames": self.frames})
        frames = read_frames(path, indices)
        tracked = [
            (f, face, w, i)
            for f, face, w, i in zip(frames, track_main_face(self.detector.detect(frames)), windows, indices)
            if face is not None
        ]
        if not tracked:
            raise FmkitError(f"no face found in {path} ({len(frames)} frames sampled)")
        crops = torch.stack([self.crop(frame, face) for frame, face, _, _ in tracked])
        if self.clip_len is None:
            probs, n = self.probs(crops), len(crops)
        else:
            lengths = clip_runs([w for _, _, w, _ in tracked], [i for _, _, _, i in tracked])
            starts = even_clip_starts(lengths, self.clip_len, self.eval_clips)
            if not starts and self.prep["windows"]:
                raise FmkitError(
                    f"{path}: a face in at most {max(lengths)} consecutive frames of one window ({len(frames)} "
                    f"frames read in windows of {self.prep['window_len']}), fewer than the clip length {self.clip_len}"
                )
            if not starts:
                raise FmkitError(
                    f"{path}: a face in {len(crops)} of {len(frames)} sampled frames, fewer than the clip length "
                    f"{self.clip_len} (raise --frames)"
                )
            clips = torch.stack([crops[s : s + self.clip_len].transpose(0, 1) for s in starts])
            probs, n = self.probs(clips), len(clips)
        box = [round(float(v), 1) for v in tracked[0][1].box]
        prob = float(probs.mean())
        return FileScore(str(path), "video", [FaceScore(0, box, prob, n)], prob)

    def score(self, path: str | os.PathLike) -> FileScore:
        """Score one file; an unreadable, faceless or unsupported file gives a FileScore with ``error``."""
        path = Path(path)
        suffix = path.suffix.lower()
        kind = "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else "unknown"
        try:
            if not path.is_file():
                raise FmkitError(f"file not found: {path}")
            if kind == "unknown":
                supported = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
                raise FmkitError(f"unsupported file type {suffix or '(none)'} of {path}: expected one of {supported}")
            return self.score_image(path) if kind == "image" else self.score_video(path)
        except FmkitError as exc:
            return FileScore(str(path), kind, error=str(exc))


def predict_files(
    run: str | os.PathLike, files: Sequence[str | os.PathLike], frames: int = 32, device: str = "cpu"
) -> list[FileScore]:
    """Score every file with the detector of ``run`` (a run folder or checkpoint file)."""
    predictor = Predictor(run, frames=frames, device=device)
    return [predictor.score(f) for f in files]
