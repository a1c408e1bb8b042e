"""Training and evaluation transforms of face crops, built on ``torchvision.transforms.v2``.

:func:`build_transform` returns a callable that maps a float32 tensor with values in [0, 1]
(intensity, no normalisation: the model normalises) to another one of the same kind:

* a frame (3, H, W) → (3, size, size);
* a clip (3, T, H, W), channels first, then time → (3, T, size, size).

``size=None`` keeps H and W. Evaluation (``train=False``) only resizes (bilinear, antialiased).
Training draws its random parameters from torch's global RNG (the engine seeds it per
DataLoader worker), once per call: every frame of a clip gets the same crop, flip, jitter,
blur and JPEG quality (the clip is passed to torchvision as one ``tv_tensors.Video``), so
temporal consistency is kept. Training steps, in this order:

* ``rrc`` — RandomResizedCrop to ``size`` with area scale in [rrc, 1] and aspect ratio in
  [3/4, 4/3], instead of the plain resize (common on frame-level detectors, e.g. the
  DeepfakeBench training recipes);
* ``hflip`` — horizontal flip with probability 1/2 (used almost everywhere);
* ``color_jitter`` s — ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(s/4, 0.5)),
  applied with probability 0.8 (the SimCLR convention); colour jitter is part of the
  DeepfakeBench and Self-Blended Images (SBI, Shiohara & Yamasaki 2022) augmentations;
* ``blur`` p — GaussianBlur with probability p, sigma in [0.1, 2.0] pixels, kernel about a
  tenth of ``size`` (odd, at least 3; 13 when ``size`` is None);
* ``jpeg`` (qmin, qmax) — JPEG re-compression at a quality drawn uniformly from [qmin, qmax]
  (1–100), last, as a distribution pipeline would. JPEG runs on uint8 tensors on the CPU
  (torchvision's encoder): the tensor is quantised to uint8 and converted back to float32.

Blur and JPEG robustness augmentations answer FaceForensics++'s compression levels (c23,
c40) and social-media re-encoding; SBI, DeepfakeBench and most cross-dataset detectors train
with them.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["build_transform"]

#: Aspect-ratio range of the random resized crop (width / height).
RRC_RATIO = (3 / 4, 4 / 3)
#: Sigma range of the Gaussian blur, in pixels.
BLUR_SIGMA = (0.1, 2.0)
#: Probability of applying colour jitter when it is on.
JITTER_P = 0.8
#: Blur kernel when the output size is unknown (covers ±3 sigma of the largest sigma).
DEFAULT_BLUR_KERNEL = 13


def blur_kernel_size(size: int | None) -> int:
    """The Gaussian blur kernel for output side ``size`` (pixels): odd, about size / 10, at least 3."""
    if size is None:
        return DEFAULT_BLUR_KERNEL
    return max(3, (size // 10) // 2 * 2 + 1)


class _FrameOrClip:
    """Apply a v2 pipeline to a frame (3, H, W) or, with one parameter draw, a clip (3, T, H, W)."""

    def __init__(self, pipeline: Callable) -> None:
        self.pipeline = pipeline

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() not in (3, 4) or x.shape[0] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a float frame (3, H, W) or clip (3, T, H, W), got {x.dtype} {tuple(x.shape)}")
        if x.dim() == 3:
            return self.pipeline(tv_tensors.Image(x)).as_subclass(Tensor)
        out = self.pipeline(tv_tensors.Video(x.permute(1, 0, 2, 3)))  # (T, 3, H, W)
        return out.as_subclass(Tensor).permute(1, 0, 2, 3).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


def _check(size: int | None, color_jitter: float, blur: float, jpeg: tuple[int, int] | None, rrc: float | None) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive int or None, got {size!r}")
    if isinstance(color_jitter, bool) or not isinstance(color_jitter, Real) or not color_jitter >= 0:
        raise ValueError(f"color_jitter must be a number >= 0, got {color_jitter!r}")
    if isinstance(blur, bool) or not isinstance(blur, Real) or not 0 <= blur <= 1:
        raise ValueError(f"blur must be a probability in [0, 1], got {blur!r}")
    if jpeg is not None:
        ok = (
            isinstance(jpeg, (tuple, list))
            and len(jpeg) == 2
            and all(isinstance(q, int) and not isinstance(q, bool) for q in jpeg)
            and 1 <= jpeg[0] <= jpeg[1] <= 100
        )
        if not ok:
            raise ValueError(
                f"jpeg must be None or a (qmin, qmax) pair of ints with 1 <= qmin <= qmax <= 100, got {jpeg!r}"
            )
    if rrc is not None:
        if isinstance(rrc, bool) or not isinstance(rrc, Real) or not 0 < rrc <= 1:
            raise ValueError(f"rrc must be None or a minimum area scale in (0, 1], got {rrc!r}")
        if size is None:
            raise ValueError("rrc needs a size (the random resized crop's output side)")


def build_transform(
    size: int | None,
    train: bool,
    *,
    hflip: bool = True,
    color_jitter: float = 0.0,
    blur: float = 0.0,
    jpeg: tuple[int, int] | None = None,
    rrc: float | None = None,
) -> Callable[[Tensor], Tensor]:
    """The transform of a frame (3, H, W) or clip (3, T, H, W), float32 in [0, 1], to spatial size ``size``.

    Args:
        size: output side in pixels (square output); None keeps H × W.
        train: False: resize only (the augmentation arguments are validated, then ignored).
        hflip: random horizontal flip with probability 1/2.
        color_jitter: strength s >= 0 of ColorJitter (hue min(s/4, 0.5)), applied with probability 0.8; 0: off.
        blur: probability in [0, 1] of a Gaussian blur (sigma 0.1–2.0 px); 0: off.
        jpeg: (qmin, qmax), 1 <= qmin <= qmax <= 100: JPEG re-compression at a random quality; None: off.
        rrc: minimum area scale in (0, 1] of a RandomResizedCrop to ``size`` (needs ``size``),
            replacing the resize; None: plain resize.

    Returns:
        A picklable callable; random parameters come from torch's global RNG, one draw per call.

    Raises:
        ValueError: a bad argument (one line naming it).
    """
    _check(size, color_jitter, blur, jpeg, rrc)
    steps: list[Callable] = []
    if train and rrc is not None:
        steps.append(v2.RandomResizedCrop((size, size), scale=(float(rrc), 1.0), ratio=RRC_RATIO, antialias=True))
    elif size is not None:
        steps.append(v2.Resize((size, size), antialias=True))
    if train:
        if hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if color_jitter > 0:
            s = float(color_jitter)
            jitter = v2.ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(s / 4, 0.5))
            steps.append(v2.RandomApply([jitter], p=JITTER_P))
        if blur > 0:
            steps.append(v2.RandomApply([v2.GaussianBlur(blur_kernel_size(size), sigma=BLUR_SIGMA)], p=float(blur)))
        if jpeg is not None:
            steps += [
                v2.ToDtype(torch.uint8, scale=True),
                v2.JPEG(quality=tuple(jpeg)),
                v2.ToDtype(torch.float32, scale=True),
            ]
    return _FrameOrClip(v2.Compose(steps) if steps else v2.Identity())
