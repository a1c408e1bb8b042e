r"""Video detectors over face volumes: ``td3dcnn`` (TD-3DCNN), ``td3dcnn_nodrop`` and ``r3d18``.

TD-3DCNN (Zhang, Li, Lin, Zeng & Ge, "Detecting Deepfake Videos with Temporal Dropout
3DCNN", IJCAI 2021): a fixed-length volume of face crops goes through a 3D CNN built of
3D inception modules (multi-scale spatio-temporal features), and *temporal dropout*
randomly samples frames of the volume in every training batch, an augmentation against
over-fitting; the classifier is video-level and trained with Adam.

The paper's method section is not available to us; what follows is inferred and stated
as such:

* **Temporal dropout** (:class:`TemporalDropout`, the paper's Algorithm 1): in training,
  one ordered random subset of ``k = max(1, round(keep · T))`` of the T frame positions is
  drawn per batch and the kept frames, in order, are resampled back to T positions
  (nearest in time: position j shows kept frame ⌊j·k/T⌋), so training and test volumes
  have one length and BatchNorm sees one kind of volume. Kept frames are further apart in
  time than in the full volume, so the network learns features that do not depend on one
  frame spacing. Identity in eval mode: a clip is scored on all its T frames.
* **Inception blocks** (:class:`Inception3d`): four parallel branches concatenated along
  channels, as in GoogLeNet / I3D: 1×1×1; 1×1×1 → 3×3×3; 1×1×1 → a factorised (2+1)D
  5×5×5 receptive field (1×5×5 spatial then 5×1×1 temporal); 3×3×3 max-pool → 1×1×1. Each
  convolution is followed by BatchNorm and ReLU.
* **Network** (:class:`TD3DCNN`): stem (3×7×7 conv, stride (1, 2, 2), then 1×3×3 max-pool
  stride (1, 2, 2)), three stages of two inception blocks with a 2×2×2 max-pool between
  stages (time is pooled only while T ≥ 2), global average pooling, dropout and one
  linear logit. Widths are chosen so that a clip costs a small fraction of ``r3d18``.

Cost, measured with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts
as 2 FLOPs; eval mode, one clip, see ``benchmarks/td3dcnn.py``):

================  ==========  =====================  ======================
model             parameters  FLOPs, 16 × 112 × 112  FLOPs, 8 × 64 × 64
================  ==========  =====================  ======================
``td3dcnn``       0.68 M      2.25 G                 0.37 G
``r3d18``         33.2 M      81.4 G                 13.3 G
================  ==========  =====================  ======================

``td3dcnn`` has ``width=32``; ``width=64`` (the GPU-sized recipe in its header) has 2.67 M
parameters and 6.1 GFLOPs at 16 × 112 × 112. A training clip costs the same with temporal
dropout (the kept frames are resampled back to T).

All three map clips (N, 3, T, H, W) of face crops in [0, 1] to N fake logits (N,) (label
1 = fake), normalising inside the model (ImageNet mean/std for ``td3dcnn``, Kinetics-400
mean/std for ``r3d18``, kept as buffers). Defaults: T = 16, 112 × 112 faces (224 works:
every stage ends in global pooling). ``r3d18`` is torchvision's ``r3d_18`` with
``weights=None`` (random init, no download) and the same one-logit head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.video import r3d_18

from fmkit.models.backbones import Normalize
from fmkit.models.registry import register_model

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
KINETICS_MEAN, KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)


class TemporalDropout(nn.Module):
    """Temporal dropout: keep an ordered random subset of the frames of a volume, one draw per batch.

    Input (N, C, T, H, W); in training returns (N, C, T, H, W) made of the frames at ``k``
    sorted random positions (the same for every clip of the batch), ``k = max(1, round(keep · T))``,
    each repeated to fill T positions in order (position j shows kept frame ⌊j·k/T⌋);
    in eval mode returns the input unchanged. ``keep`` = 1 is the identity. Draws come from
    ``generator`` when given, else from torch's global RNG (so ``torch.manual_seed``, which
    the engine sets from the run's seed, makes them reproducible). ``last_index`` holds the
    last kept positions (for figures and tests).
    """

    def __init__(self, keep: float = 0.75, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"temporal dropout keep ratio must be in (0, 1], got {keep}")
        self.keep, self.generator = float(keep), generator
        self.last_index: Tensor | None = None

    def kept(self, frames: int) -> int:
        """Number of frames kept out of ``frames``."""
        return max(1, round(self.keep * frames))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"TemporalDropout expects clips (N, C, T, H, W), got {tuple(x.shape)}")
        frames = x.shape[2]
        k = self.kept(frames)
        if not self.training or k == frames:
            return x
        index = torch.randperm(frames, generator=self.generator)[:k].sort().values
        self.last_index = index
        return x.index_select(2, index[torch.arange(frames) * k // frames].to(x.device))

    def extra_repr(self) -> str:
        return f"keep={self.keep}"


def conv_bn(
    cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)
) -> nn.Sequential:
    """Conv3d ('same' padding for odd kernels) → BatchNorm3d → ReLU."""
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=pad, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class Inception3d(nn.Module):
    """A 3D inception block: (N, cin, T, H, W) → (N, 4 · branch, T, H, W).

    Branches (each ``branch`` channels, reductions to ``branch // 2``): 1×1×1; 1×1×1 → 3×3×3;
    1×1×1 → 1×5×5 → 5×1×1 (a factorised 5×5×5 receptive field); 3×3×3 max-pool → 1×1×1.
    """

    def __init__(self, cin: int, branch: int) -> None:
        super().__init__()
        mid = max(branch // 2, 1)
        self.point = conv_bn(cin, branch, (1, 1, 1))
        self.cube = nn.Sequential(conv_bn(cin, mid, (1, 1, 1)), conv_bn(mid, branch, (3, 3, 3)))
        self.wide = nn.Sequential(
            conv_bn(cin, mid, (1, 1, 1)), conv_bn(mid, mid, (1, 5, 5)), conv_bn(mid, branch, (5, 1, 1))
        )
        self.pool = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv_bn(cin, branch, (1, 1, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.point(x), self.cube(x), self.wide(x), self.pool(x)], dim=1)


class Downsample(nn.Module):
    """2×2×2 max-pool, or 1×2×2 when fewer than 2 frames remain (short clips after temporal dropout)."""

    def forward(self, x: Tensor) -> Tensor:
        kernel = (2, 2, 2) if x.shape[2] >= 2 else (1, 2, 2)
        return nn.functional.max_pool3d(x, kernel, ceil_mode=True)


class VideoDetector(nn.Module):
    """Normalize → temporal dropout → 3D body (N, C, T', H', W') → global average pool → dropout → logit.

    ``features`` is any module mapping normalised clips to a 5D feature volume with
    ``channels`` channels. Any clip length T works (the training data's ``clip_len``).
    """

    def __init__(
        self,
        features: nn.Module,
        channels: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        keep: float,
        drop: float,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.temporal_dropout = TemporalDropout(keep)
        self.features = features
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(drop)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Clips (N, 3, T, H, W) in [0, 1] → N fake logits (N,)."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"a video detector expects clips (N, 3, T, H, W), got {tuple(x.shape)}")
        h = self.features(self.temporal_dropout(self.normalize(x)))
        return self.head(self.dropout(self.pool(h).flatten(1))).squeeze(1)


def td3dcnn_body(width: int = 32) -> tuple[nn.Sequential, int]:
    """The TD-3DCNN feature extractor and its output channels (4 · 4 · width)."""
    w = width
    body = nn.Sequential(
        conv_bn(3, w, (3, 7, 7), stride=(1, 2, 2)),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        Inception3d(w, w // 2),  # → 2w
        Inception3d(2 * w, w // 2),
        Downsample(),
        Inception3d(2 * w, w),  # → 4w
        Inception3d(4 * w, w),
        Downsample(),
        Inception3d(4 * w, 2 * w),  # → 8w
        Inception3d(8 * w, 4 * w),  # → 16w
    )
    return body, 16 * w


class TD3DCNN(VideoDetector):
    """TD-3DCNN: temporal dropout (``keep``) → 3D inception network (``width``) → one logit.

    Input (N, 3, T, H, W) in [0, 1]; output N fake logits. ``keep`` = 1 turns temporal
    dropout off (the ``td3dcnn_nodrop`` ablation); ``drop`` is the dropout before the head.
    """

    def __init__(self, keep: float = 0.75, width: int = 32, drop: float = 0.3) -> None:
        if width < 4 or width % 4:
            raise ValueError(f"width must be a positive multiple of 4, got {width}")
        body, channels = td3dcnn_body(width)
        super().__init__(body, channels, IMAGENET_MEAN, IMAGENET_STD, keep, drop)


def r3d18_body() -> tuple[nn.Module, int]:
    """torchvision's ``r3d_18`` (``weights=None``) without its pool and classifier; 512 channels."""
    net = r3d_18(weights=None)
    return nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4), 512


@register_model("td3dcnn")
def td3dcnn(keep: float = 0.75, width: int = 32, drop: float = 0.3) -> TD3DCNN:
    """TD-3DCNN with temporal dropout keeping ``keep`` of the frames in training."""
    return TD3DCNN(keep=keep, width=width, drop=drop)


@register_model("td3dcnn_nodrop")
def td3dcnn_nodrop(width: int = 32, drop: float = 0.3) -> TD3DCNN:
    """The same network as ``td3dcnn`` without temporal dropout (the paper's ablation)."""
    return TD3DCNN(keep=1.0, width=width, drop=drop)


@register_model("r3d18")
def r3d18(keep: float = 1.0, drop: float = 0.3) -> VideoDetector:
    """torchvision's 3D ResNet-18 (random init) with the TD-3DCNN head; ``keep`` < 1 adds temporal dropout."""
    body, channels = r3d18_body()
    return VideoDetector(body, channels, KINETICS_MEAN, KINETICS_STD, keep, drop)
