"""Every registered model trains under DistributedDataParallel: two CPU ranks (gloo) end with one model.

Each rank saves its full state dict (parameters and buffers: BatchNorm and whitening
running statistics, the whitening rotation) after every epoch; both ranks must hold the
same tensors, and rank 0 alone writes the run folder.
"""

import json

import pytest
import torch
from conftest import run_ranks

from fmkit.config import train_config
from fmkit.engine import train
from fmkit.models import list_models

#: Tiny settings per model (32 px crops, small widths) on the synthetic faces (4 crops per video).
SETTINGS = {
    "baseline2d": ["data.size=32", "data.batch_size=8"],
    "whitening": ["data.size=32", "data.batch_size=8", "model.group_size=64", "callbacks.concept_alignment.every=1"],
    "td3dcnn": ["data.size=32", "data.batch_size=4", "data.clip_len=3", "model.width=8", "data.short_videos=skip"],
    "td3dcnn_nodrop": [
        "data.size=32",
        "data.batch_size=4",
        "data.clip_len=3",
        "model.width=8",
        "data.short_videos=skip",
    ],
    "r3d18": ["data.size=32", "data.batch_size=4", "data.clip_len=3", "data.short_videos=skip"],
    "vae": ["data.batch_size=8", "model.width=8", "model.latent=8"],
}


class SaveState:
    """Each rank saves its model's state dict and step count after every epoch."""

    def __init__(self, out) -> None:
        self.out = out

    def on_epoch_end(self, ctx, row: dict) -> None:
        state = {k: v.detach().clone() for k, v in ctx.model.state_dict().items() if isinstance(v, torch.Tensor)}
        torch.save(
            {"state": state, "step": ctx.global_step, "world": ctx.env.world_size}, self.out / f"r{ctx.env.rank}.pt"
        )


def test_every_registered_model_has_tiny_ddp_settings():
    assert set(SETTINGS) == set(list_models()), "a new model needs its entry here (and must train under DDP)"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_two_gloo_ranks_end_with_the_same_model(name, synth_faces, tmp_path):
    cfg = train_config(name, settings=[*SETTINGS[name], "device=cpu"], epochs=1)
    run_ranks(lambda: train(cfg, synth_faces, tmp_path / "run", callbacks=[SaveState(tmp_path)]), tmp_path)
    a, b = (torch.load(tmp_path / f"r{r}.pt") for r in (0, 1))
    assert a["world"] == 2 and a["step"] == b["step"] > 0
    assert a["state"].keys() == b["state"].keys()
    different = [k for k in a["state"] if not torch.equal(a["state"][k], b["state"][k])]
    assert not different, f"ranks disagree on {different[:5]}"
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["best_epoch"] == 1
    if name == "whitening":  # the whitening layer's statistics and rotation are among the compared buffers
        assert any("running_cov" in k for k in a["state"]) and any("rotation" in k for k in a["state"])
