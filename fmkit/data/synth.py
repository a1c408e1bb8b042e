"""``fmkit synth``: a small real/fake face-video dataset made from photos that installed packages ship.

Nothing is downloaded. The faces are real photos: scikit-image's ``astronaut()``,
matplotlib's ``grace_hopper.jpg`` and the faces of scikit-image's ``lfw_subset()`` (25 × 25
grayscale tight crops, upscaled and set as an oval portrait on a defocused background, see
:func:`vignette`). The LFW subset does not name its people and some people appear in several
of its photos, so the photos are grouped into **persons** by a reviewed data file
(:mod:`fmkit.data.people`: dlib's face descriptor, confirmed by eye). A person is the identity:
splits, faceswap donors and every interval's bootstrap group (``source_id``) are persons, and a
person with several photos has several real videos. MTCNN finds each photo's face box and five
landmarks once per process; a photo is used only if MTCNN also finds the face in a still frame
rendered at the output size.

Real videos move the photo along a smooth random head trajectory (drift, small rotation
and scale), with slowly changing lighting and fresh sensor noise in every frame. Each real
video ``rNNN`` gets one fake per method, made from its frames:

- ``faceswap`` (``rNNN_<donor photo>``): another person's inner face, aligned on the five
  landmarks, colour-matched and blended under a soft hull mask; the donor is a photo of
  another person of the same split (a split with a single person gets a donor-only photo of a
  person used nowhere else), so no face crosses splits;
- ``selfblend`` (``rNNN_sbi``): Self-Blended Images with one jitter drawn per video;
- ``flicker`` (``rNNN_flk``): a self-blend whose mask, offset and colour shift are redrawn
  every frame, a temporally inconsistent fake;
- ``wobble`` (``rNNN_wob``): a temporal-only fake. Each frame is rendered from the photo
  exactly as the real video's frame is (same head pose, light and sensor noise, one
  interpolation of the photo, no blend, no resampling), except that a smooth displacement
  field moves the inner face (brows to chin) against the head by a fresh random shift of
  :data:`WOBBLE_RANGE` face units every frame: the unstable per-frame alignment of a
  frame-by-frame face swap. One frame alone is a plausible real face; only the frame-to-frame
  jitter, which the smooth head motion never has, gives it away.

Every blended source (not ``wobble``) is also resampled (down by a factor in
:data:`fmkit.data.blend.RESAMPLE_RANGE` and back up), as a generator working at a lower
resolution would leave it: the manipulated region loses detail and sensor noise that the
rest of the frame keeps. Without it the synthetic fakes carry almost no cue that holds
across identities (the measurements are in the README).

Output (the ``folder`` layout)::

    OUT/real/<id>.mp4
    OUT/fake/<method>/<fake id>.mp4
    OUT/masks/fake/<method>/<fake id>.npz   key "masks": uint8 (T, H, W), 0..255 blend mask per frame
    OUT/metadata.csv                        path, source_id (= person), split, identity (= person), photo,
                                            method, label, donor
    OUT/synth.json                          the config, every photo's person and split, the persons per
                                            split, fakes redrawn for MTCNN (written last)

The same config and seed give byte-identical masks and metadata, and the same video frames
(libx264 usually writes identical bytes too, but not always across processes). Files are
written atomically; an interrupted run resumes in place (``.synth-partial.json`` marks it).
"""

from __future__ import annotations

import functools
import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fmkit import __version__
from fmkit.config import SYNTH, SYNTH_METHODS, resolve
from fmkit.data.blend import (
    RESAMPLE_RANGE,
    MaskParams,
    SBIParams,
    face_swap,
    face_unit,
    hull_mask,
    self_blend,
    soft_mask,
    transform_box,
    transform_points,
)
from fmkit.data.layouts import carve_groups
from fmkit.data.people import photo_persons
from fmkit.data.schema import LABEL_FAKE, LABEL_REAL
from fmkit.data.video import write_video
from fmkit.errors import FmkitError
from fmkit.io import atomic_path, write_csv, write_json

