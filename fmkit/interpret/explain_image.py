"""Explain a trained detector's decision on one image file: what ``fmkit explain`` runs.

The face is found and cropped as ``fmkit predict`` crops it, i.e. as ``fmkit preprocess`` cropped
the run's training faces (:class:`fmkit.predict.Predictor`: MTCNN, the largest face, the
training folder's margin, crop size and JPEG quality, then the evaluation resize), or the file
is taken as a crop already (only resized). The decision is explained by re-label distillation
(:class:`fmkit.interpret.relabel.ReLabelDistiller`, with a trained ``vae`` run) or by a Captum
baseline (:func:`fmkit.interpret.attribution.attribute`). Video detectors see the face as a
still clip of their training clip length.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmkit.data.datasets import read_rgb
from fmkit.errors import FmkitError
from fmkit.interpret.attribution import METHODS, attribute
from fmkit.interpret.relabel import ReLabelDistiller, as_teacher
from fmkit.models.checkpoint import load
from fmkit.predict import Predictor

#: ``fmkit explain --method`` choices: re-label distillation and the Captum baselines.
EXPLAIN_METHODS = ("relabel", *(m for m in METHODS if m != "random"))


@dataclass
class FileExplanation:
    """One explained image: the face crop (H, W, 3) in [0, 1], its signed map (H, W), the detector's
    fake probability and decision, the face box in the file's pixels (None for a given crop), the
    distiller's fidelity (re-label distillation only) and the seconds the explanation took."""

    path: str
    method: str
    image: np.ndarray
    map: np.ndarray
    prob: float
    label: int
    box: list[float] | None
    fidelity: dict[str, float] | None
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The numbers (no arrays), for ``--json``."""
        return {
            "image": self.path,
            "method": self.method,
            "prob": round(self.prob, 6),
            "label": "fake" if self.label else "real",
            "box": self.box,
            "map_min": float(self.map.min()),
            "map_max": float(self.map.max()),
            "fidelity": self.fidelity,
            "seconds": round(self.seconds, 3),
        }


def explain_file(
    run: str | os.PathLike,
    path: str | os.PathLike,
    method: str = "relabel",
    vae_run: str | os.PathLike | None = None,
    *,
    n_samples: int = 1000,
    sigma: float = 1.0,
    seed: int = 0,
    is_crop: bool = False,
    margin: float | None = None,
    device: str = "cpu",
) -> FileExplanation:
    """Explain the decision of the detector ``run`` on the face of image ``path`` with ``method``."""
    if method not in EXPLAIN_METHODS:
        raise FmkitError(f"unknown explanation method {method!r}: expected one of {', '.join(EXPLAIN_METHODS)}")
    if method == "relabel" and vae_run is None:
        raise FmkitError(
            "re-label distillation needs a trained VAE: --vae VAE_RUN (fmkit train vae --data FACES -o VAE_RUN)"
        )
    path = Path(path)
    if not path.is_file():
        raise FmkitError(f"image not found: {path}")
    predictor = Predictor(run, device=device, margin=margin)
    if is_crop:
        image, box = predictor.as_input(read_rgb(path)), None
    else:
        image, face = predictor.faces(path)[0]
        box = [round(float(v), 1) for v in face.box]
    model, clip_len = predictor.model, predictor.clip_len
    start = time.perf_counter()
    teacher = as_teacher(model, clip_len=clip_len)
    fidelity = None
    if method == "relabel":
        vae = load(vae_run, device=device)
        result = ReLabelDistiller(teacher, vae, n_samples=n_samples, sigma=sigma, seed=seed).explain(image)
        saliency, prob, label, fidelity = result.map, result.prob, result.label, result.fidelity
    else:
        prob = float(teacher(image[None])[0])
        label = int(prob >= 0.5)
        saliency = attribute(method, model, image, clip_len=clip_len, seed=seed)
    return FileExplanation(
        path=str(path),
        method=method,
        image=image.permute(1, 2, 0).numpy(),
        map=np.asarray(saliency, dtype=np.float64),
        prob=float(prob),
        label=int(label),
        box=box,
        fidelity=fidelity,
        seconds=time.perf_counter() - start,
    )
