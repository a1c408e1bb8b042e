"""Blending of faces: landmark hull masks, colour transfer, alignment, face swap and Self-Blended Images.

Used both by ``fmkit synth`` (to make fake videos) and as a training augmentation.

Conventions:

- images are (H, W, 3) RGB, either ``uint8`` in 0..255 or ``float32`` in [0, 1]; every
  function that returns an image returns the dtype of the image it was given;
- masks are (H, W) ``float32`` in [0, 1] (1 = fully the source / manipulated);
- landmarks are (5, 2) ``(x, y)`` pixels in MTCNN's order: left eye, right eye, nose,
  left mouth corner, right mouth corner; a face box is ``(x1, y1, x2, y2)`` pixels;
- lengths in the parameter classes are in *face units* (:func:`face_unit`, about the
  eye distance), so one set of parameters fits a face of any size and can be reused
  over the frames of a video for a temporally consistent blend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: Vertices of the inner-face polygon as (along the eye axis, along the eye→mouth axis)
#: offsets from an anchor; anchors: 0 left eye, 1 right eye, 3/4 mouth corners, 5 eye
#: centre, 6 mouth centre. Brows to chin, temple to temple.
_HULL_POINTS: tuple[tuple[int, float, float], ...] = (
    (5, 0.0, -0.65),  # forehead, above the brows
    (0, -0.30, -0.50),  # above the left brow
    (1, 0.30, -0.50),  # above the right brow
    (0, -0.45, 0.30),  # left cheek
    (1, 0.45, 0.30),  # right cheek
    (3, -0.25, 0.45),  # left jaw
    (4, 0.25, 0.45),  # right jaw
    (6, 0.0, 0.65),  # chin
)
NUM_HULL_POINTS = len(_HULL_POINTS)

#: Self-Blended Images' blend ratios: a partial blend a quarter of the time each, else full.
SBI_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


# --- dtype helpers -----------------------------------------------------------------------


def to_float(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 0..255 or float in [0, 1] → float32 in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return np.asarray(img, np.float32)


def like(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Float [0, 1] ``img`` back to ``ref``'s dtype (uint8 is rounded and clipped)."""
    img = np.clip(img, 0.0, 1.0)
    if ref.dtype == np.uint8:
        return np.round(img * 255.0).astype(np.uint8)
    return img.astype(np.float32)


# --- landmark geometry -------------------------------------------------------------------


def face_unit(landmarks: np.ndarray) -> float:
    """Length scale of a face (px): the larger of the eye distance and the eye→mouth distance."""
    lm = np.asarray(landmarks, np.float32)
    eyes, mouth = lm[:2].mean(0), lm[3:5].mean(0)
    return float(max(np.linalg.norm(lm[1] - lm[0]), np.linalg.norm(mouth - eyes), 1.0))


def hull_polygon(landmarks: np.ndarray, expand: float = 1.0, jitter: np.ndarray | None = None) -> np.ndarray:
    """Inner-face polygon (K, 2) px extrapolated from the five landmarks (K = NUM_HULL_POINTS).

    ``expand`` scales the polygon about its centroid; ``jitter`` (K, 2), in face units,
    moves each vertex (SBI's random mask deformation).
    """
    lm = np.asarray(landmarks, np.float32)
    eyes, mouth = lm[:2].mean(0), lm[3:5].mean(0)
    anchors = np.concatenate([lm, eyes[None], mouth[None]])
    across, down = lm[1] - lm[0], mouth - eyes
    pts = np.stack([anchors[a] + u * across + v * down for a, u, v in _HULL_POINTS])
    centre = pts.mean(0)
    pts = centre + expand * (pts - centre)
    if jitter is not None:
        pts = pts + np.asarray(jitter, np.float32) * face_unit(lm)
    return pts.astype(np.float32)


