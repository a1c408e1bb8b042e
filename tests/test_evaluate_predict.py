"""``fmkit evaluate -o DIR`` (files, intervals, validation threshold, cross-dataset table); ``fmkit predict FILE``."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import face_frames
from PIL import Image

from fmkit.cli import main
from fmkit.config import train_config
from fmkit.data.video import write_video
from fmkit.engine import train
from fmkit.engine.evaluation import data_name, validation_thresholds
from fmkit.metrics import eer_threshold


@pytest.fixture(scope="module")
def frame_run(synth_faces, tmp_path_factory, one_thread):
    settings = ["data.size=32", "data.batch_size=16"]
    return train(
        train_config("baseline2d", settings=settings, epochs=1), synth_faces, tmp_path_factory.mktemp("r") / "b"
    )


@pytest.fixture(scope="module")
def clip_run(synth_faces, tmp_path_factory, one_thread):
    settings = ["data.size=32", "data.batch_size=8", "data.clip_len=3", "model.width=8", "data.short_videos=skip"]
    return train(train_config("td3dcnn", settings=settings, epochs=1), synth_faces, tmp_path_factory.mktemp("r") / "c")


def test_runs_keep_validation_predictions_for_thresholds(frame_run):
    val = pd.read_csv(frame_run / "val_predictions.csv", dtype={"video_id": str})
    item, video = validation_thresholds(frame_run)
    assert item == pytest.approx(eer_threshold(val["prob"], val["label"]))
    assert 0.0 <= video <= 1.0
    assert json.loads((frame_run / "metrics.json").read_text())["data"]


def test_evaluate_writes_metrics_figures_and_a_cross_dataset_table(frame_run, synth_faces, tmp_path, capsys):
    other = tmp_path / "other" / "faces"  # a second "dataset": the same faces under another name
    shutil.copytree(synth_faces, other)
    out = tmp_path / "eval"
    out.mkdir()  # an existing folder is fine
    argv = ["evaluate", str(frame_run), "--data", str(synth_faces), "--data", str(other), "-o", str(out)]
    assert main([*argv, "--bootstrap", "50"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    names = [data_name(synth_faces), "other"]
    assert set(report) == set(names)
    metrics = report[names[0]]
    assert metrics["items"] == "frames" and metrics["threshold"] == pytest.approx(validation_thresholds(frame_run)[0])
    for key in ("auc", "video_auc", "acc_at_threshold", "video_acc_at_threshold"):
        assert key in metrics and key in metrics["intervals"]
    assert set(metrics["methods"]) >= {"all", "faceswap", "selfblend", "flicker"}
    for name in names:
        for file in ("videos.csv", "methods.csv", "roc.png", "scores.png"):
            assert (out / name / file).is_file(), (name, file)
    videos = pd.read_csv(out / names[0] / "videos.csv")
    assert list(videos.columns) == ["video_id", "label", "prob", "identity", "method", "fallback"]
    assert len(videos) == metrics["n_videos"]
    cross = pd.read_csv(out / "cross_dataset.csv")
    assert set(cross["test"]) == set(names) and set(cross["level"]) == {"frame", "video"}
    assert cross["train"].nunique() == 1 and cross["train"].iloc[0] == data_name(synth_faces)
    same = cross.set_index(["test", "level"])["auc"]
    assert same[(names[0], "video")] == pytest.approx(same[("other", "video")]), "the same faces score the same"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A photo with two faces, a face video, a photo without a face, a corrupt video, an unsupported file."""
    from skimage import data

    folder = tmp_path_factory.mktemp("files")
    face = data.astronaut()[0:320, 96:416]
    two = np.zeros((320, 700, 3), np.uint8)
    two[:, :320], two[:, 380:] = face, face[:, ::-1]
    Image.fromarray(two).save(folder / "two_faces.png")
    write_video(folder / "face.mp4", face_frames(n=8))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / "noise.jpg")
    (folder / "corrupt.mp4").write_bytes(b"not a video" * 50)
    (folder / "notes.txt").write_text("hello")
    return folder


def test_predict_scores_every_face_of_a_photo_and_a_video(frame_run, files, capsys):
    assert main(["predict", str(frame_run), str(files / "two_faces.png"), str(files / "face.mp4"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    photo, video = report["files"]
    assert photo["kind"] == "image" and len(photo["faces"]) == 2 and photo["error"] is None
    centres = sorted((f["box"][0] + f["box"][2]) / 2 for f in photo["faces"])
    assert centres[0] < 320 < centres[1], "one face on each side"
    assert photo["prob"] == pytest.approx(max(f["prob"] for f in photo["faces"]), abs=1e-6)
    assert video["kind"] == "video" and len(video["faces"]) == 1 and video["faces"][0]["crops"] == 8
    assert 0.0 <= video["prob"] <= 1.0


def test_predict_reports_bad_files_and_still_scores_the_others(frame_run, files, capsys):
    bad = [files / "noise.jpg", files / "corrupt.mp4", files / "notes.txt", files / "missing.png"]
    assert main(["predict", str(frame_run), str(files / "face.mp4"), *map(str, bad)]) == 2
    captured = capsys.readouterr()
    assert "face.mp4" in captured.out and "all" in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("fmkit: error:") for line in errors)
    for path, message in zip(bad, ["no face found", "unreadable video", "unsupported file type", "file not found"]):
        assert any(message in line and str(path) in line for line in errors), message


def test_predict_with_a_video_model_scores_clips_of_the_tracked_face(clip_run, files, capsys):
    assert main(["predict", str(clip_run), str(files / "face.mp4"), str(files / "two_faces.png"), "--json"]) == 0
    video, photo = json.loads(capsys.readouterr().out)["files"]
    assert video["faces"][0]["crops"] == 4, "evenly spaced clips of 3 of the 8 tracked crops"
    assert len(photo["faces"]) == 2, "a photo is a still clip per face"
    assert main(["predict", str(clip_run), str(files / "face.mp4"), "--frames", "2"]) == 2
    assert "fewer than the clip length 3" in capsys.readouterr().err


def test_predict_reads_the_windows_the_training_faces_were_cropped_in(clip_run, files):
    """A run whose faces folder has windows (``preprocess.json``) is scored on the same windows: clips of one."""
    from fmkit.predict import Predictor

    predictor = Predictor(clip_run)
    assert predictor.prep["windows"] == 0, "the synthetic faces were sampled evenly"
    predictor.prep.update(windows=2, window_len=3)  # 8 frames: windows 0-2 and 4-6, one clip of 3 each
    score = predictor.score(files / "face.mp4")
    assert score.error is None and score.faces[0].crops == 2
    predictor.prep.update(window_len=2)
    assert "a face in at most 2 consecutive frames of one window" in predictor.score(files / "face.mp4").error


def test_predict_split_form_still_writes_a_csv(frame_run, synth_faces, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["predict", str(frame_run), "--data", str(synth_faces), "-o", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == ["video_id", "label", "prob"]
