"""Models and the one model registry: ``create_model(name, **kw)``, ``list_models()``,
and ``load(path)`` for a trained model (see :mod:`fmkit.models.checkpoint`).

Importing this package registers every model: ``whitening`` (Concept Whitening frame
detector) and ``baseline2d`` (the plain backbone), see :mod:`fmkit.models.detector`; the video
detectors ``td3dcnn``, ``td3dcnn_nodrop`` and ``r3d18``, see :mod:`fmkit.models.td3dcnn`; the
convolutional VAE ``vae`` of re-label distillation, see :mod:`fmkit.models.vae`.
"""

from fmkit.models import detector, td3dcnn, vae  # noqa: F401  (register every model)
from fmkit.models.checkpoint import load
from fmkit.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "load", "register_model"]
