"""Engine callbacks that configs name (``callbacks: {NAME: {kwargs}}``) and registered models ask for.

A callback is an object with hooks of :mod:`fmkit.engine.hooks`. :data:`CALLBACKS` maps
config names to classes; :func:`build_callbacks` builds those a config names plus those
the model's registry entry asks for (``register_model(name, callbacks=(...))``).

:class:`ConceptAlignment` (``concept_alignment``) is the training half of Concept
Whitening (Chen, Bei & Rudin 2020): every ``every`` optimizer steps it draws a batch of
images of each concept (``fmkit.data.concepts``) and calls the model's
``concept_step(batches)``, one Cayley-transform step of the rotation R that maximises
J(R) = Σ_k mean_{x ∈ X_k} max_{h,w} (R x̂(x))_{k,h,w}; no network weight changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fmkit.data.concepts import concept_datasets, sample_concept_batch
from fmkit.engine import distributed
from fmkit.engine.hooks import TrainContext
from fmkit.errors import FmkitError
from fmkit.models.registry import model_callbacks


class ConceptAlignment:
    """Align the whitened axes of a ``whitening`` model with concepts built from the training faces.

    Args:
        every: one alignment step every this many optimizer steps (``ctx.global_step``).
        batch: images per concept in each step.
        patch_frac: concept patch side / crop side (facial-region concepts).

    The model's ``concepts`` (None: every concept the manifest supports; (): none) are
    resolved at the start of training and stored on the model (they travel with its
    weights: axis k ↔ concepts[k]). Batches are drawn by (seed, axis, global step), so a
    resumed run repeats the alignment exactly. Under DistributedDataParallel each rank whitens its own
    batch (the batch covariance is not all-reduced, as BatchNorm without SyncBatchNorm) and
    updates its own running statistics; before each step every rank takes rank 0's buffers
    (as DDP does at each forward), so every rank takes the same step and holds the same
    rotation. Logs ``whitening_error`` and
    ``concept_objective`` (the epoch's last step) into each metrics.csv row.
    """

    def __init__(self, every: int = 20, batch: int = 16, patch_frac: float = 0.35) -> None:
        if every < 1 or batch < 1 or not 0 < patch_frac <= 1:
            raise FmkitError(
                f"concept_alignment needs every >= 1, batch >= 1, 0 < patch_frac <= 1; "
                f"got every={every}, batch={batch}, patch_frac={patch_frac}"
            )
        self.every, self.batch, self.patch_frac = every, batch, patch_frac
        self._sets: list = []
        self._last: Any = None

    def on_train_start(self, ctx: TrainContext) -> None:
        model = ctx.model
        if not callable(getattr(model, "concept_step", None)):
            raise FmkitError(
                f"concept_alignment needs a model with concept_step (a whitening model), not {type(model).__name__}"
            )
        if not model.align:
            return
        if ctx.data is None:
            raise FmkitError(
                "concept alignment needs a faces folder to build its concept images from "
                "(train from a faces folder, or set model.concepts: [] for no alignment)"
            )
        sets = concept_datasets(
            ctx.data, model.concepts or None, split="train", size=ctx.config["data"]["size"], patch_frac=self.patch_frac
        )
        model.set_concepts(tuple(sets))
        self._sets = list(sets.values())

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self._last = None  # each row logs its own epoch's step (resumes alike)

    def on_train_batch_end(self, ctx: TrainContext, batch: Any) -> None:
        if not self._sets or ctx.global_step % self.every:
            return
        batches = [
            sample_concept_batch(ds, self.batch, (ctx.config["seed"], k, ctx.global_step)).to(ctx.device)
            for k, ds in enumerate(self._sets)
        ]
        # ranks update their running statistics on their own batches: take rank 0's, as DDP does
        distributed.broadcast_(list(ctx.model.buffers()))
        self._last = ctx.model.concept_step(batches)

    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        row["whitening_error"] = float(ctx.model.whitening.whitening_error)
        if self._last is not None:
            row["concept_objective"] = self._last.after


#: Callbacks by config name.
CALLBACKS: dict[str, type] = {"concept_alignment": ConceptAlignment}


def build_callbacks(model_name: str, config: Mapping[str, Any] | None, given: Sequence[object] = ()) -> list[object]:
    """The callbacks of a run: the model's registry defaults and those ``config`` names (with its kwargs),
    then ``given``. A config entry set to null (``concept_alignment: null``) turns a default off."""
    config = dict(config or {})
    names = list(dict.fromkeys([*model_callbacks(model_name), *config]))
    out: list[object] = []
    for name in names:
        if name not in CALLBACKS:
            raise FmkitError(f"unknown callback {name!r} in config callbacks; known: {', '.join(CALLBACKS)}")
        kwargs = config.get(name, {})
        if name in config and kwargs is None:
            continue
        if not isinstance(kwargs, Mapping):
            raise FmkitError(f"config callbacks.{name} must be a mapping of arguments or null, got {kwargs!r}")
        try:
            out.append(CALLBACKS[name](**kwargs))
        except TypeError as err:
            raise FmkitError(f"callback {name}: {err}") from None
    return [*out, *given]


class VAEFigures:
    """After each epoch, draw a generative model's reconstructions and samples into the run folder (rank 0).

    Writes ``reconstructions.png`` (the first ``n`` validation images, top row, over their
    reconstructions ``model(x)``, bottom row) and ``samples.png`` (``model.sample(n)`` from
    a ``torch.Generator`` seeded with ``seed``), each replaced atomically every epoch. The
    same items and latents are drawn every epoch, so the figures show training progress
    only; nothing touches the global RNG. The model (a ``vae``) needs ``sample(n, generator)``
    and a ``forward`` that returns reconstructions in [0, 1]; it runs in eval mode.

    Args:
        n: images per figure (at most the validation set's size for reconstructions).
        seed: seed of the samples' latents.
    """

    def __init__(self, n: int = 8, seed: int = 0) -> None:
        if n < 1:
            raise FmkitError(f"vae_figures needs n >= 1, got n={n}")
        self.n, self.seed = n, seed

    def on_train_start(self, ctx: TrainContext) -> None:
        if not callable(getattr(ctx.model, "sample", None)):
            raise FmkitError(
                f"vae_figures needs a model with sample(n, generator) (a vae), not {type(ctx.model).__name__}"
            )

    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        if not ctx.env.is_main:
            return
        import torch
        from matplotlib.figure import Figure

        from fmkit.io import atomic_path
        from fmkit.models.modes import eval_mode

        val = ctx.datasets["val"]
        x = torch.stack([val[i][0] for i in range(min(self.n, len(val)))]).to(ctx.device)
        with eval_mode(ctx.model):
            recon = ctx.model(x)
            samples = ctx.model.sample(self.n, generator=torch.Generator().manual_seed(self.seed))

        def save(rows: list, name: str, title: str) -> None:
            cols = max(len(r) for r in rows)
            fig = Figure(figsize=(1.2 * cols, 1.3 * len(rows) + 0.3))
            axes = fig.subplots(len(rows), cols, squeeze=False)
            for ax in axes.ravel():
                ax.set_axis_off()
            for r, images in enumerate(rows):
                for c, img in enumerate(images):
                    axes[r, c].imshow(img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            fig.suptitle(f"{title}, epoch {ctx.epoch}", fontsize=9)
            with atomic_path(ctx.run_dir / name) as tmp:
                fig.savefig(tmp, dpi=80)

        save([list(x), list(recon)], "reconstructions.png", "validation images (top) and reconstructions")
        save([list(samples)], "samples.png", "samples from N(0, I)")


CALLBACKS["vae_figures"] = VAEFigures
