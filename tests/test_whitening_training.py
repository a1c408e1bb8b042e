"""Training the whitening detector with the engine: concept alignment hooks, logging, load, resume, CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import run_ranks

import fmkit.engine.callbacks as callbacks_module
from fmkit.cli import main
from fmkit.data.concepts import CONCEPTS
from fmkit.engine import resolve_config, train
from fmkit.engine.data import build_datasets
from fmkit.engine.evaluation import data_name
from fmkit.errors import FmkitError
from fmkit.models import load
from fmkit.models.checkpoint import read_checkpoint

GROUP = 64
CFG = {
    "model": {"name": "whitening", "mode": "exact", "group_size": GROUP, "layer": "layer4.1.bn2"},
    "callbacks": {"concept_alignment": {"every": 1, "batch": 4}},
    "data": {"size": 32, "batch_size": 8},
    "epochs": 2,
    "seed": 0,
    "device": "cpu",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def config(every: int = 1, **model) -> dict:
    return {**CFG, "model": {**CFG["model"], **model}, "callbacks": {"concept_alignment": {"every": every, "batch": 4}}}


class Keep:
    """A callback keeping the trained model object (after ``train`` it holds the best state)."""

    def on_train_start(self, ctx) -> None:
        self.model = ctx.model


class SnapshotBefore:
    """A callback copying the run folder when epoch ``epoch`` starts: a run killed right there."""

    def __init__(self, epoch: int, to: Path) -> None:
        self.epoch, self.to = epoch, to

    def on_epoch_start(self, ctx) -> None:
        if ctx.epoch == self.epoch:
            shutil.copytree(ctx.run_dir, self.to)


def rotation(run: Path, name: str = "last") -> torch.Tensor:
    return read_checkpoint(run / "checkpoints" / f"{name}.pt")["model"]["backbone.layer4.1.bn2.rotation"]


def orthogonality_error(r: torch.Tensor) -> float:
    r = r.double()
    eye = torch.eye(r.shape[-1], dtype=torch.float64)
    return float(torch.linalg.matrix_norm(r.transpose(-1, -2) @ r - eye).max())


def history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns="seconds")


@pytest.fixture(scope="module")
def straight(synth_faces, tmp_path_factory) -> tuple[Path, Keep]:
    """Two uninterrupted epochs, concepts resolved from the faces folder, alignment after every batch."""
    keep = Keep()
    return train(CFG, synth_faces, tmp_path_factory.mktemp("wt") / "straight", callbacks=[keep]), keep


def test_training_logs_the_whitening_error_and_the_concept_objective(straight):
    run, _ = straight
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["epoch"].tolist() == [1, 2]
    for column in ("whitening_error", "concept_objective"):
        assert column in rows, f"metrics.csv lacks {column}: {list(rows.columns)}"
        assert rows[column].map(math.isfinite).all(), rows[column]
    assert (rows["whitening_error"] < 1e-3).all(), "the exact mode whitens each group of 64 (m = 8 < 64: rank 7)"
    assert json.loads((run / "metrics.json").read_text())["test"]["auc"] is not None


def test_alignment_rotates_r_and_keeps_it_orthogonal(straight):
    run, _ = straight
    r = rotation(run)
    eye = torch.eye(GROUP).expand_as(r)
    assert float((r[0] - eye[0]).abs().max()) > 1e-2, "the concept axes (0-4, group 0) were rotated"
    assert torch.equal(r[1:], eye[1:]), "groups without a concept axis keep R = I"
    assert orthogonality_error(r) < 1e-4


def test_loaded_model_has_the_resolved_concepts_and_the_best_state(straight, synth_faces):
    run, keep = straight
    model = load(run)
    assert isinstance(model.concepts, tuple) and list(model.concepts) == list(CONCEPTS), model.concepts
    assert model.concepts == keep.model.concepts
    best = read_checkpoint(run / "checkpoints" / "best.pt")
    assert best["model"]["_extra_state"] == {"concepts": list(CONCEPTS)}
    assert torch.equal(model.whitening.rotation, best["model"]["backbone.layer4.1.bn2.rotation"])
    test = build_datasets(synth_faces, resolve_config(run / "config.yaml")["data"])["test"]
    x = torch.stack([test[i][0] for i in range(8)])
    trained = keep.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), trained(x)), "load(run) gives the in-memory model (best state) back"
    assert not model.training


def test_one_epoch_then_resume_equals_two_epochs_with_alignment(straight, synth_faces, tmp_path):
    run, _ = straight
    split = tmp_path / "split"
    train(CFG, synth_faces, split, epochs=1)
    assert pd.read_csv(split / "metrics.csv")["epoch"].tolist() == [1]
    train(CFG, synth_faces, split, resume=True, epochs=2)
    a, b = (
        read_checkpoint(run / "checkpoints" / "last.pt")["model"],
        read_checkpoint(split / "checkpoints" / "last.pt")["model"],
    )
    assert torch.equal(rotation(run), rotation(split)), "the same concept batches at the same steps"
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor)), "identical weights"
    pd.testing.assert_frame_equal(history(run), history(split))
    assert list(load(split).concepts) == list(CONCEPTS)


def test_resumed_run_logs_like_the_uninterrupted_one_when_an_epoch_has_no_alignment(synth_faces, tmp_path):
    # one batch per epoch, alignment at global steps 2 and 4: epochs 1 and 3 have none
    cfg = {**config(every=2), "data": {"size": 32, "batch_size": 16}, "epochs": 3}
    straight = train(cfg, synth_faces, tmp_path / "straight", callbacks=[SnapshotBefore(3, tmp_path / "killed")])
    resumed = train(cfg, synth_faces, tmp_path / "killed", resume=True)
    pd.testing.assert_frame_equal(history(straight), history(resumed))
    objective = history(straight)["concept_objective"]
    assert math.isnan(objective[0]) and math.isfinite(objective[1]), objective
    assert torch.equal(rotation(straight), rotation(resumed))


def test_no_concepts_means_no_alignment_and_needs_no_faces_folder(synth_faces, tmp_path):
    datasets = build_datasets(synth_faces, resolve_config(CFG)["data"])
    run = train(config(concepts=[]), datasets, tmp_path / "run", epochs=1)
    rows = pd.read_csv(run / "metrics.csv")
    assert "concept_objective" not in rows and rows["whitening_error"].map(math.isfinite).all()
    r = rotation(run)
    assert torch.equal(r, torch.eye(GROUP).expand_as(r)), "R stays the identity"
    assert load(run).concepts == ()


def test_alignment_without_a_faces_folder_is_a_clear_error(synth_faces, tmp_path):
    datasets = build_datasets(synth_faces, resolve_config(CFG)["data"])
    with pytest.raises(FmkitError, match="faces folder"):
        train(CFG, datasets, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


@pytest.fixture(scope="module")
def cli_run(synth_faces, tmp_path_factory) -> tuple[int, Path, list[tuple[str, tuple[int, ...]]]]:
    """``fmkit train whitening --config`` with two concepts, mouth first; records every concept draw."""
    folder = tmp_path_factory.mktemp("cli")
    cfg = {**config(every=2, concepts=["mouth", "left_eye"]), "epochs": 1}
    del cfg["model"]["name"]
    (folder / "train.yaml").write_text(yaml.safe_dump(cfg))
    draws: list[tuple[str, tuple[int, ...]]] = []
    sample = callbacks_module.sample_concept_batch

    def spy(dataset, n, key):
        draws.append((dataset.concept, tuple(key)))
        return sample(dataset, n, key)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(callbacks_module, "sample_concept_batch", spy)
        code = main(
            [
                "train",
                "whitening",
                "--data",
                str(synth_faces),
                "-o",
                str(folder / "run"),
                "--config",
                str(folder / "train.yaml"),
            ]
        )
    return code, folder / "run", draws


def test_cli_trains_and_evaluates_the_whitening_detector(cli_run, synth_faces, capsys):
    code, run, _ = cli_run
    assert code == 0
    assert (run / "checkpoints" / "best.pt").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(synth_faces), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out[: out.rindex("}") + 1])[data_name(synth_faces)]
    for key in ("auc", "video_auc"):
        assert 0 <= metrics[key] <= 1, metrics
    assert set(metrics["decorrelation"]) == {"unwhitened", "whitened"}
    assert list(metrics["concept_auc"]) == ["mouth", "left_eye"]
    existing = run.parent / "evaluation"
    existing.mkdir()
    assert main(["evaluate", str(run), "--data", str(synth_faces), "-o", str(existing), "--bootstrap", "50"]) == 0
    assert json.loads((existing / "metrics.json").read_text())[data_name(synth_faces)]["auc"] == metrics["auc"]


def test_explicit_concepts_keep_their_order_as_axes(cli_run):
    _, run, draws = cli_run
    assert load(run).concepts == ("mouth", "left_eye")
    assert "concept_objective" in pd.read_csv(run / "metrics.csv")
    # 16 training faces, batches of 8: global steps 1-2, alignment at step 2 only
    assert draws == [("mouth", (0, 0, 2)), ("left_eye", (0, 1, 2))], "axis k draws from the k-th concept given"
    r = rotation(run)
    assert float((r[0] - torch.eye(GROUP)).abs().max()) > 1e-3 and orthogonality_error(r) < 1e-4


class SaveWhitening:
    """Each rank saves its whitening buffers after every epoch."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_epoch_end(self, ctx, row: dict) -> None:
        w = ctx.model.whitening
        torch.save(
            {k: getattr(w, k).clone() for k in ("rotation", "running_cov", "running_mean")},
            self.out / f"rank{ctx.env.rank}.pt",
        )


def test_ddp_ranks_end_with_the_same_rotation_and_statistics(synth_faces, tmp_path):
    """Under DistributedDataParallel each rank whitens its own batch (the batch covariance is not
    all-reduced, like BatchNorm without SyncBatchNorm); the concept batches are drawn by (seed, axis,
    step) on every rank and DDP broadcasts rank 0's buffers, so all ranks hold one rotation."""
    run_ranks(
        lambda: train({**CFG, "epochs": 1}, synth_faces, tmp_path / "run", callbacks=[SaveWhitening(tmp_path)]),
        tmp_path,
    )
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(a["rotation"], b["rotation"]), "one rotation on every rank"
    assert float((a["rotation"][0] - torch.eye(GROUP)).abs().max()) > 1e-4, "an alignment step was taken"
