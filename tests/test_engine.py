"""The training engine: run folder, checkpoint choice, resume, determinism, NaN, config, load()."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import run_ranks
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from fmkit.config import parse_assignments
from fmkit.data.schema import FACE_COLUMNS
from fmkit.engine import evaluate, predict, resolve_config, train
from fmkit.engine.data import train_loader
from fmkit.engine.distributed import DistEnv
from fmkit.engine.trainer import lr_factor
from fmkit.errors import FmkitError
from fmkit.models.checkpoint import load, read_checkpoint, save_checkpoint
from fmkit.models.registry import create_model, register_model, unregister_model


class TensorFaces(Dataset):
    """An in-memory dataset with the engine's interface: (x, y) items and video_ids."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, video_ids: list[str]) -> None:
        self.x, self.y, self.video_ids = x, y, video_ids

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def faces(n: int, seed: int, size: int = 8, per_video: int = 2, fake_signal: float = 0.6) -> TensorFaces:
    """Noise images; fakes carry a brighter first channel (learnable, not trivially)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) // per_video % 2).float()
    x = torch.rand(n, 3, size, size, generator=g)
    x[:, 0] += fake_signal * y[:, None, None]
    return TensorFaces(x, y, [f"s{seed}v{i // per_video}" for i in range(n)])


def splits() -> dict[str, TensorFaces]:
    return {"train": faces(24, 0), "val": faces(12, 1), "test": faces(12, 2)}


class TinyCNN(nn.Module):
    """A frame detector with dropout, so training consumes the global RNG."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3)
        )
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


class FlipDetector(nn.Module):
    """Scores ``sign · x[0, 0, 0]``; ``sign`` is +1 in epoch 2 only (set by a hook).

    On the val set below the score separates the classes with ``sign = +1``, on the test
    set with ``sign = -1``: val AUC is 0, 1, 0 over 3 epochs and test AUC 1, 0, 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("sign", torch.tensor(-1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sign * x[:, 0, 0, 0] + self.bias

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self(x), y)
        return {"loss": loss, "bias": self.bias.detach()}

    def on_epoch_start(self, ctx) -> None:
        self.sign.fill_(1.0 if ctx.epoch == 2 else -1.0)

    def on_epoch_end(self, ctx, row: dict) -> None:
        row["sign"] = float(self.sign)


class NanAfter(nn.Module):
    """A linear detector whose training loss turns NaN at training call ``nan_at``."""

    def __init__(self, nan_at: int = 3) -> None:
        super().__init__()
        self.nan_at, self.calls = nan_at, 0
        self.linear = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(2, 3))).squeeze(1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        loss = nn.functional.binary_cross_entropy_with_logits(self(batch[0]), batch[1])
        return loss * float("nan") if self.calls >= self.nan_at else loss


CNN = {
    "model": {"name": "engine_test_cnn", "width": 4},
    "epochs": 2,
    "seed": 3,
    "data": {"batch_size": 5, "augment": {"hflip": True}},
    "optim": {"lr": 0.05, "scheduler": "cosine"},
}


class Recorder:
    """A callback recording the hooks' calls; optionally kills the run at one step."""

    def __init__(self, kill_at: tuple[int, int] | None = None) -> None:
        self.kill_at, self.steps, self.started, self.rows = kill_at, [], 0, []

    def on_train_start(self, ctx) -> None:
        self.started += 1

    def on_train_batch_end(self, ctx, batch) -> None:
        self.steps.append((ctx.epoch, ctx.step, ctx.global_step))
        if (ctx.epoch, ctx.step) == self.kill_at:
            raise KeyboardInterrupt

    def on_epoch_end(self, ctx, row: dict) -> None:
        self.rows.append(dict(row))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns="seconds")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, Recorder]:
    """Two uninterrupted epochs of the tiny CNN."""
    rec = Recorder()
    run = train(CNN, splits(), tmp_path_factory.mktemp("straight") / "run", callbacks=[rec])
    return run, rec


