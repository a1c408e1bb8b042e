"""The one training and evaluation engine of fmkit, shared by every model.

- ``train(config, data, out, resume=False, epochs=None, callbacks=())`` → run folder
  (``fmkit.engine.trainer``);
- ``evaluate(model, dataset, ...)`` → metrics dict, ``predict(model, dataset, ...)`` →
  DataFrame of probabilities (``fmkit.engine.loop``);
- ``resolve_config(config, ...)``: a validated training config (``fmkit.config``);
- the hooks a model or callback can define: ``fmkit.engine.hooks``; the callbacks that
  configs name: ``fmkit.engine.callbacks``.
"""

from fmkit.config import resolve_config
from fmkit.engine.callbacks import ConceptAlignment
from fmkit.engine.hooks import TrainContext
from fmkit.engine.loop import evaluate, predict
from fmkit.engine.trainer import train

__all__ = ["ConceptAlignment", "TrainContext", "evaluate", "predict", "resolve_config", "train"]