METHODS = SYNTH_METHODS
#: Methods whose frames are each, alone, rendered like a real frame (the fake is only in time).
TEMPORAL_METHODS = ("wobble",)
FAKE_SUFFIX = {"selfblend": "sbi", "flicker": "flk", "wobble": "wob"}
#: wobble: size of the inner face's shift against the head, drawn afresh every frame (face units,
#: about the eye distance: 0.06–0.12 is 1.5–3 px on a 128 px frame's face).
WOBBLE_RANGE = (0.15, 0.25)
#: wobble: blur of the inner-face hull that shapes the displacement field (face units).
WOBBLE_FEATHER = 0.35
SPLIT_FRACTIONS = {"test": 0.2, "val": 0.2}
#: ``source_id`` and ``identity``: the person (the group of splits and of every interval); ``photo``:
#: the shipped photo the video was rendered from; ``donor``: the faceswap donor's photo.
METADATA_COLUMNS = ["path", "source_id", "split", "identity", "photo", "method", "label", "donor"]
DONE_FILE = "synth.json"
DEFAULT_IDENTITIES = 8
PARTIAL_FILE = ".synth-partial.json"

#: Photos are resized so that the face box's longer side is this fraction of the frame size.
WORK_FACE_FRACTION = 0.5
#: LFW faces (25 × 25) are upscaled to this side (then vignetted) before detection and rendering.
LFW_SIDE = 128
LFW_FACES = 100  # lfw_subset(): the first 100 images are faces, the rest are not
#: Photos are detected in batches of this many, downsized to at most this side (px).
DETECT_CHUNK = 8
DETECT_MAX_SIDE = 320


@dataclass(frozen=True)
class Photo:
    """An identity: image (H, W, 3) uint8 RGB, MTCNN face box (4,) and landmarks (5, 2) in its pixels."""

    name: str
    image: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class Clip:
    """A rendered video: frames (T × (S, S, 3) uint8), landmarks (T, 5, 2) and face boxes (T, 4) px;
    ``masks`` (T, S, S) float32 in [0, 1]: where a wobble moved the inner face (None for a real video)."""

    frames: list[np.ndarray]
    landmarks: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray | None = None


# --- identities --------------------------------------------------------------------------