def test_train_writes_every_run_file(straight) -> None:
    run, rec = straight
    for name in [
        "config.yaml",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "metrics.csv",
        "metrics.json",
        "learning_curves.png",
        "test_predictions.csv",
    ]:
        assert (run / name).is_file(), name
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"] == {"name": "engine_test_cnn", "width": 4} and cfg["optim"]["lr"] == 0.05
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["epoch"].tolist() == [1, 2]
    assert {"train_loss", "val_loss", "val_auc", "val_acc", "val_video_auc", "lr", "seconds"} <= set(rows.columns)
    assert rows["lr"].iloc[0] == pytest.approx(0.05) and rows["lr"].iloc[1] == pytest.approx(0.025)  # cosine
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["best_epoch"] in (1, 2) and summary["epochs"] == 2 and summary["monitor"] == "val_auc"
    assert summary["val"]["auc"] == pytest.approx(rows.loc[rows["epoch"] == summary["best_epoch"], "val_auc"].item())
    assert {"auc", "acc", "video_auc", "video_acc"} <= summary["test"].keys() and summary["test"]["n"] == 12
    assert (run / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(run / "test_predictions.csv")) == 12
    # hooks: 24 items / batch 5 → 4 full batches per epoch (the last partial one is dropped)
    assert rec.started == 1
    assert rec.steps == [(e, s, 4 * (e - 1) + s) for e in (1, 2) for s in range(1, 5)]
    assert [r["val_auc"] for r in rec.rows] == pytest.approx(rows["val_auc"].tolist())


def test_best_checkpoint_is_chosen_on_validation_never_test(tmp_path) -> None:
    def signal(x0: list[float], labels: list[float]) -> TensorFaces:
        x = torch.zeros(len(x0), 3, 2, 2)
        x[:, 0, 0, 0] = torch.tensor(x0)
        return TensorFaces(x, torch.tensor(labels, dtype=torch.float32), [f"v{i}" for i in range(len(x0))])

    data = {
        "train": signal([0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1]),
        "val": signal([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]),  # fakes high: sign +1 wins
        "test": signal([0.8, 0.9, 0.1, 0.2], [0, 0, 1, 1]),
    }  # fakes low: sign -1 wins
    run = train({"model": "engine_test_flip", "epochs": 3, "data": {"batch_size": 2}}, data, tmp_path / "run")
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["val_auc"].tolist() == [0.0, 1.0, 0.0]
    assert rows["sign"].tolist() == [-1.0, 1.0, -1.0]  # added by on_epoch_end
    assert "train_bias" in rows  # extra training_step output
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["best_epoch"] == 2
    assert summary["val"]["auc"] == 1.0 and summary["test"]["auc"] == 0.0  # test of best.pt, not the best test
    assert float(weights(run / "checkpoints/best.pt")["sign"]) == 1.0
    assert float(weights(run / "checkpoints/last.pt")["sign"]) == -1.0


def test_resume_after_a_kill_equals_the_uninterrupted_run(straight, tmp_path) -> None:
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(CNN, splits(), run, callbacks=[Recorder(kill_at=(2, 2))])
    assert read_checkpoint(run / "checkpoints/last.pt")["epoch"] == 1
    assert not (run / "metrics.json").exists()
    rec = Recorder()
    train(None, splits(), run, resume=True, callbacks=[rec])
    assert [s[2] for s in rec.steps] == [5, 6, 7, 8]  # only epoch 2 was trained again
    ref = straight[0]
    assert same_weights(weights(run / "checkpoints/last.pt"), weights(ref / "checkpoints/last.pt"))
    assert same_weights(weights(run / "checkpoints/best.pt"), weights(ref / "checkpoints/best.pt"))
    pd.testing.assert_frame_equal(history(run), history(ref))
    got, want = (json.loads((r / "metrics.json").read_text()) for r in (run, ref))
    assert got["test"] == want["test"] and got["best_epoch"] == want["best_epoch"]


def test_one_epoch_then_resume_one_more_equals_two_epochs(straight, tmp_path) -> None:
    run = train(CNN, splits(), tmp_path / "run", epochs=1)
    assert read_checkpoint(run / "checkpoints/last.pt")["epoch"] == 1
    train(None, splits(), run, resume=True, epochs=2)
    assert same_weights(weights(run / "checkpoints/last.pt"), weights(straight[0] / "checkpoints/last.pt"))
    pd.testing.assert_frame_equal(history(run), history(straight[0]))
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2


def test_training_is_deterministic_for_a_seed(straight, tmp_path) -> None:
    again = train(CNN, splits(), tmp_path / "again")
    other = train({**CNN, "seed": 4}, splits(), tmp_path / "other")
    ref = weights(straight[0] / "checkpoints/last.pt")
    assert same_weights(weights(again / "checkpoints/last.pt"), ref)
    pd.testing.assert_frame_equal(history(again), history(straight[0]))
    assert not same_weights(weights(other / "checkpoints/last.pt"), ref)


