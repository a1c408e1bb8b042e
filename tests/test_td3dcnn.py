"""TD-3DCNN and the video detectors: temporal dropout, shapes, gradients, video-level scoring."""

import json

import numpy as np
import pytest
import torch

from fmkit.cli import main
from fmkit.data.datasets import ClipDataset, FrameDataset
from fmkit.engine import evaluate, predict
from fmkit.engine.evaluation import data_name
from fmkit.models import create_model, load
from fmkit.models.td3dcnn import TemporalDropout

VIDEO_MODELS = ("td3dcnn", "td3dcnn_nodrop", "r3d18")


def numbered_clip(n: int = 2, frames: int = 8) -> torch.Tensor:
    """Clips (n, 3, T, 4, 4) whose frame t is filled with the value t (so frames can be told apart)."""
    return torch.arange(frames, dtype=torch.float32).view(1, 1, frames, 1, 1).expand(n, 3, frames, 4, 4).clone()


def kept_positions(out: torch.Tensor) -> list[int]:
    """The distinct frames of a (dropped-out) clip, in order."""
    return list(dict.fromkeys(out[0, 0, :, 0, 0].long().tolist()))


def test_temporal_dropout_keeps_an_ordered_random_subset_per_batch():
    drop = TemporalDropout(keep=0.5).train()
    x = numbered_clip()
    draws = [kept_positions(drop(x)) for _ in range(20)]
    for kept in draws:
        assert len(kept) == 4, "keep 0.5 of 8 frames keeps 4"
        assert kept == sorted(kept), "kept frames stay in temporal order"
    assert len({tuple(k) for k in draws}) > 5, "every batch draws anew"
    out = drop(x)
    assert out.shape == x.shape, "the kept frames are resampled back to the clip length"
    frames = out[0, 0, :, 0, 0].long().tolist()
    assert frames == sorted(frames) and all(frames.count(f) == 2 for f in set(frames)), "each kept frame twice"
    assert torch.equal(out[0], out[1]), "one draw serves the whole batch"
    assert drop.last_index.tolist() == kept_positions(out)


def test_temporal_dropout_is_identity_in_eval_and_reproducible_under_a_seed():
    drop = TemporalDropout(keep=0.5)
    x = numbered_clip()
    assert drop.eval()(x) is x
    drop.train()
    torch.manual_seed(7)
    a = [kept_positions(drop(x)) for _ in range(3)]
    torch.manual_seed(7)
    b = [kept_positions(drop(x)) for _ in range(3)]
    assert a == b
    g = TemporalDropout(keep=0.5, generator=torch.Generator().manual_seed(1)).train()
    h = TemporalDropout(keep=0.5, generator=torch.Generator().manual_seed(1)).train()
    assert [kept_positions(g(x)) for _ in range(3)] == [kept_positions(h(x)) for _ in range(3)]
    assert kept_positions(TemporalDropout(keep=1.0).train()(x)) == list(range(8))
    assert TemporalDropout(keep=0.01).kept(8) == 1
    with pytest.raises(ValueError, match="keep ratio"):
        TemporalDropout(keep=0.0)


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_video_models_map_clips_to_logits_with_gradients(name, one_thread):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.rand(2, 3, 4, 32, 32)
    model.train()
    out = model(x)
    assert out.shape == (2,)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2,) and model(torch.rand(1, 3, 6, 48, 48)).shape == (1,)
    with pytest.raises(ValueError, match=r"clips \(N, 3, T, H, W\)"):
        model(torch.rand(2, 3, 32, 32))


def test_td3dcnn_trains_and_scores_volumes_of_one_length(one_thread):
    model = create_model("td3dcnn", keep=0.5).train()
    seen = []
    handle = model.features.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[2]))
    model(torch.rand(2, 3, 8, 32, 32))
    model.eval()
    with torch.no_grad():
        model(torch.rand(2, 3, 8, 32, 32))
    handle.remove()
    assert seen == [8, 8], "after temporal dropout the volume is resampled back to T frames"
    assert create_model("td3dcnn_nodrop").temporal_dropout.keep == 1.0


@pytest.mark.parametrize("name", ["baseline2d", "whitening"])
def test_frame_detectors_score_a_clip_by_its_mean_frame_probability(name, one_thread):
    model = create_model(name, backbone="resnet18").eval()
    clip = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        frame_probs = torch.sigmoid(model(clip.transpose(1, 2).reshape(6, 3, 32, 32))).reshape(2, 3)
        clip_probs = torch.sigmoid(model(clip))
    assert torch.allclose(clip_probs, frame_probs.mean(1), atol=1e-5)


def test_video_score_is_the_mean_of_its_clips(synth_faces, one_thread):
    torch.manual_seed(0)
    model = create_model("td3dcnn", width=8)
    clips = ClipDataset(synth_faces, clip_len=2, split="test", clips_per_video=3)
    pred = predict(model, clips, batch_size=4)
    assert len(pred) == 3 * pred["video_id"].nunique()  # 4 crops: clips start at 0, 1, 2
    metrics = evaluate(model, clips, batch_size=4)
    videos = pred.groupby("video_id").agg(prob=("prob", "mean"), label=("label", "first"))
    from sklearn.metrics import roc_auc_score

    assert metrics["video_auc"] == pytest.approx(roc_auc_score(videos["label"], videos["prob"]))
    assert metrics["n"] == len(pred) and metrics["n_videos"] == len(videos)
    # a frame model meets the video model in the same table: frames averaged per video
    frame_model = create_model("baseline2d", backbone="resnet18")
    frames = FrameDataset(synth_faces, split="test")
    by_frame = predict(frame_model, frames, batch_size=8).groupby("video_id")["prob"].mean()
    by_clip = predict(frame_model, ClipDataset(synth_faces, clip_len=4, split="test"), batch_size=8)
    assert np.allclose(by_clip.set_index("video_id")["prob"].sort_index(), by_frame.sort_index(), atol=1e-5)


def test_fmkit_train_and_evaluate_td3dcnn_end_to_end(synth_faces, tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    settings = ["data.clip_len=4", "data.size=32", "model.width=8", "data.batch_size=4", "data.eval_clips=1"]
    sets = [arg for s in settings for arg in ("--set", s)]
    assert main(["train", "td3dcnn", "--data", str(synth_faces), "-o", str(run), "--epochs", "1", *sets]) == 0
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["monitor"] == "val_video_auc" and summary["test"]["n_videos"] > 0
    assert load(run).temporal_dropout.keep == 0.75  # the recipe's keep ratio
    capsys.readouterr()
    assert (
        main(["evaluate", str(run), "--data", str(synth_faces), "-o", str(tmp_path / "eval"), "--bootstrap", "50"]) == 0
    )
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())[data_name(synth_faces)]
    assert report["items"] == "clips" and "video_auc" in report and report["n"] == report["n_videos"]