def hull_mask(
    shape: tuple[int, int],
    landmarks: np.ndarray,
    box: np.ndarray | None = None,
    expand: float = 1.0,
    jitter: np.ndarray | None = None,
) -> np.ndarray:
    """Binary (H, W) float32 mask of the convex hull of :func:`hull_polygon`, clipped to ``box``."""
    h, w = shape[:2]
    mask = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(np.round(hull_polygon(landmarks, expand, jitter)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        clip = np.zeros_like(mask)
        clip[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = 1
        mask &= clip
    return mask.astype(np.float32)


def soft_mask(mask: np.ndarray, erode: float = 0.0, sigma: float = 0.0) -> np.ndarray:
    """Erode a (H, W) mask by ``erode`` px (negative: dilate), then blur it with a gaussian of ``sigma`` px.

    Returns float32 in [0, 1]; values below 1/510 (which cannot change a uint8 pixel) are zeroed.
    """
    out = np.asarray(mask, np.float32)
    radius = int(round(abs(erode)))
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        out = (cv2.erode if erode > 0 else cv2.dilate)(out, kernel)
    if sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_CONSTANT)
    out = np.clip(out, 0.0, 1.0)
    out[out < 1.0 / 510] = 0.0
    return out


@dataclass(frozen=True)
class MaskParams:
    """How a blend mask is drawn from landmarks; lengths in face units.

    ``expand``: hull scale about its centroid; ``jitter``: (K, 2) vertex offsets;
    ``erode``: erosion before the blur (negative dilates); ``sigma``: gaussian blur;
    ``ratio``: the mask's peak value (the blend ratio).
    """

    expand: float = 1.0
    jitter: np.ndarray = field(default_factory=lambda: np.zeros((NUM_HULL_POINTS, 2), np.float32))
    erode: float = 0.05
    sigma: float = 0.08
    ratio: float = 1.0

    @classmethod
    def sample(
        cls, rng: np.random.Generator, deform: float = 0.08, ratios: tuple[float, ...] = SBI_RATIOS
    ) -> MaskParams:
        """Random parameters: vertex jitter up to ``deform`` face units, ratio drawn from ``ratios``."""
        return cls(
            expand=float(rng.uniform(0.9, 1.15)),
            jitter=rng.uniform(-deform, deform, (NUM_HULL_POINTS, 2)).astype(np.float32),
            erode=float(rng.uniform(-0.05, 0.15)),
            sigma=float(rng.uniform(0.04, 0.15)),
            ratio=float(rng.choice(ratios)),
        )


def blend_mask(
    shape: tuple[int, int], landmarks: np.ndarray, params: MaskParams, box: np.ndarray | None = None
) -> np.ndarray:
    """Soft (H, W) float32 mask in [0, params.ratio]: deformed hull, eroded and blurred."""
    unit = face_unit(landmarks)
    hard = hull_mask(shape, landmarks, box, params.expand, params.jitter)
    return soft_mask(hard, params.erode * unit, params.sigma * unit) * np.float32(params.ratio)


# --- colour ------------------------------------------------------------------------------


def _weighted_stats(img: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (3,) of (H, W, 3) ``img`` weighted by (H, W) ``weights``."""
    w = weights.reshape(-1, 1).astype(np.float64)
    total = max(float(w.sum()), 1e-8)
    px = img.reshape(-1, 3).astype(np.float64)
    mean = (px * w).sum(0) / total
    std = np.sqrt(((px - mean) ** 2 * w).sum(0) / total)
    return mean, std


def colour_transfer(source: np.ndarray, target: np.ndarray, mask: np.ndarray, space: str = "lab") -> np.ndarray:
    """Recolour ``source`` so its mean and std within ``mask`` match ``target``'s there.

    Reinhard-style statistics matching per channel in CIELAB (``space="lab"``) or RGB
    (``"rgb"``), weighted by the (H, W) mask; the whole image is shifted, so the result
    can be blended anywhere under the mask. Returns ``source``'s dtype.
    """
    if space not in ("lab", "rgb"):
        raise ValueError(f"colour space must be 'lab' or 'rgb', got {space!r}")
    src, tgt = to_float(source), to_float(target)
    if space == "lab":
        src, tgt = cv2.cvtColor(src, cv2.COLOR_RGB2LAB), cv2.cvtColor(tgt, cv2.COLOR_RGB2LAB)
    weights = np.asarray(mask, np.float32)
    mu_s, sd_s = _weighted_stats(src, weights)
    mu_t, sd_t = _weighted_stats(tgt, weights)
    out = ((src - mu_s) * (sd_t / np.maximum(sd_s, 1e-6)) + mu_t).astype(np.float32)
    if space == "lab":
        out = cv2.cvtColor(out, cv2.COLOR_LAB2RGB)
    return like(out, source)


def jitter_colour(
    img: np.ndarray, hue: float = 0.0, saturation: float = 1.0, brightness: float = 0.0, contrast: float = 1.0
) -> np.ndarray:
    """Shift hue (degrees), scale saturation, add brightness (in [0, 1] units), scale contrast about the mean."""
    x = to_float(img)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # float32: H in [0, 360), S and V in [0, 1]
    hsv[..., 0] = np.mod(hsv[..., 0] + hue, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0.0, 1.0)
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    x = (x - x.mean()) * contrast + x.mean() + brightness
    return like(x, img)


# --- geometry ----------------------------------------------------------------------------


def similarity_transform(src_landmarks: np.ndarray, dst_landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) rotation + uniform scale + translation mapping ``src`` points (N, 2) onto ``dst`` (least squares)."""
    src = np.asarray(src_landmarks, np.float32).reshape(-1, 1, 2)
    dst = np.asarray(dst_landmarks, np.float32).reshape(-1, 1, 2)
    # a threshold far above any landmark error keeps every point an inlier: a plain fit
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, ransacReprojThreshold=1e4)
    if matrix is None:
        raise ValueError("cannot fit a similarity transform to these landmarks (degenerate points)")
    return matrix.astype(np.float32)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    pts = np.asarray(points, np.float32)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def transform_box(matrix: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Axis-aligned box (4,) around the image of box ``(x1, y1, x2, y2)`` under a (2, 3) affine matrix."""
    x1, y1, x2, y2 = (float(v) for v in box)
    corners = transform_points(matrix, np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], np.float32))
    return np.concatenate([corners.min(0), corners.max(0)]).astype(np.float32)


def warp(img: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Warp ``img`` by a (2, 3) affine matrix into an (H, W) = ``shape`` canvas (borders reflected)."""
    h, w = shape[:2]
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def align_face(
    source: np.ndarray, source_landmarks: np.ndarray, target_landmarks: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``source`` so its five landmarks land on ``target_landmarks``.

    Returns (the warped image of (H, W) = ``shape``, the (2, 3) similarity matrix).
    """
    matrix = similarity_transform(source_landmarks, target_landmarks)
    return warp(source, matrix, shape), matrix


#: Range of the resampling factor of a blended source (frequency jitter; see :func:`resample`).
RESAMPLE_RANGE = (3.0, 5.0)


def resample(img: np.ndarray, factor: float) -> np.ndarray:
    """Down-sample by ``factor`` (area) and back up (bilinear): the detail and sensor noise a face
    generator working at a lower resolution loses (the resolution mismatch of Li & Lyu 2019's face
    warping artifacts, and SBI's frequency augmentation). ``factor`` <= 1 returns ``img`` unchanged."""
    if factor <= 1.0:
        return img
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def about_face(landmarks: np.ndarray, scale: float, shift: np.ndarray) -> np.ndarray:
    """(2, 3) matrix scaling about the landmarks' centre and shifting by ``shift`` face units."""
    lm = np.asarray(landmarks, np.float32)
    centre = lm.mean(0)
    offset = centre * (1.0 - scale) + np.asarray(shift, np.float32) * face_unit(lm)
    return np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]], np.float32)


# --- blending ----------------------------------------------------------------------------


def alpha_blend(target: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``target * (1 - mask) + source * mask`` for (H, W, 3) images and an (H, W) mask; ``target``'s dtype.

    Exactly ``target`` where the mask is 0 and exactly ``source`` where it is 1.
    """
    t, s = to_float(target), to_float(source)
    m = np.asarray(mask, np.float32)[..., None]
    return like(t * (1 - m) + s * m, target)


@dataclass(frozen=True)
class SBIParams:
    """One Self-Blended Images draw: the source's colour and geometry jitter and the mask.

    ``hue`` degrees, ``saturation`` and ``contrast`` factors, ``brightness`` in [0, 1]
    units, ``scale`` about the face centre, ``shift`` (2,) in face units, ``resample`` the
    source's down-and-up sampling factor (:func:`resample`; 1: none), ``mask`` the blend
    mask's parameters.
    """

    hue: float
    saturation: float
    brightness: float
    contrast: float
    scale: float
    shift: np.ndarray
    mask: MaskParams
    resample: float = 1.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> SBIParams:
        """Random jitter in SBI's ranges: small colour shifts, ±5 % scale, ±5 % face-unit shift, and a
        resampling factor in :data:`RESAMPLE_RANGE`."""
        return cls(
            hue=float(rng.uniform(-10, 10)),
            saturation=float(rng.uniform(0.8, 1.2)),
            brightness=float(rng.uniform(-0.08, 0.08)),
            contrast=float(rng.uniform(0.8, 1.2)),
            scale=float(rng.uniform(0.95, 1.05)),
            shift=rng.uniform(-0.05, 0.05, 2).astype(np.float32),
            mask=MaskParams.sample(rng),
            resample=float(rng.uniform(*RESAMPLE_RANGE)),
        )


def self_blend(
    img: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator | None = None,
    *,
    box: np.ndarray | None = None,
    params: SBIParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Self-Blended Image (Shiohara & Yamasaki, CVPR 2022): blend a jittered copy of a face into itself.

    The source is ``img`` colour-jittered (hue, saturation, brightness, contrast),
    slightly rescaled and shifted about the face, and resampled (frequency jitter); it is blended into ``img`` under a
    deformed, eroded/dilated and blurred landmark hull mask scaled by a random blend
    ratio. Pass ``params`` (e.g. one :meth:`SBIParams.sample` per video) for a consistent
    blend, else they are drawn from ``rng``.

    Returns (blended (H, W, 3) in ``img``'s dtype, mask (H, W) float32 in [0, 1]); the
    output equals ``img`` wherever the mask is 0.
    """
    if params is None:
        if rng is None:
            raise ValueError("self_blend needs either rng or params")
        params = SBIParams.sample(rng)
    source = jitter_colour(img, params.hue, params.saturation, params.brightness, params.contrast)
    source = resample(warp(source, about_face(landmarks, params.scale, params.shift), img.shape), params.resample)
    mask = blend_mask(img.shape, landmarks, params.mask, box)
    return alpha_blend(img, source, mask), mask


def face_swap(
    target: np.ndarray,
    target_landmarks: np.ndarray,
    donor: np.ndarray,
    donor_landmarks: np.ndarray,
    rng: np.random.Generator | None = None,
    *,
    box: np.ndarray | None = None,
    params: MaskParams | None = None,
    resample_factor: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Put the donor's inner face on the target: align on five landmarks, match colour, blend.

    ``donor`` (any size) is warped by the similarity that maps ``donor_landmarks`` onto
    ``target_landmarks``, recoloured in LAB to the target's face statistics and blended
    under a soft hull mask of the target (``params``, else drawn from ``rng`` with a full
    blend ratio), after :func:`resample` by ``resample_factor`` (the generator's resolution).
    Returns (image (H, W, 3) in ``target``'s dtype, mask (H, W) float32 in [0, 1]).
    """
    if params is None:
        if rng is None:
            raise ValueError("face_swap needs either rng or params")
        params = MaskParams.sample(rng, deform=0.03, ratios=(1.0,))
    aligned, _ = align_face(donor, donor_landmarks, target_landmarks, target.shape)
    mask = blend_mask(target.shape, target_landmarks, params, box)
    recoloured = resample(colour_transfer(aligned, target, mask), resample_factor)
    return alpha_blend(target, recoloured, mask), mask
