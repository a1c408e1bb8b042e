"""Self-Blended Images training: pairs of a real crop and a fresh self-blend of it."""

import torch

from fmkit.config import resolve_config
from fmkit.data.datasets import FrameDataset
from fmkit.data.sbi import SelfBlendPairs, collate_pairs
from fmkit.engine import train
from fmkit.engine.data import build_datasets, train_loader
from fmkit.engine.distributed import DistEnv


def test_pairs_are_a_real_crop_and_its_blend_drawn_by_seed_epoch_and_index(synth_faces):
    crops = FrameDataset(synth_faces, split="train")
    pairs = SelfBlendPairs(crops, seed=3, with_masks=True)
    assert len(pairs) == int((crops.frame["label"] == 0).sum()) > 0
    x, y, m = pairs[1]
    assert x.shape == (2, 3, 64, 64) and y.tolist() == [0.0, 1.0] and m.shape == (2, 64, 64)
    untouched = m[1] == 0
    assert torch.equal(x[0][:, untouched], x[1][:, untouched]) and not torch.equal(x[0], x[1])
    assert torch.equal(pairs[1][0], x), "one blend per (seed, epoch, index)"
    pairs.set_epoch(1)
    assert not torch.equal(pairs[1][0][1], x[1]), "a fresh blend every epoch"
    xb, yb, _ = collate_pairs([pairs[0], pairs[1]])
    assert xb.shape == (4, 3, 64, 64) and yb.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_sbi_training_uses_only_real_crops_and_is_balanced(synth_faces, tmp_path):
    cfg = resolve_config(
        {
            "model": {"name": "baseline2d"},
            "data": {"size": 32, "batch_size": 8, "sbi": True},
            "epochs": 1,
            "device": "cpu",
        }
    )
    datasets = build_datasets(synth_faces, cfg["data"], seed=0)
    assert isinstance(datasets["train"], SelfBlendPairs) and not isinstance(datasets["val"], SelfBlendPairs)
    x, y = next(iter(train_loader(datasets["train"], cfg["data"], 0, 1, DistEnv(), pin_memory=False)))
    assert x.shape == (8, 3, 32, 32) and y.tolist() == [0.0, 1.0] * 4
    run = train(cfg, synth_faces, tmp_path / "run")
    assert (run / "checkpoints" / "best.pt").is_file()
