"""Models and the one model registry: ``create_model(name, **kw)``, ``list_models()``,
and ``load(path)`` for a trained model (see :mod:`fmkit.models.checkpoint`).

Importing this package registers every model: ``whitening`` (Concept Whitening frame
detector) and ``baseline2d`` (the plain backbone), see :mod:`fmkit.models.detector`.
"""

from fmkit.models import detector  # noqa: F401  (registers whitening, baseline2d)
from fmkit.models.checkpoint import load
from fmkit.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "load", "register_model"]