def vignette(img: np.ndarray, pad: int, feather: float) -> np.ndarray:
    """A tight face crop (h, w, 3) as a portrait: an oval of it on a smooth, defocused background.

    Returns (h + 2 pad, w + 2 pad, 3) uint8; the background is the crop's colours blown up
    from 3 × 3 px, the oval's edge is blurred by a gaussian of ``feather`` px.
    """
    h, w = img.shape[:2]
    size = (w + 2 * pad, h + 2 * pad)
    background = cv2.resize(cv2.resize(img, (3, 3), interpolation=cv2.INTER_AREA), size, interpolation=cv2.INTER_LINEAR)
    alpha = np.zeros(size[::-1], np.float32)
    cv2.ellipse(alpha, (size[0] // 2, size[1] // 2), (w // 2, int(h * 0.56)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), feather)[..., None]
    face = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return np.round(alpha * face + (1 - alpha) * background).astype(np.uint8)


def _lfw_face(i: int) -> np.ndarray:
    from skimage import data

    gray = np.round(data.lfw_subset()[i] * 255).astype(np.uint8)
    big = cv2.resize(gray, (LFW_SIDE, LFW_SIDE), interpolation=cv2.INTER_CUBIC)
    return vignette(np.repeat(big[..., None], 3, axis=2), pad=LFW_SIDE // 2, feather=LFW_SIDE / 20)


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


def _photo_loaders() -> dict[str, Callable[[], np.ndarray]]:
    """Name → loader of every candidate photo, in the order identities are taken."""
    from skimage import data

    loaders: dict[str, Callable[[], np.ndarray]] = {
        "astronaut": data.astronaut,
        "hopper": _grace_hopper,
    }
    loaders.update({f"lfw{i:03d}": functools.partial(_lfw_face, i) for i in range(LFW_FACES)})
    return loaders


@functools.cache
def _detector():
    from fmkit.data.faces import FaceDetector

    return FaceDetector(max_side=DETECT_MAX_SIDE)


def _detect(images: Sequence[np.ndarray]) -> list[list]:
    """MTCNN faces of same-size images (FaceDetector runs on one torch thread)."""
    return _detector().detect(list(images))


def _detect_by_shape(images: Sequence[np.ndarray]) -> list[list]:
    """:func:`_detect` over images of mixed sizes, batched per size; results in input order."""
    found: dict[int, list] = {}
    for shape in sorted({im.shape for im in images}):
        idx = [i for i, im in enumerate(images) if im.shape == shape]
        found.update(zip(idx, _detect([images[i] for i in idx])))
    return [found[i] for i in range(len(images))]


@functools.cache
def _photo_chunk(k: int) -> tuple[Photo | None, ...]:
    """The photos of the k-th chunk of the loader order with MTCNN's largest face (None: no face).

    Run once per process. Photos are detected in fixed chunks so that each one always
    shares its batch with the same photos: batching changes MTCNN's output in the last
    bits, and fixed batches keep the dataset reproducible whatever was detected before.
    """
    loaders = _photo_loaders()
    names = list(loaders)[k * DETECT_CHUNK : (k + 1) * DETECT_CHUNK]
    images = [np.ascontiguousarray(loaders[n]()) for n in names]
    photos: list[Photo | None] = []
    for name, image, faces in zip(names, images, _detect_by_shape(images)):
        face = max(faces, key=lambda f: f.area) if faces else None
        photos.append(
            None if face is None else Photo(name, image, face.box.astype(np.float32), face.landmarks.astype(np.float32))
        )
    return tuple(photos)


def at_working_size(photo: Photo, size: int) -> Photo:
    """Resize ``photo`` so its face box's longer side is ``WORK_FACE_FRACTION * size`` px."""
    x1, y1, x2, y2 = photo.box
    scale = WORK_FACE_FRACTION * size / max(x2 - x1, y2 - y1)
    h, w = photo.image.shape[:2]
    dsize = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    image = cv2.resize(photo.image, dsize, interpolation=interp)
    sx, sy = dsize[0] / w, dsize[1] / h
    return replace(
        photo,
        image=image,
        box=photo.box * np.float32([sx, sy, sx, sy]),
        landmarks=photo.landmarks * np.float32([sx, sy]),
    )


def still_frame(photo: Photo, size: int) -> np.ndarray:
    """The photo (at working size) as a centred, unmoving ``size`` × ``size`` frame."""
    return warp_frame(photo.image, placement(photo, size, 0.45, np.zeros(2), 0.0, 1.0), size)


@functools.cache
def _usable_chunk(k: int, size: int) -> tuple[Photo, ...]:
    """The k-th chunk's photos at working size whose face MTCNN also finds in a still at ``size`` px."""
    working = [at_working_size(p, size) for p in _photo_chunk(k) if p is not None]
    found = _detect([still_frame(p, size) for p in working])
    return tuple(p for p, faces in zip(working, found) if faces)


def _usable_count(size: int) -> int:
    """How many shipped photos are usable at ``size`` px."""
    return sum(len(_usable_chunk(k, size)) for k in range(-(-len(_photo_loaders()) // DETECT_CHUNK)))


def select_photos(count: int, size: int) -> list[Photo]:
    """The first ``count`` usable photos (working size for frames of ``size`` px), in loader order."""
    photos: list[Photo] = []
    for k in range(-(-len(_photo_loaders()) // DETECT_CHUNK)):
        if len(photos) >= count:
            break
        photos += _usable_chunk(k, size)
    if len(photos) < count:
        raise FmkitError(
            f"only {len(photos)} shipped face photos are usable at {size} px; "
            f"synth needs {count} (fewer identities, or a larger size)"
        )
    return photos[:count]


# --- real videos -------------------------------------------------------------------------


def placement(
    photo: Photo, size: int, face_fraction: float, offset: np.ndarray, angle: float, zoom: float
) -> np.ndarray:
    """(2, 3) matrix putting the photo's face at the frame centre + ``offset`` (fraction of ``size``).

    The face box's longer side becomes ``face_fraction * zoom * size`` px, rotated by
    ``angle`` degrees about the face centre.
    """
    x1, y1, x2, y2 = (float(v) for v in photo.box)
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    scale = face_fraction * zoom * size / max(x2 - x1, y2 - y1)
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[:, 2] += np.asarray([size / 2, size / 2]) * (1 + 2 * np.asarray(offset)) - np.asarray(centre)
    return matrix.astype(np.float32)


def warp_frame(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp a photo by a (2, 3) matrix into a ``size`` × ``size`` frame (borders reflected)."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def inner_face_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Soft (S, S) float32 mask in [0, 1] of the inner face (brows to chin), blurred by WOBBLE_FEATHER face units."""
    return soft_mask(hull_mask((size, size), landmarks), sigma=WOBBLE_FEATHER * face_unit(landmarks))


def displaced_warp(image: np.ndarray, matrix: np.ndarray, size: int, mask: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """:func:`warp_frame`, with the content under ``mask`` moved by ``mask · shift`` px (shift (2,) x, y).

    One bilinear interpolation of the photo, like the real frame: output pixel q samples the
    photo at M⁻¹(q − m(q) s), a smooth displacement field (no fold while |s| · |∇m| < 1).
    """
    inverse = cv2.invertAffineTransform(matrix)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    qx, qy = xx - mask * np.float32(shift[0]), yy - mask * np.float32(shift[1])
    map_x = inverse[0, 0] * qx + inverse[0, 1] * qy + inverse[0, 2]
    map_y = inverse[1, 0] * qx + inverse[1, 1] * qy + inverse[1, 2]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def wobble_shifts(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(T, 2) inner-face shifts in face units, fresh each frame: a size in WOBBLE_RANGE along one axis
    per video (± 0.3 rad per frame), its sign alternating from frame to frame. The inner face swings
    back and forth at half the frame rate, a frequency the smooth head motion (≤ 0.9 Hz) never has,
    while each frame alone is shifted no more than WOBBLE_RANGE."""
    angle = rng.uniform(0, 2 * np.pi) + rng.normal(0.0, 0.3, frames)
    sign = rng.choice([-1.0, 1.0]) * (-1.0) ** np.arange(frames)
    size = sign * rng.uniform(*WOBBLE_RANGE, frames)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1) * size[:, None]


def smooth_curve(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random signal over times ``t`` (s): two slow sinusoids (0.2–0.9 Hz), |value| ≤ amplitude."""
    out = np.zeros_like(t, dtype=np.float64)
    for _ in range(2):
        freq, phase, weight = rng.uniform(0.2, 0.9), rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.0)
        out += weight * np.sin(2 * np.pi * freq * t + phase)
    return amplitude * out / 2


def _lighting(rng: np.random.Generator, t: np.ndarray, size: int) -> np.ndarray:
    """Per-frame multiplicative light (T, S, S, 3): global gain, a turning side light and a colour tint."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    gain = 1 + smooth_curve(rng, t, 0.12)
    direction = rng.uniform(0, 2 * np.pi) + smooth_curve(rng, t, 0.8)
    strength = rng.uniform(0.05, 0.25)
    tint = 1 + np.stack([smooth_curve(rng, t, 0.04), np.zeros_like(t), smooth_curve(rng, t, 0.04)], axis=1)
    ramp = xx[None] * np.cos(direction)[:, None, None] + yy[None] * np.sin(direction)[:, None, None]
    light = (gain[:, None, None] * (1 + strength * ramp))[..., None] * tint[:, None, None, :]
    return light.astype(np.float32)


def render_real(
    photo: Photo, rng: np.random.Generator, frames: int, size: int, fps: int, wobble: np.ndarray | None = None
) -> Clip:
    """A real video of ``photo`` (at working size): smooth head motion, changing light, sensor noise.

    ``wobble`` (T, 2) face units: render the ``wobble`` fake instead, the same video (same
    ``rng`` draws: pose, light, noise) with frame i's inner face shifted by ``wobble[i]``
    against the head (:func:`displaced_warp`); the clip's ``masks`` say where.
    """
    t = np.arange(frames) / fps
    face_fraction = rng.uniform(0.40, 0.50)
    base = rng.uniform(-0.04, 0.04, 2)
    dx, dy = smooth_curve(rng, t, 0.06), smooth_curve(rng, t, 0.06)
    angle, zoom = smooth_curve(rng, t, 7.0), np.exp(smooth_curve(rng, t, 0.06))
    light = _lighting(rng, t, size)
    noise_sd = rng.uniform(1.5, 3.5)
    clip_frames, landmarks, boxes, masks = [], [], [], []
    for i in range(frames):
        matrix = placement(photo, size, face_fraction, base + [dx[i], dy[i]], angle[i], zoom[i])
        points = transform_points(matrix, photo.landmarks)
        if wobble is None:
            image = warp_frame(photo.image, matrix, size)
        else:
            masks.append(inner_face_mask(points, size))
            image = displaced_warp(photo.image, matrix, size, masks[-1], wobble[i] * face_unit(points))
        frame = image.astype(np.float32) * light[i]
        frame += rng.normal(0.0, noise_sd, frame.shape)
        clip_frames.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
        landmarks.append(points)
        boxes.append(transform_box(matrix, photo.box))
    return Clip(clip_frames, np.stack(landmarks), np.stack(boxes), np.stack(masks) if masks else None)


# --- fakes -------------------------------------------------------------------------------


def make_fake(
    method: str, clip: Clip, rng: np.random.Generator, donor: Photo | None = None, detail: float = 0.0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Fake frames (T × (S, S, 3) uint8) and their blend masks (T, S, S) uint8 0..255 from a real clip.

    Blend methods only: a ``wobble`` fake is rendered from the photo (:func:`render_real`).
    ``detail`` in [0, 1] moves the resampling factor f towards 1 (f' = 1 + (f − 1)(1 − detail)):
    a redraw of a fake that MTCNN misses keeps more of the source's detail (:func:`detectable_fake`).
    """
    if method not in METHODS or method in TEMPORAL_METHODS:
        raise ValueError(f"unknown blend method {method!r}")
    if method == "faceswap" and donor is None:
        raise ValueError("faceswap needs a donor photo")

    def relaxed(factor: float) -> float:
        return 1.0 + (factor - 1.0) * (1.0 - detail)

    # faceswap and selfblend draw their parameters once per video (a temporally consistent
    # blend); flicker draws them afresh for every frame
    params: MaskParams | SBIParams | None = None
    factor = 1.0
    if method == "faceswap":
        params = MaskParams.sample(rng, deform=0.03, ratios=(1.0,))
        factor = relaxed(float(rng.uniform(*RESAMPLE_RANGE)))
    elif method == "selfblend":
        params = SBIParams.sample(rng)
        params = replace(params, resample=relaxed(params.resample))
    out, masks = [], []
    for frame, lm, box in zip(clip.frames, clip.landmarks, clip.boxes):
        if method == "faceswap":
            image, mask = face_swap(
                frame, lm, donor.image, donor.landmarks, box=box, params=params, resample_factor=factor
            )
        else:
            frame_params = params
            if frame_params is None:
                frame_params = SBIParams.sample(rng)
                frame_params = replace(frame_params, resample=relaxed(frame_params.resample))
            image, mask = self_blend(frame, lm, box=box, params=frame_params)
        out.append(image)
        masks.append(np.round(mask * 255).astype(np.uint8))
    return out, np.stack(masks)


#: A fake is redrawn (a new random stream) while MTCNN misses its face in a frame, at most this many draws.
MAX_DRAWS = 8
#: Frames smaller than this (px) are not checked with MTCNN (tiny test data; MTCNN's floor is ~20 px faces).
MIN_CHECK_SIZE = 96


def detectable_fake(
    method: str,
    clip: Clip,
    photo: Photo,
    donor: Photo | None,
    seed: int,
    index: int,
    shape: tuple[int, int, int],
    check: bool = True,
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """The fake of ``method`` for real video ``index``, redrawn until MTCNN finds a face in every frame.

    A face detector that misses fakes but not their real sources makes its failures a label cue
    and drops fakes from evaluation; real datasets keep only faces a detector finds. Draw d (0, 1,
    …) uses the random stream (seed, 1 + method, index, d) (draw 0: (seed, 1 + method, index)) and
    keeps more of the source's detail as d grows (``detail`` = d / MAX_DRAWS, see :func:`make_fake`).
    ``flicker``, drawn afresh per frame anyway, replaces only the frames MTCNN missed; the other
    methods redraw the whole video (their blend is one per video). Returns (frames, masks (T, S, S)
    uint8 0..255, the last draw used); after :data:`MAX_DRAWS` the last draw is kept and
    preprocessing records its faceless frames.
    """
    frames: list[np.ndarray] = []
    masks = np.zeros(0)
    missing = list(range(shape[0]))
    for draw in range(MAX_DRAWS):
        rng = _rng(seed, 1 + METHODS.index(method), index, *((draw,) if draw else ()))
        if method in TEMPORAL_METHODS:
            fake_clip = render_real(photo, _rng(seed, 0, index), *shape, wobble=wobble_shifts(rng, shape[0]))
            new, new_masks = fake_clip.frames, np.round(fake_clip.masks * 255).astype(np.uint8)
        else:
            new, new_masks = make_fake(method, clip, rng, donor, detail=draw / MAX_DRAWS)
        if method == "flicker" and frames:
            for i in missing:
                frames[i], masks[i] = new[i], new_masks[i]
        else:
            frames, masks = list(new), new_masks.copy()
        if not check:
            break
        todo = missing if method == "flicker" else range(shape[0])
        found = _detect([frames[i] for i in todo])
        missing = [i for i, faces in zip(todo, found) if not faces]
        if not missing:
            break
    return frames, masks, draw


def write_masks(path: str | os.PathLike, masks: np.ndarray, draw: int = 0) -> Path:
    """Save (T, H, W) uint8 masks as ``.npz`` (keys ``masks`` and ``draw``, see :func:`detectable_fake`)
    atomically, byte-identical for equal masks.

    ``np.savez`` stamps the zip entry with the current time; a fixed stamp keeps the file reproducible.
    """
    arrays = {"masks": np.ascontiguousarray(masks, np.uint8), "draw": np.asarray(draw, np.int64)}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)
    return Path(path)


def mask_draw(path: str | os.PathLike) -> int:
    """The draw of the fake whose masks are at ``path`` (0 for files written before draws were recorded)."""
    with np.load(path) as f:
        return int(f["draw"]) if "draw" in f else 0


# --- the dataset -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Who is in the dataset: photos, the person of each, the split of each person, videos → photo,
    donors of each faceswap video (photos of another person of the same split)."""

    photos: dict[str, Photo]
    person_of: dict[str, str]
    person_split: dict[str, str]
    video_photo: dict[str, str]
    donor_only: dict[str, str]
    donor_of: dict[str, str]

    def split_of(self, photo: str) -> str:
        """The split of ``photo``: its person's (a donor-only photo's: the split it donates to)."""
        return self.donor_only.get(photo) or self.person_split[self.person_of[photo]]


#: Random stream keys: real video i draws from (seed, 0, i), its fake of METHODS[j] from
#: (seed, 1 + j, i), its faceswap donor from (seed, DONOR_STREAM, i).
DONOR_STREAM = 99


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent random stream per (seed, keys): a resumed run redraws exactly what it skipped."""
    return np.random.default_rng([seed, *keys])


def _plan(cfg: Mapping[str, Any]) -> _Plan:
    """Pick photos, group them into persons, assign persons to splits, videos to photos and faceswap donors.

    Splits are by person (:func:`fmkit.data.people.photo_persons`): a person's photos, and so all
    their videos, stay in one split. A faceswap donor is a photo of another person of the same
    split; a split with a single person gets a donor-only photo of a person not otherwise used.
    """
    persons = photo_persons()
    targets = select_photos(cfg["identities"], cfg["size"])
    person_of = {p.name: persons.get(p.name, p.name) for p in targets}
    person_split = carve_groups(person_of.values(), SPLIT_FRACTIONS, cfg["seed"])
    video_photo = {f"r{i:03d}": targets[i % len(targets)].name for i in range(cfg["videos"])}
    members = {s: sorted(n for n in person_of if person_split[person_of[n]] == s) for s in set(person_split.values())}
    lonely = (
        sorted(s for s in members if len({person_of[n] for n in members[s]}) < 2)
        if "faceswap" in cfg["methods"]
        else []
    )
    extra: list[Photo] = []
    if lonely:
        everyone = select_photos(_usable_count(cfg["size"]), cfg["size"])
        used = set(person_of.values())
        for photo in everyone[cfg["identities"] :]:
            person = persons.get(photo.name, photo.name)
            if person not in used and len(extra) < len(lonely):
                extra.append(photo)
                used.add(person)
    donor_only = {p.name: s for p, s in zip(extra, lonely)}
    for p in extra:
        person_of[p.name] = persons.get(p.name, p.name)
    photos = {p.name: p for p in targets + extra}
    donor_of = {}
    if "faceswap" in cfg["methods"]:
        for i, (vid, name) in enumerate(video_photo.items()):
            split = person_split[person_of[name]]
            pool = [n for n in members[split] if person_of[n] != person_of[name]]
            pool = pool or [n for n, s in donor_only.items() if s == split]
            donor_of[vid] = pool[int(_rng(cfg["seed"], DONOR_STREAM, i).integers(len(pool)))]
    return _Plan(photos, person_of, person_split, video_photo, donor_only, donor_of)


def _fake_id(method: str, vid: str, plan: _Plan) -> str:
    return f"{vid}_{plan.donor_of[vid]}" if method == "faceswap" else f"{vid}_{FAKE_SUFFIX[method]}"


def _check_out(out: Path, config: dict) -> None:
    """Accept a new or empty folder, or a previous synth output of the same config; else FmkitError."""
    if out.exists() and not out.is_dir():
        raise FmkitError(f"synth output {out} is a file, expected a new or empty folder")
    if not out.exists() or not any(out.iterdir()):
        return
    previous = next((out / n for n in (PARTIAL_FILE, DONE_FILE) if (out / n).is_file()), None)
    if previous is None:
        raise FmkitError(
            f"refusing to write into {out}: it is not empty and holds no {DONE_FILE} "
            f"(expected a new or empty folder, or a previous synth output)"
        )
    try:
        stored = json.loads(previous.read_text()).get("config")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise FmkitError(f"unreadable {previous}: cannot tell which config made {out}") from None
    if stored != config:
        diff = ", ".join(
            f"{k}={stored.get(k) if isinstance(stored, dict) else None!r}→{v!r}"
            for k, v in config.items()
            if not isinstance(stored, dict) or stored.get(k) != v
        )
        raise FmkitError(
            f"{out} holds a synthetic dataset made with another config ({diff}); use a new or empty folder"
        )


def synthesize(
    out: str | os.PathLike,
    videos: int | None = None,
    frames: int | None = None,
    size: int | None = None,
    seed: int | None = 0,
    progress: bool = True,
    *,
    identities: int | None = None,
    fps: int | None = None,
    methods: Sequence[str] | None = None,
) -> Path:
    """Build the synthetic dataset into ``out``; returns ``out``. None means the default.

    ``identities`` defaults to ``min(8, videos)``. Re-running on the same folder and config
    skips what is already written; a non-empty folder that is not a synth output of the
    same config is refused (FmkitError).
    """
    given = {
        "videos": videos,
        "frames": frames,
        "size": size,
        "seed": seed,
        "identities": identities,
        "fps": fps,
        "methods": list(methods) if methods is not None else None,
    }
    cfg = resolve(SYNTH, {k: v for k, v in given.items() if v is not None})
    if cfg["identities"] is None:
        cfg["identities"] = min(DEFAULT_IDENTITIES, cfg["videos"])
    if cfg["videos"] < cfg["identities"]:
        raise FmkitError(
            f"synth needs at least one video per identity: videos={cfg['videos']} < identities={cfg['identities']}"
        )
    out = Path(out)
    config = dict(cfg)
    _check_out(out, config)
    write_json({"config": config}, out / PARTIAL_FILE)
    plan = _plan(cfg)
    rows = []
    bar = tqdm(total=cfg["videos"] * (1 + len(cfg["methods"])), desc="synth videos", unit="video", disable=not progress)
    draws: dict[str, list[int]] = {m: [] for m in cfg["methods"]}
    for i, (vid, name) in enumerate(plan.video_photo.items()):
        split, person = plan.split_of(name), plan.person_of[name]
        shape = (cfg["frames"], cfg["size"], cfg["fps"])
        clip = render_real(plan.photos[name], _rng(cfg["seed"], 0, i), *shape)
        rel = f"real/{vid}.mp4"
        if not (out / rel).is_file():
            write_video(out / rel, clip.frames, cfg["fps"])
        rows.append([rel, person, split, person, name, "real", LABEL_REAL, ""])
        bar.update()
        for method in cfg["methods"]:
            rel = f"fake/{method}/{_fake_id(method, vid, plan)}.mp4"
            mask_path = (out / "masks" / rel).with_suffix(".npz")
            if not ((out / rel).is_file() and mask_path.is_file()):
                donor = plan.photos[plan.donor_of[vid]] if method == "faceswap" else None
                fake, masks, draw = detectable_fake(
                    method, clip, plan.photos[name], donor, cfg["seed"], i, shape, check=cfg["size"] >= MIN_CHECK_SIZE
                )
                write_masks(mask_path, masks, draw)
                write_video(out / rel, fake, cfg["fps"])
            draws[method].append(mask_draw(mask_path))
            donor = plan.donor_of[vid] if method == "faceswap" else ""
            rows.append([rel, person, split, person, name, method, LABEL_FAKE, donor])
            bar.update()
    bar.close()
    write_csv(pd.DataFrame(rows, columns=METADATA_COLUMNS).sort_values("path", ignore_index=True), out / "metadata.csv")
    counts = {m: sum(r[5] == m for r in rows) for m in ("real", *cfg["methods"])}
    splits = sorted(set(plan.person_split.values()))
    write_json(
        {
            "config": config,
            "fmkit_version": __version__,
            "photos": {n: {"person": plan.person_of[n], "split": plan.split_of(n)} for n in sorted(plan.person_of)},
            "persons": dict(sorted(plan.person_split.items())),
            "persons_per_split": {s: sum(v == s for v in plan.person_split.values()) for s in splits},
            "donor_only_photos": plan.donor_only,
            "counts": counts,
            # fakes redrawn because MTCNN missed their face in a frame (detectable_fake), per method
            "redrawn": {m: {"videos": sum(d > 0 for d in ds), "extra_draws": sum(ds)} for m, ds in draws.items()},
        },
        out / DONE_FILE,
    )
    (out / PARTIAL_FILE).unlink()
    return out
