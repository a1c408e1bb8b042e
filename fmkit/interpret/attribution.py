r"""Baseline attribution maps through Captum, oriented like re-label distillation's maps.

``attribute(method, model_or_teacher, image, ...)`` → an (H, W) float64 map of one image
(3, H, W) in [0, 1]. Every map is oriented towards the teacher's *decision* on the image
(label = prob >= 0.5): positive values are evidence for that decision (fake evidence for a
fake decision, real evidence for a real one), as :class:`fmkit.interpret.relabel.Explanation`
maps are. Methods (:data:`METHODS`):

- ``gradcam``: Captum ``LayerGradCam`` on a layer of the detector (default: the timm
  backbone's last feature stage, ``feature_info[-1]`` — ``layer4`` of resnet18; else the last
  convolution), of the decision logit (+logit for fake, −logit for real), ReLU-ed as in
  Grad-CAM (Selvaraju et al. 2017), upsampled bilinearly with ``LayerAttribution.interpolate``.
  Non-negative; coarse (2 × 2 for resnet18 at 64 px).
- ``ig``: ``IntegratedGradients`` of the decision logit from a black image (baseline 0),
  ``steps`` Riemann steps, summed over the colour channels.
- ``occlusion``: ``Occlusion`` of the teacher's decision probability with a black square
  ``window`` px wide (default side // 8) moved by ``stride`` (default window // 2): the average
  drop of the decision probability over the windows covering a pixel.
- ``lime``: Captum ``Lime`` on superpixels (scikit-image SLIC, about ``segments`` of them;
  ``superpixels="grid"``, or SLIC finding a single segment, e.g. on noise: a square grid of about
  ``segments`` cells); an absent superpixel is black;
  ``n_samples`` perturbations, Captum's default exponential cosine-distance kernel and a ridge
  surrogate (alpha 1, as the original LIME) of the decision probability; seeded with ``seed``
  (the global torch RNG is left untouched).
- ``random``: standard normal noise from ``numpy.random.default_rng(seed)``: the chance baseline.

The gradient methods (``gradcam``, ``ig``) need the ``nn.Module`` detector returning logits;
the others accept it (wrapped by :func:`fmkit.interpret.relabel.as_teacher`) or any teacher
callable. A video model (int attribute ``clip_len``, or ``clip_len=`` given) sees each image as a
still clip, as in :func:`~fmkit.interpret.relabel.as_teacher`; its Grad-CAM map is averaged over time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from fmkit.engine.loop import logits_of
from fmkit.errors import FmkitError
from fmkit.interpret.relabel import Teacher, as_teacher, check_image, decision_scores, still_clip_len, teacher_probs
from fmkit.models.modes import eval_mode

METHODS = ("gradcam", "ig", "occlusion", "lime", "random")


class _DecisionLogit(nn.Module):
    """sign · logit of a detector (a still clip for video models): (N, 3, H, W) → (N,)."""

    def __init__(self, model: nn.Module, sign: float, clip_len: int | None) -> None:
        super().__init__()
        self.model, self.sign, self.clip_len = model, sign, clip_len

    def forward(self, x: Tensor) -> Tensor:
        if self.clip_len is not None:
            x = x.unsqueeze(2).expand(-1, -1, self.clip_len, -1, -1)
        return self.sign * logits_of(self.model, x)


def gradcam_layer(model: nn.Module, layer: str | None = None) -> nn.Module:
    """The module Grad-CAM reads: ``layer`` by name (in the model, or in its ``backbone``), else the
    timm backbone's last feature stage (``feature_info[-1]["module"]``), else the model's last convolution."""
    backbone = getattr(model, "backbone", None)
    if layer is not None:
        for root in (model, backbone):
            if isinstance(root, nn.Module):
                try:
                    return root.get_submodule(layer)
                except AttributeError:
                    pass
        raise FmkitError(f"gradcam layer {layer!r} is not a module of {type(model).__name__} or its backbone")
    info = getattr(backbone, "feature_info", None)
    if isinstance(backbone, nn.Module) and isinstance(info, list) and info and "module" in info[-1]:
        return backbone.get_submodule(info[-1]["module"])
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise FmkitError(f"gradcam needs a convolutional layer; {type(model).__name__} has none (pass layer=)")
    return convs[-1]


def _grid_mask(hw: tuple[int, int], segments: int) -> np.ndarray:
    cells = max(1, round(segments**0.5))
    rows = np.minimum(np.arange(hw[0]) * cells // hw[0], cells - 1)
    cols = np.minimum(np.arange(hw[1]) * cells // hw[1], cells - 1)
    return rows[:, None] * cells + cols[None, :]


def _segments(x: Tensor, superpixels: str, segments: int) -> np.ndarray:
    hw = (x.shape[1], x.shape[2])
    if superpixels == "grid":
        return _grid_mask(hw, segments)
    from skimage.segmentation import slic

    labels = slic(x.permute(1, 2, 0).numpy().astype(np.float64), n_segments=segments, compactness=10, start_label=0)
    labels = np.unique(labels, return_inverse=True)[1].reshape(hw)  # consecutive ids 0..K−1
    return labels if labels.max() > 0 else _grid_mask(hw, segments)  # SLIC finds no structure in noise


def attribute(
    method: str,
    model_or_teacher: nn.Module | Teacher,
    image: Tensor | np.ndarray,
    *,
    seed: int = 0,
    layer: str | None = None,
    steps: int = 32,
    window: int | None = None,
    stride: int | None = None,
    n_samples: int = 200,
    segments: int = 50,
    superpixels: Literal["slic", "grid"] = "slic",
    batch_size: int = 64,
    clip_len: int | None = None,
) -> np.ndarray:
    """An (H, W) float64 attribution map of ``image`` (3, H, W) in [0, 1]; positive = evidence for the decision.

    Args:
        method: one of :data:`METHODS` (module docstring).
        model_or_teacher: the detector (``nn.Module`` returning fake logits; required by
            ``gradcam`` and ``ig``) or a teacher callable (images → fake probabilities (N,)).
        seed: seed of ``lime`` and ``random``.
        layer: ``gradcam``'s module name (default: the backbone's last feature stage).
        steps: ``ig``'s integration steps.
        window, stride: ``occlusion``'s square window and step in px (defaults: side // 8, window // 2).
        n_samples: ``lime``'s perturbed samples.
        segments, superpixels: ``lime``'s features: ``"slic"`` superpixels or a ``"grid"`` of cells, about
            ``segments`` of them.
        batch_size: images per forward pass (IG steps, occlusion windows, LIME samples).
        clip_len: frames of the still clip a video detector sees (default: its ``clip_len``
            attribute; see :func:`~fmkit.interpret.relabel.as_teacher`).
    """
    if method not in METHODS:
        raise FmkitError(f"unknown attribution method {method!r}; expected one of {', '.join(METHODS)}")
    x = check_image(image)
    hw = (x.shape[1], x.shape[2])
    if method == "random":
        return np.random.default_rng(seed).standard_normal(hw)
    is_model = isinstance(model_or_teacher, nn.Module)
    if not is_model and not callable(model_or_teacher):
        raise FmkitError(f"attribute needs a detector or a teacher callable, got {type(model_or_teacher).__name__}")
    teacher = as_teacher(model_or_teacher, batch_size, clip_len) if is_model else model_or_teacher
    label = int(float(teacher_probs(teacher, x[None])[0]) >= 0.5)
    if method in ("gradcam", "ig"):
        if not is_model:
            raise FmkitError(f"attribution method {method} needs the nn.Module detector (its logits), not a teacher")
        frames = still_clip_len(model_or_teacher, clip_len)
        return _gradient_map(
            method, model_or_teacher, x, label, frames, layer=layer, steps=steps, batch_size=batch_size
        )
    if method == "occlusion":
        return _occlusion(teacher, x, label, window, stride, batch_size)
    return _lime(teacher, x, label, seed, n_samples, segments, superpixels, batch_size)


def _gradient_map(
    method: str,
    model: nn.Module,
    x: Tensor,
    label: int,
    clip_len: int | None,
    *,
    layer: str | None,
    steps: int,
    batch_size: int,
) -> np.ndarray:
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

    device = next(iter(model.parameters()), torch.empty(0)).device
    inputs = x[None].to(device)
    forward = _DecisionLogit(model, 1.0 if label == 1 else -1.0, clip_len)
    with eval_mode(model), torch.enable_grad():
        if method == "gradcam":
            cam = LayerGradCam(forward, gradcam_layer(model, layer)).attribute(inputs, relu_attributions=True)
            if cam.dim() == 5:  # (N, 1, T, h, w) of a video model
                cam = cam.mean(2)
            if cam.dim() != 4:
                raise FmkitError(f"gradcam layer output must be (N, C, h, w), got attributions {tuple(cam.shape)}")
            out = LayerAttribution.interpolate(cam, tuple(x.shape[1:]), interpolate_mode="bilinear")[0].sum(0)
        else:
            if steps < 1:
                raise FmkitError(f"ig needs steps >= 1, got {steps}")
            attr = IntegratedGradients(forward).attribute(
                inputs, baselines=torch.zeros_like(inputs), n_steps=steps, internal_batch_size=batch_size
            )
            out = attr[0].sum(0)
    return out.detach().double().cpu().numpy()


def _decision_forward(teacher: Teacher, label: int, batch_size: int) -> Callable[[Tensor], Tensor]:
    """images → the teacher's probability of decision ``label``, float32 (Captum's forward function)."""

    def forward(images: Tensor) -> Tensor:
        return decision_scores(teacher_probs(teacher, images.detach(), batch_size), label).float()

    return forward


def _occlusion(
    teacher: Teacher, x: Tensor, label: int, window: int | None, stride: int | None, batch_size: int
) -> np.ndarray:
    from captum.attr import Occlusion

    side = min(x.shape[1], x.shape[2])
    window = window or max(1, side // 8)
    stride = stride or max(1, window // 2)
    if not 1 <= window <= side or stride < 1:
        raise FmkitError(f"occlusion needs 1 <= window <= {side} and stride >= 1, got window={window}, stride={stride}")
    attr = Occlusion(_decision_forward(teacher, label, batch_size)).attribute(
        x[None],
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=0.0,
        perturbations_per_eval=batch_size,
    )
    return attr[0].mean(0).double().numpy()


def _lime(
    teacher: Teacher, x: Tensor, label: int, seed: int, n_samples: int, segments: int, superpixels: str, batch_size: int
) -> np.ndarray:
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    if superpixels not in ("slic", "grid") or segments < 1 or n_samples < 2:
        raise FmkitError(
            f"lime needs superpixels 'slic' or 'grid', segments >= 1, n_samples >= 2; "
            f"got superpixels={superpixels!r}, segments={segments}, n_samples={n_samples}"
        )
    feature_mask = torch.from_numpy(_segments(x, superpixels, segments)).long()[None, None].expand(1, 3, -1, -1)
    lime = Lime(_decision_forward(teacher, label, batch_size), interpretable_model=SkLearnRidge(alpha=1.0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attr = lime.attribute(
            x[None], baselines=0.0, feature_mask=feature_mask, n_samples=n_samples, perturbations_per_eval=batch_size
        )
    return attr[0].mean(0).double().numpy()
