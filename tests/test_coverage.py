"""Every test video scored by every detector (``fmkit.engine.coverage``): videos without a face crop, and for a
clip model videos with fewer crops than a clip, get p = 0.5 and are counted; frame and clip detectors meet on the
same videos in every table (trainer metrics, ``evaluate_run``, ``summary_table``, ``compare``, heldout tables)."""

import json
import shutil
import warnings

import pandas as pd
import pytest

from fmkit.config import train_config
from fmkit.data.schema import ERROR_COLUMNS, read_faces
from fmkit.engine import compare, train
from fmkit.engine.coverage import FALLBACK_PROB, folder_videos, split_videos, video_table
from fmkit.engine.evaluation import evaluate_runs, summary_table
from fmkit.engine.report import heldout_auc_table
from fmkit.metrics import MetricWarning

CLIP_LEN = 3


@pytest.fixture(scope="module")
def gappy(synth_faces, tmp_path_factory):
    """``synth_faces`` where one test fake has no face crop at all (its frames only in errors.csv) and another
    has 2 crops, fewer than the clip length 3: (faces folder, faceless video id, short video id)."""
    out = tmp_path_factory.mktemp("gappy") / "faces"
    shutil.copytree(synth_faces, out, ignore=shutil.ignore_patterns("crops.*.npy"))
    manifest = read_faces(out)
    fakes = sorted(manifest.loc[(manifest["split"] == "test") & (manifest["label"] == 1), "video_id"].unique())
    faceless, short = fakes[0], fakes[1]
    lost = pd.concat([manifest[manifest["video_id"] == faceless], manifest[manifest["video_id"] == short].iloc[2:]])
    errors = lost.assign(reason="no face in frame")[ERROR_COLUMNS]
    first = manifest[manifest["video_id"] == faceless].iloc[:1]
    errors = pd.concat([errors, first.assign(frame_idx=None, reason="no face found in any sampled frame")])
    errors[ERROR_COLUMNS].to_csv(out / "errors.csv", index=False)
    manifest.drop(index=lost.index).to_csv(out / "faces.csv", index=False)
    return out, faceless, short


