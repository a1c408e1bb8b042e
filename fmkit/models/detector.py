r"""Frame-level detectors on timm backbones: ``whitening`` (Concept Whitening) and ``baseline2d``.

Both map images (N, 3, H, W) in [0, 1] to N fake logits (N,) (label 1 = fake), and clips
(N, 3, T, H, W) to the logit of their mean frame probability (how a frame model scores a
video, so it meets the video detectors in one table): the
backbone's own input normalisation (mean/std of its timm ``pretrained_cfg``, kept as
buffers so checkpoints record it), a timm backbone (random weights by default;
``pretrained=True`` timm's ImageNet weights; ``checkpoint=`` a local state-dict file,
see :mod:`fmkit.models.backbones`), its global pool and a one-logit linear head.

:class:`WhiteningDetector` replaces one BatchNorm of the backbone (``layer``; default
the last block's last BatchNorm, see :data:`BACKBONES`) by :class:`FeatureWhitening`
(its affine parameters are dropped, as in Concept Whitening). Training alternates two
objectives (Chen, Bei & Rudin 2020):

* **Classification, every batch:** L_cls = BCEWithLogits(f(x), y), y ∈ {0, 1}, minimised
  over all trained parameters by the optimiser; the rotation R is a buffer, untouched.
* **Concept alignment, every ``every`` batches (engine callback):** with concept k's images X_k
  (axis k ↔ ``concepts[k]``) and x̂ the whitened (un-rotated) features of the layer,
  computed with its running statistics, R maximises
  J(R) = Σ_k mean_{x ∈ X_k} max_{h,w} (R x̂(x))_{k,h,w}  (i.e. minimises L_align = −J)
  by one Cayley-transform step with line search on the orthogonal group
  (:meth:`WhiteningDetector.concept_step`); no network weight changes.

Schedule: the engine callback ``concept_alignment`` (``fmkit.engine.callbacks``, named by
this model's registry entry) calls ``model.concept_step([images_0, ..., images_{K-1}])``
after every ``every``-th optimizer step, with one batch (N_k, 3, H, W) of each concept,
preprocessed like the training images. For more concept images than fit one batch, call
``accumulate_concept(k, images)`` repeatedly, then ``model.whitening.update_rotation()``.
``model.whitening.whitening_error`` holds the last training batch's whitening error. Call
these on the unwrapped model (``ddp.module``) with the same concept images on every rank;
DDP broadcasts buffers (R, running statistics) from rank 0.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from timm.layers import BatchNormAct2d
from torch import Tensor, nn

from fmkit.errors import FmkitError
from fmkit.models.backbones import Normalize, create_backbone, input_normalization
from fmkit.models.modes import eval_mode
from fmkit.models.registry import register_model
from fmkit.models.whitening import FeatureWhitening, Mode, RotationStep, Statistics

#: Supported backbones → (default whitened layer, default group size: None = all channels).
BACKBONES: dict[str, tuple[str, int | None]] = {
    "resnet18": ("layer4.1.bn2", None),  # 512 channels
    "efficientnet_b0": ("blocks.6.0.bn3", None),  # 320 channels
    "xception41": ("blocks.12.stack.conv3.bn_pw", 512),  # 2048 channels, 4 groups
}


class _Stop(Exception):
    """Raised by a capture hook to end a forward pass early."""


def _capture(model: nn.Module, module: nn.Module, x: Tensor, *, inputs: bool) -> Tensor:
    """Run ``model(x)`` up to ``module`` and return its input (``inputs``) or output."""
    store: dict[str, Tensor] = {}

    def grab(tensor: Tensor) -> None:
        store["t"] = tensor
        raise _Stop

    if inputs:
        handle = module.register_forward_pre_hook(lambda _m, args: grab(args[0]))
    else:
        handle = module.register_forward_hook(lambda _m, _args, out: grab(out))
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return store["t"]


class _TimmFrameModel(nn.Module):
    """A timm backbone with a one-logit head: (N, 3, H, W) → (N,) fake logits."""

    def __init__(self, backbone: str, pretrained: bool, checkpoint: str | Path | None) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            expected = ", ".join(BACKBONES)
            raise ValueError(f"unknown backbone {backbone!r}; expected one of {expected}")
        self.backbone_name = backbone
        self.default_layer = BACKBONES[backbone][0]
        self.backbone = create_backbone(backbone, pretrained=pretrained, checkpoint=checkpoint)
        self.normalize = Normalize(*input_normalization(self.backbone))

    def forward(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) → N logits; clips (N, 3, T, H, W) → N logits of the mean frame probability.

        A clip is scored like a video: the mean of its frames' fake probabilities (as a
        logit), so frame and video detectors meet in one table.
        """
        if x.dim() == 5:
            n, c, t, h, w = x.shape
            frames = x.transpose(1, 2).reshape(n * t, c, h, w)
            prob = torch.sigmoid(self(frames).float()).reshape(n, t).mean(1)
            return torch.logit(prob, eps=1e-6)
        return self.backbone(self.normalize(x)).squeeze(-1)

    def _module(self, layer: str) -> nn.Module:
        try:
            return self.backbone.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"{self.backbone_name} has no module {layer!r}") from None

    def features_at(self, x: Tensor, layer: str | None = None) -> Tensor:
        """Output of backbone module ``layer`` (default: the whitened layer's position).

        The forward stops there. It runs in the model's current mode (use eval for analysis).
        """
        return _capture(self, self._module(layer or self.default_layer), x, inputs=False)