def test_data_order_depends_on_seed_and_epoch_only() -> None:
    ds = TensorFaces(torch.arange(20.0)[:, None], torch.zeros(20), [str(i) for i in range(20)])
    cfg = {"batch_size": 20, "num_workers": 0, "balance": False}

    def order(epoch: int, seed: int = 0, rank: int = 0, world: int = 1) -> list[int]:
        loader = train_loader(ds, cfg, seed, epoch, DistEnv(rank=rank, world_size=world), pin_memory=False)
        return [int(v) for x, _ in loader for v in x[:, 0]]

    torch.manual_seed(123)
    first = order(1)
    torch.manual_seed(456)  # the global RNG plays no part
    assert order(1) == first and sorted(first) == list(range(20))
    assert order(2) != first and order(1, seed=1) != first
    shards = order(1, rank=0, world=2) + order(1, rank=1, world=2)
    assert sorted(shards) == list(range(20))


def test_a_finished_run_is_not_overwritten_and_resume_skips_it(straight, tmp_path) -> None:
    run = straight[0]
    with pytest.raises(FmkitError, match="already holds a training run"):
        train(CNN, splits(), run)
    before = (run / "checkpoints/last.pt").stat().st_mtime_ns
    rec = Recorder()
    train(CNN, splits(), run, resume=True, callbacks=[rec])
    assert rec.steps == [] and (run / "checkpoints/last.pt").stat().st_mtime_ns == before
    with pytest.raises(FmkitError, match=r"differs .* optim\.lr"):
        train({**CNN, "optim": {"lr": 0.1}}, splits(), run, resume=True)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    cfg = {"model": {"name": "engine_test_nan", "nan_at": 6}, "epochs": 3, "data": {"batch_size": 6}}
    with pytest.raises(FmkitError) as err:  # 24 items / 6 → 4 steps per epoch: call 6 = epoch 2 step 2
        train(cfg, splits(), run)
    message = str(err.value)
    assert message.startswith("loss became NaN at epoch 2 step 2") and "\n" not in message
    last = read_checkpoint(run / "checkpoints/last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1]
    assert not (run / "metrics.json").exists()


def test_config_defaults_merge_and_validation(tmp_path) -> None:
    cfg = resolve_config({"model": "engine_test_cnn", "optim": {"lr": "1e-3"}}, epochs=4)
    assert cfg["model"] == {"name": "engine_test_cnn"} and cfg["optim"]["lr"] == 1e-3 and cfg["epochs"] == 4
    assert cfg["optim"]["optimizer"] == "adam" and cfg["data"]["kind"] == "frame" and cfg["device"] == "auto"
    file = tmp_path / "cfg.yaml"
    file.write_text("model: {name: engine_test_cnn, width: 2}\ndata: {kind: clip, clip_len: 4}\n")
    cfg = resolve_config(file)
    assert cfg["model"]["width"] == 2 and cfg["data"]["clip_len"] == 4 and cfg["data"]["batch_size"] == 32
    file.write_text("model: [unclosed\n")
    with pytest.raises(FmkitError, match="not valid YAML"):
        resolve_config(file)
    with pytest.raises(FmkitError, match="cannot read config"):
        resolve_config(tmp_path / "missing.yaml")


BAD_CONFIGS = {
    "unknown top-level key": (
        {"model": "m", "optimizer": "adam"},
        "unknown config key 'optimizer'; did you mean 'optim.optimizer'?",
    ),
    "unknown nested key": (
        {"model": "m", "optim": {"lrr": 1}},
        "unknown config key 'optim.lrr'; did you mean 'optim.lr'?",
    ),
    "bad choice": ({"model": "m", "optim": {"optimizer": "rmsprop"}}, "optim.optimizer must be one of"),
    "zero lr": ({"model": "m", "optim": {"lr": 0}}, "optim.lr must be a number > 0"),
    "zero batch": ({"model": "m", "data": {"batch_size": 0}}, "data.batch_size must be an integer >= 1"),
    "bad kind": ({"model": "m", "data": {"kind": "video"}}, "data.kind must be one of"),
    "bad device": ({"model": "m", "device": "gpu"}, "device must be"),
    "bool as text": ({"model": "m", "amp": "yes"}, "amp must be true or false"),
    "section as number": ({"model": "m", "data": 3}, "data must be a mapping"),
    "no model": ({"epochs": 2}, "model.name is missing"),
    "bad jpeg range": (
        {"model": "m", "data": {"augment": {"jpeg": [90, 30]}}},
        "data.augment.jpeg must be null or a pair",
    ),
}


@pytest.mark.parametrize("config, message", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_configs_are_one_line_errors(config, message) -> None:
    with pytest.raises(FmkitError, match=re.escape(message)):
        resolve_config(config)


def test_set_assignments_are_dotted_and_parsed_as_yaml() -> None:
    layer = parse_assignments(["optim.lr=3e-4", "data.size=128", "data.augment.jpeg=[30, 90]", "epochs=2"])
    assert layer == {"optim": {"lr": "3e-4"}, "data": {"size": 128, "augment": {"jpeg": [30, 90]}}, "epochs": 2}
    cfg = resolve_config({"model": "m"}, layer)
    assert cfg["optim"]["lr"] == 3e-4 and cfg["data"]["augment"]["jpeg"] == [30, 90] and cfg["epochs"] == 2
    for bad in ("optim.lr", "=3", "optim..lr=1"):
        with pytest.raises(FmkitError, match="expected KEY=VALUE"):
            parse_assignments([bad])


def test_warmup_then_cosine_schedule() -> None:
    factor = lr_factor("cosine", 2, 6)
    assert [round(factor(e), 3) for e in range(6)] == [0.1, 0.55, 1.0, 0.854, 0.5, 0.146]
    assert [lr_factor("none", 1, 3)(e) for e in range(3)] == [0.1, 1.0, 1.0]


def test_training_problems_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(FmkitError, match="no val items"):
        train({"model": "engine_test_cnn"}, {"train": faces(4, 0), "val": faces(0, 1)}, tmp_path / "a")
    with pytest.raises(FmkitError, match="unexpected keyword argument 'depth'"):
        train({"model": {"name": "engine_test_cnn", "depth": 3}}, splits(), tmp_path / "b")
    with pytest.raises(FmkitError, match="faces manifest not found"):
        train({"model": "engine_test_cnn"}, tmp_path / "nowhere", tmp_path / "c")
    with pytest.raises(FmkitError, match="unknown model 'no_such_model'"):
        train({"model": "no_such_model"}, splits(), tmp_path / "d")
    if not torch.cuda.is_available():
        with pytest.raises(FmkitError, match="CUDA is not available"):
            train({"model": "engine_test_cnn", "device": "cuda"}, splits(), tmp_path / "e")


def test_load_round_trip_gives_the_trained_model_in_eval_mode(straight, tmp_path) -> None:
    run = straight[0]
    model = load(run)
    assert not model.training and model.fmkit_config == {"name": "engine_test_cnn", "width": 4}
    test = splits()["test"]
    with torch.no_grad():
        probs = torch.sigmoid(model(test.x)).numpy()
        again = torch.sigmoid(load(run / "checkpoints" / "best.pt")(test.x)).numpy()
    saved = pd.read_csv(run / "test_predictions.csv")
    np.testing.assert_allclose(probs, saved["prob"].to_numpy(), rtol=1e-6)
    np.testing.assert_array_equal(probs, again)
    assert predict(model, test)["prob"].to_numpy() == pytest.approx(probs)
    summary = json.loads((run / "metrics.json").read_text())
    assert evaluate(model, test)["auc"] == pytest.approx(summary["test"]["auc"])

    fresh = create_model("engine_test_cnn", width=3)
    path = save_checkpoint(tmp_path / "m.pt", fresh, note="hi")
    back = load(path)
    with torch.no_grad():
        assert torch.equal(back(test.x), fresh.eval()(test.x))
    assert read_checkpoint(path)["note"] == "hi"


def test_load_refuses_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(FmkitError, match="checkpoint not found"):
        load(tmp_path / "none.pt")
    with pytest.raises(FmkitError, match="has no checkpoints/best.pt"):
        load(tmp_path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(FmkitError, match="corrupt or unreadable"):
        load(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(FmkitError, match="not an fmkit checkpoint"):
        load(tmp_path / "other.pt")
    with pytest.raises(FmkitError, match="no fmkit_config"):
        save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 1))


class TinyClip(nn.Module):
    """A video detector on (N, 3, T, H, W) volumes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 3, padding=1)
        self.head = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3, 4))).squeeze(1)


def write_faces(folder: Path, videos: int = 6, frames: int = 3, size: int = 12) -> Path:
    """A faces folder by hand: crops and a faces.csv with the manifest columns."""
    rng = np.random.default_rng(0)
    rows = []
    for v in range(videos):
        label, split = v % 2, ["train", "train", "val", "val", "test", "test"][v]
        for f in range(frames):
            crop = f"crops/v{v}/{f}.png"
            (folder / crop).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / crop)
            rows.append(
                dict.fromkeys(FACE_COLUMNS, 0)
                | {
                    "video_id": f"v{v}",
                    "path": f"v{v}.mp4",
                    "label": label,
                    "split": split,
                    "method": "fake" if label else "real",
                    "dataset": "hand",
                    "source_id": f"s{v}",
                    "frame_idx": f,
                    "crop_path": crop,
                    "mask_path": "",
                    "crop_size": size,
                }
            )
    pd.DataFrame(rows, columns=FACE_COLUMNS).to_csv(folder / "faces.csv", index=False)
    return folder


def test_training_from_a_faces_folder_with_frames_and_clips(tmp_path) -> None:
    folder = write_faces(tmp_path / "faces")
    run = train(
        {"model": "engine_test_cnn", "epochs": 1, "data": {"size": 8, "batch_size": 4}}, folder, tmp_path / "frames"
    )
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["val"]["n"] == 6 and summary["val"]["n_videos"] == 2 and summary["test"]["n"] == 6
    clip_cfg = {
        "model": "engine_test_clip",
        "epochs": 1,
        "data": {"kind": "clip", "clip_len": 2, "eval_clips": 2, "size": 8, "batch_size": 2},
    }
    run = train(clip_cfg, folder, tmp_path / "clips")
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["test"]["n"] == 4 and summary["test"]["n_videos"] == 2  # 2 clips of 2 frames per video
    assert summary["monitor"] == "val_video_auc"  # clip detectors pick best.pt on the video score


class ParamSums:
    """Writes each rank's parameter sums and step count after every epoch."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_epoch_end(self, ctx, row: dict) -> None:
        sums = [float(p.detach().double().sum()) for p in ctx.model.parameters()]
        path = self.out / f"rank{ctx.env.rank}.json"
        path.write_text(json.dumps({"params": sums, "global_step": ctx.global_step, "world": ctx.env.world_size}))


def test_ddp_two_cpu_processes_with_gloo(tmp_path) -> None:
    """Two ranks train together: same weights on both, sharded steps, gathered evaluation."""
    run_ranks(
        lambda: train({**CNN, "device": "cpu"}, splits(), tmp_path / "run", callbacks=[ParamSums(tmp_path)]), tmp_path
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and ranks[0]["params"] == ranks[1]["params"]  # gradients were averaged
    assert ranks[0]["global_step"] == 2 * 2  # 12 items per rank / batch 5 → 2 steps per epoch
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["val"]["n"] == 12 and summary["test"]["n"] == 12  # gathered from both ranks, no duplicates
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch"].tolist() == [1, 2]


@pytest.fixture(scope="module", autouse=True)
def test_models() -> Iterator[None]:
    """Register this module's throw-away models for its tests, and remove them afterwards."""
    models = {
        "engine_test_cnn": TinyCNN,
        "engine_test_flip": FlipDetector,
        "engine_test_nan": NanAfter,
        "engine_test_clip": TinyClip,
    }
    for name, cls in models.items():
        register_model(name)(cls)
    yield
    for name in models:
        unregister_model(name)


def test_heldout_auc_tables_resample_identities(straight) -> None:
    from fmkit.engine.report import heldout_auc_difference, heldout_auc_table

    run, _ = straight
    pred = pd.read_csv(run / "test_predictions.csv", dtype={"video_id": str})
    identities = {v: v[:3] for v in pred["video_id"]}  # s2v0..s2v5 → one identity "s2v"
    table = heldout_auc_table({"cnn": run}, identities, resamples=100)
    assert table["level"].tolist() == ["frame", "video"] and (table["identities"] == 1).all()
    assert table[["lo", "hi"]].isna().all().all(), "one identity: no interval, never a made-up one"
    each = heldout_auc_table({"cnn": run}, {v: v for v in pred["video_id"]}, resamples=200)
    assert (each["lo"] <= each["auc"]).all() and (each["auc"] <= each["hi"]).all()
    assert heldout_auc_difference(run, run, {v: v for v in pred["video_id"]}, resamples=50) == (0.0, 0.0, 0.0)


def test_balanced_sampler_shows_as_many_reals_as_fakes_and_repeats_per_epoch() -> None:
    from fmkit.engine.data import BalancedSampler

    labels = torch.tensor([0] * 25 + [1] * 75)
    sampler = BalancedSampler(labels, seed=3)
    sampler.set_epoch(1)
    drawn = list(sampler)
    assert len(drawn) == 100 and 35 <= int((labels[drawn] == 0).sum()) <= 65
    assert list(sampler) == drawn, "one draw per (seed, epoch)"
    sampler.set_epoch(2)
    assert list(sampler) != drawn
    shards = [BalancedSampler(labels, seed=3, rank=r, world=2) for r in (0, 1)]
    for s in shards:
        s.set_epoch(1)
    assert sorted(list(shards[0]) + list(shards[1])) == sorted(drawn) and len(shards[0]) == 50
    with pytest.raises(FmkitError, match="both real and fake"):
        BalancedSampler(torch.zeros(4), seed=0)