@pytest.fixture(scope="module")
def runs(gappy, tmp_path_factory, one_thread):
    faces, *_ = gappy
    folder = tmp_path_factory.mktemp("runs")
    frame = ["data.size=32", "data.batch_size=16"]
    clip = ["data.size=32", "data.batch_size=8", f"data.clip_len={CLIP_LEN}", "model.width=8", "data.short_videos=skip"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one test identity: NaN intervals; short videos skipped
        return {
            "frames": train(train_config("baseline2d", settings=frame, epochs=1), faces, folder / "frames"),
            "clips": train(train_config("td3dcnn", settings=clip, epochs=1), faces, folder / "clips"),
        }


def test_folder_videos_take_the_faceless_ones_from_errors_csv(gappy, synth_faces):
    faces, faceless, short = gappy
    videos = folder_videos(faces)
    assert faceless not in set(read_faces(faces)["video_id"]) and faceless in videos.index
    row = videos.loc[faceless]
    assert (row["label"], row["split"], row["crops"]) == (1, "test", 0)
    original = read_faces(synth_faces).groupby("video_id")["source_id"].first()
    assert row["identity"] == original[faceless], "a faceless video's bootstrap group: its source_id (errors.csv)"
    assert videos.loc[short, "crops"] == 2
    assert len(split_videos(faces, "test")) == (videos["split"] == "test").sum()


def test_a_video_without_items_scores_half_and_is_flagged():
    videos = pd.DataFrame(
        {"label": [0, 1, 1], "split": "test", "identity": ["p", "p", "q"], "method": ["real", "a", "b"], "crops": 1},
        index=pd.Index(["r", "f1", "f2"], name="video_id"),
    )
    pred = pd.DataFrame({"video_id": ["r", "r", "f1"], "label": [0, 0, 1], "prob": [0.2, 0.4, 0.9]})
    table = video_table(pred, videos).set_index("video_id")
    assert table.loc["r", "prob"] == pytest.approx(0.3) and table.loc["f1", "prob"] == pytest.approx(0.9)
    assert table.loc["f2", "prob"] == FALLBACK_PROB and table["fallback"].tolist() == [False, True, False]
    assert table.loc["f2", "identity"] == "q"


def test_old_errors_csv_without_index_columns_warns(gappy, tmp_path):
    faces, faceless, _ = gappy
    old = tmp_path / "faces"
    shutil.copytree(faces, old, ignore=shutil.ignore_patterns("crops*"))
    errors = pd.read_csv(old / "errors.csv")
    errors[["path", "video_id", "frame_idx", "reason"]].to_csv(old / "errors.csv", index=False)
    with pytest.warns(UserWarning, match="--retry-errors"):
        videos = folder_videos(old)
    assert faceless not in videos.index


def test_every_detector_is_scored_on_every_test_video(runs, gappy, tmp_path):
    faces, faceless, short = gappy
    test_ids = set(split_videos(faces, "test").index)
    assert len(test_ids) >= 3
    # the trainer's metrics.json: video level over every test video, fallback videos counted
    summaries = {name: json.loads((run / "metrics.json").read_text())["test"] for name, run in runs.items()}
    assert {s["n_videos"] for s in summaries.values()} == {len(test_ids)}
    assert summaries["frames"]["fallback_videos"] == 1, "the faceless video"
    assert summaries["clips"]["fallback_videos"] == 2, "the faceless video and the one shorter than a clip"
    # fmkit evaluate and the summary table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)  # one test identity: NaN intervals
        reports, cross = evaluate_runs(runs, [faces], tmp_path / "eval", resamples=20)
    summary = summary_table(reports).set_index("model")
    assert summary["videos"].tolist() == [len(test_ids)] * 2
    assert summary.loc["frames", "fallback_videos"] == 1 and summary.loc["clips", "fallback_videos"] == 2
    assert set(cross.loc[cross["level"] == "video", "n"]) == {len(test_ids)}
    assert cross.loc[cross["level"] == "video", "fallback_videos"].tolist() == [1, 2]
    for name in runs:
        (data,) = reports[name]
        videos = pd.read_csv(tmp_path / "eval" / name / data / "videos.csv", dtype={"video_id": str})
        assert set(videos["video_id"]) == test_ids
        by_id = videos.set_index("video_id")
        assert by_id.loc[faceless, "prob"] == FALLBACK_PROB and by_id.loc[faceless, "fallback"]
        assert bool(by_id.loc[short, "fallback"]) == (name == "clips"), "a frame model scores the 2 crops it has"
        methods = pd.read_csv(tmp_path / "eval" / name / data / "methods.csv").set_index("fakes")
        assert methods.loc["all", "videos"] == len(test_ids)
        assert methods.loc["all", "fallback_videos"] == summary.loc[name, "fallback_videos"]
    # compare: every run on the same videos, frame and clip detectors alike
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        scores = compare.video_scores(runs, faces)
        held = heldout_auc_table(runs, faces, resamples=20).set_index(["model", "level"])
        same = heldout_auc_table(runs, folder_videos(faces), resamples=20).set_index(["model", "level"])
    pd.testing.assert_frame_equal(held, same)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        old = heldout_auc_table(runs, read_faces(faces).groupby("video_id")["source_id"].first().to_dict())
    assert old.set_index(["model", "level"]).loc[("frames", "video"), "n"] == len(test_ids) - 1, "a mapping: as before"
    assert scores.groupby("model")["video_id"].apply(set).tolist() == [test_ids, test_ids]
    at = scores.set_index(["model", "video_id"])
    assert at.loc[("frames", faceless), "prob"] == at.loc[("clips", faceless), "prob"] == FALLBACK_PROB
    assert at.loc[("clips", short), "fallback"] and not at.loc[("frames", short), "fallback"]
    assert held.loc[("frames", "video"), "n"] == held.loc[("clips", "video"), "n"] == len(test_ids)
    assert held.loc[("clips", "video"), "fallback_videos"] == 2
    # item-level metrics stay over the items that exist
    items = pd.read_csv(runs["frames"] / "test_predictions.csv", dtype={"video_id": str})
    assert faceless not in set(items["video_id"]) and summaries["frames"]["n"] == len(items)