@register_model("baseline2d")
class Baseline2D(_TimmFrameModel):
    """The plain timm backbone with a binary head; same API as :class:`WhiteningDetector`.

    Args:
        backbone: one of :data:`BACKBONES`.
        pretrained: start from timm's pretrained (ImageNet) weights (local cache, or download).
        checkpoint: a local timm state-dict file to initialise the backbone (classifier dropped).
        layer: the module ``features_at`` reads by default (to compare with a whitening
            detector whitening that layer); None: the whitened layer's default.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        checkpoint: str | Path | None = None,
        layer: str | None = None,
    ) -> None:
        super().__init__(backbone, pretrained, checkpoint)
        if layer is not None:
            self._module(layer)  # fail early on a wrong name
            self.default_layer = layer


@register_model("whitening", callbacks=("concept_alignment",))
class WhiteningDetector(_TimmFrameModel):
    """A timm backbone whose BatchNorm ``layer`` is replaced by :class:`FeatureWhitening`.

    Args:
        backbone: one of :data:`BACKBONES`.
        pretrained: start from timm's pretrained (ImageNet) weights (local cache, or download).
        checkpoint: a local timm state-dict file to initialise the backbone (classifier dropped).
        layer: the BatchNorm to replace, by module name (default: :data:`BACKBONES`).
        mode, T, eps, momentum, statistics: of :class:`FeatureWhitening`.
        group_size: of :class:`FeatureWhitening`; None: the backbone's default in
            :data:`BACKBONES` (all channels, except 512 for xception41's 2048).
        concepts: names of the concepts aligned with axes 0, 1, …, K−1 (e.g. ``left_eye``,
            ``blend_boundary``); None (default): every concept the training data
            supports, set by the training callback through :meth:`set_concepts`;
            () : no alignment (pure decorrelation).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        checkpoint: str | Path | None = None,
        layer: str | None = None,
        mode: Mode = "iterative",
        T: int = 10,
        eps: float = 1e-5,
        momentum: float = 0.1,
        statistics: Statistics = "covariance",
        group_size: int | None = None,
        concepts: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, pretrained, checkpoint)
        self.layer = layer or self.default_layer
        norm = self._module(self.layer)
        if not isinstance(norm, nn.BatchNorm2d):
            kind = type(norm).__name__
            raise ValueError(f"{backbone} module {self.layer!r} is {kind}, not a BatchNorm2d")
        self.align = concepts is None or len(concepts) > 0
        concepts = () if concepts is None else concepts
        if len(concepts) > norm.num_features:
            raise ValueError(f"{len(concepts)} concepts for {norm.num_features} axes")
        self.concepts = tuple(concepts)
        whitening = FeatureWhitening(
            norm.num_features,
            T=T,
            eps=eps,
            momentum=momentum,
            statistics=statistics,
            mode=mode,
            group_size=group_size or BACKBONES[backbone][1],
        )
        self._whitening_path = self.layer
        replacement: nn.Module = whitening
        if isinstance(norm, BatchNormAct2d) and not (
            isinstance(norm.act, nn.Identity) and isinstance(norm.drop, nn.Identity)
        ):  # timm's fused norm + activation: keep the activation after whitening
            replacement = nn.Sequential(OrderedDict(whiten=whitening, drop=norm.drop, act=norm.act))
            self._whitening_path += ".whiten"
        parent, _, child = self.layer.rpartition(".")
        setattr(self.backbone.get_submodule(parent), child, replacement)

    @property
    def whitening(self) -> FeatureWhitening:
        """The :class:`FeatureWhitening` module inside the backbone."""
        return self.backbone.get_submodule(self._whitening_path)

    def whitened_features(self, x: Tensor) -> Tensor:
        """The whitening layer's output z = R x̂, (N, C, h, w); the forward stops there.

        It runs in the model's current mode (use eval for analysis: train mode whitens
        with the batch's statistics and updates the running ones).
        """
        return _capture(self, self.whitening, x, inputs=False)

    def whitening_inputs(self, x: Tensor) -> Tensor:
        """The whitening layer's input (N, C, h, w), i.e. the features before whitening; the forward stops there."""
        return _capture(self, self.whitening, x, inputs=True)

    def accumulate_concept(self, concept: int, images: Tensor) -> None:
        """Add images (N, 3, H, W) of concept ``concept`` (= its axis) to the alignment statistics.

        Runs in eval mode without gradients, up to the whitening layer only.
        """
        if images.shape[0] == 0:
            return
        with eval_mode(self):
            x = self.whitening_inputs(images)
        self.whitening.accumulate_concept(concept, x)

    def concept_step(self, concept_batches: Sequence[Tensor]) -> RotationStep:
        """One concept-alignment step: concept_batches[k] (N_k, 3, H, W) are images of concept k.

        Accumulates every concept's images, then rotates R (one Cayley step with line
        search, see :meth:`FeatureWhitening.update_rotation`). Returns the step's objective.
        """
        if self.concepts and len(concept_batches) != len(self.concepts):
            raise ValueError(
                f"expected {len(self.concepts)} concept batches ({', '.join(self.concepts)}), "
                f"got {len(concept_batches)}"
            )
        for k, images in enumerate(concept_batches):
            self.accumulate_concept(k, images)
        return self.whitening.update_rotation()

    def get_extra_state(self) -> dict:
        """The concept names travel with the weights (axis k ↔ concepts[k])."""
        return {"concepts": list(self.concepts)}

    def set_extra_state(self, state: dict) -> None:
        self.concepts = tuple(state.get("concepts", ()))

    def set_concepts(self, names: Sequence[str]) -> None:
        """Name the aligned axes: axis k ↔ ``names[k]`` (at most one axis per channel)."""
        if len(names) > self.whitening.num_features:
            raise FmkitError(f"{len(names)} concepts for {self.whitening.num_features} axes of {self.layer}")
        self.concepts = tuple(names)
