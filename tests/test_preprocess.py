import json

import numpy as np
import pandas as pd
import pytest
from conftest import face_frames
from PIL import Image

from fmkit.data.faces import (
    Face,
    FaceDetector,
    FaceTracker,
    box_iou,
    interpolate_boxes,
    keyframe_positions,
    track_main_face,
)
from fmkit.data.index import build_index
from fmkit.data.preprocess import collect, parse_shard, preprocess, select_shard
from fmkit.data.schema import BOX_COLUMNS, FACE_COLUMNS, crop_square, read_faces, square_region, to_crop_coords
from fmkit.data.video import window_indices
from fmkit.errors import FmkitError

CFG = {"frames": 4, "size": 64}
CFG_MARGIN = 1.3  # the default margin


def _face(box, prob=0.99):
    return Face(np.array(box, np.float32), prob, np.zeros((5, 2), np.float32))


def test_mtcnn_finds_the_face_and_landmarks():
    frames = face_frames(n=2, size=96)
    faces = FaceDetector().detect(frames)
    assert all(len(f) >= 1 for f in faces)
    f = faces[0][0]
    assert f.prob > 0.9
    x1, y1, x2, y2 = f.box
    assert 10 < x1 < x2 < 90 and 0 < y1 < y2 < 90
    le, re = f.landmarks[0], f.landmarks[1]
    assert le[0] < re[0], "left eye (image left) comes first"
    assert x1 < le[0] < x2 and y1 < le[1] < y2


def test_tracking_follows_overlap_not_size():
    a, big = _face([10, 10, 30, 30]), _face([50, 50, 95, 95])
    a2 = _face([11, 11, 31, 31])
    chosen = track_main_face([[a], [big, a2], [], [a2]])
    assert chosen[0] is a and chosen[1] is a2 and chosen[2] is None and chosen[3] is a2
    assert track_main_face([[a, big]])[0] is big, "the largest face starts the track"


def moving_face(xs, ys, seed=0, height=144, width=256, patch=96):
    """Frames (height × width) of a noisy grey background with a ``patch`` px face photo at (xs[t], ys[t])."""
    rng = np.random.default_rng(seed)
    frames = []
    for face, x, y in zip(face_frames(n=len(xs), size=patch, seed=seed), xs, ys):
        frame = np.clip(rng.normal(110, 6, (height, width, 3)), 0, 255).astype(np.uint8)
        frame[y : y + patch, x : x + patch] = face
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def _agreement(tracked, reference):
    assert all(f is not None for f in tracked), "no frame lost"
    ious = [box_iou(a.box, b.box) for a, b in zip(tracked, reference)]
    landmarks = [np.abs(a.landmarks - b.landmarks).max() / (b.box[2] - b.box[0]) for a, b in zip(tracked, reference)]
    return np.array(ious), np.array(landmarks)


def test_tracked_boxes_agree_with_whole_frame_detection(detector):
    n = 16
    xs = np.linspace(8, 152, n).round().astype(int)
    ys = (24 + 16 * np.sin(np.arange(n) / 3)).round().astype(int)
    frames = moving_face(xs, ys)
    reference = track_main_face(detector.detect(frames))
    tracker = FaceTracker(detector, keyframes=4)
    ious, landmarks = _agreement(tracker.track(frames), reference)
    assert ious.mean() >= 0.85 and ious.min() >= 0.7, ious
    assert landmarks.max() < 0.15, "landmarks within 15 % of the face width"
    c = tracker.counts
    assert (c.frames, c.regions, c.whole) == (n, n, 0) and c.keyframes == 5, "keyframes 0, 4, 8, 12 and the last"


@pytest.mark.parametrize("keyframes", [4, 8], ids=["jump-near-keyframe", "jump-between-keyframes"])
def test_tracking_recovers_when_the_face_jumps(detector, keyframes):
    xs, ys = [8] * 5 + [152] * 7, [24] * 12
    frames = moving_face(xs, ys, seed=1)
    tracker = FaceTracker(detector, keyframes=keyframes)
    tracked = tracker.track(frames)
    ious, _ = _agreement(tracked, track_main_face(detector.detect(frames)))
    assert ious.min() >= 0.7, ious
    centres = [(f.box[0] + f.box[2]) / 2 for f in tracked]
    assert all(c < 110 for c in centres[:5]) and all(c > 150 for c in centres[5:]), centres
    if keyframes == 8:
        assert tracker.counts.lost > 0, "the interpolated box missed the jump: lost frames were searched again"


def test_a_keyframe_whose_region_loses_the_face_is_searched_again(detector, monkeypatch):
    frames = moving_face([8, 16, 24, 32, 40], [24] * 5)
    tracker = FaceTracker(detector, keyframes=4)
    regions = tracker._region_faces
    calls = []

    def first_pass_loses_frame_0(frames, boxes):
        calls.append(len(frames))
        found = regions(frames, boxes)
        return [[]] + found[1:] if len(calls) == 1 else found

    monkeypatch.setattr(tracker, "_region_faces", first_pass_loses_frame_0)
    tracked = tracker.track(frames)
    assert all(f is not None for f in tracked) and calls == [5, 1]
    assert (tracker.counts.lost, tracker.counts.keyframes, tracker.counts.whole) == (1, 2, 0), (
        "keyframe 0 was not detected again"
    )


def test_tracking_without_any_face_finds_none_like_whole_frames(detector):
    noise = list(np.random.default_rng(3).integers(0, 255, (6, 96, 96, 3), dtype=np.uint8))
    tracker = FaceTracker(detector, keyframes=4)
    assert tracker.track(noise) == [None] * 6 == track_main_face(detector.detect(noise))
    assert tracker.counts.whole == 6, "every frame was searched whole"
    assert tracker.track([]) == []


def test_interpolated_boxes_hold_beyond_the_anchors():
    boxes = interpolate_boxes({1: np.array([0, 0, 10, 10]), 3: np.array([10, 0, 20, 10])}, 5)
    assert boxes[:, 0].tolist() == [0, 0, 5, 10, 10]


def test_square_crop_pads_and_maps_coordinates():
    img = np.full((50, 50, 3), 200, np.uint8)
    region = square_region(np.array([40, 40, 60, 60]), 1.0)
    assert region == (40, 40, 20)
    crop = crop_square(img, region, 10)
    assert crop.shape == (10, 10, 3)
    assert crop[0, 0].tolist() == [200] * 3 and crop[-1, -1].tolist() == [0] * 3  # outside → zero pad
    assert to_crop_coords(np.array([[50, 50]]), region, 10).tolist() == [[5, 5]]


def test_shards_partition_the_index():
    df = pd.DataFrame({"video_id": [f"v{i}" for i in range(7)]})
    parts = [set(select_shard(df, (i, 3))["video_id"]) for i in range(3)]
    assert set().union(*parts) == set(df["video_id"]) and sum(map(len, parts)) == 7
    assert parse_shard("1/3") == (1, 3) and parse_shard(None) == (0, 1)
    for bad in ["3/3", "x", "1/0"]:
        with pytest.raises(FmkitError, match="--shard"):
            parse_shard(bad)


@pytest.fixture(scope="module")
def faces_out(face_dataset, tmp_path_factory):
    index = build_index(face_dataset, "folder").df
    out = tmp_path_factory.mktemp("faces")
    summary = preprocess(index, out, root=face_dataset, cfg=CFG, progress=False)
    return index, out, summary


def test_preprocess_writes_manifest_crops_and_errors(faces_out, face_dataset):
    index, out, summary = faces_out
    manifest = read_faces(out)
    assert list(manifest.columns) == FACE_COLUMNS
    assert set(manifest["video_id"]) == set(
        index.loc[index["path"].isin(["real/a.mp4", "real/b.mp4", "fake/patch/a_x.mp4"]), "video_id"]
    )
    assert summary.videos_failed == 2 and summary.crops == len(manifest)
    # frames sampled over the whole 6-frame video, not the first 4
    assert sorted(manifest.loc[manifest["path"] == "real/a.mp4", "frame_idx"]) == [0, 2, 3, 5]
    for _, row in manifest.iterrows():
        crop = np.asarray(Image.open(out / row["crop_path"]))
        assert crop.shape == (64, 64, 3)
        assert row["prob"] > 0.9 and row["x1"] < row["left_eye_x"] < row["x2"]
        # index columns carried over unchanged
        src = index.set_index("video_id").loc[row["video_id"]]
        assert (row["label"], row["split"], row["source_id"]) == (src["label"], src["split"], src["source_id"])
    errors = pd.read_csv(out / "errors.csv")
    reasons = dict(zip(errors["path"], errors["reason"]))
    assert "corrupt.mp4" in reasons["real/corrupt.mp4"]
    assert "no face" in reasons["real/noface.mp4"]
    # each error carries its video's index columns, so a video without crops keeps its label, split, source
    src = index.set_index("path")
    for _, row in errors.iterrows():
        want = src.loc[row["path"]]
        assert (row["label"], row["split"], str(row["source_id"])) == (want["label"], want["split"], want["source_id"])
    from fmkit.engine.coverage import folder_videos

    videos = folder_videos(out)  # every video of the index, those without a crop included
    assert set(videos.index) == set(index["video_id"])
    assert videos.loc[src.loc["real/noface.mp4", "video_id"], "crops"] == 0
    assert not list(face_dataset.rglob("*.jpg")), "the dataset root is never written to"


def test_rerun_skips_done_videos_and_merges(faces_out, face_dataset):
    index, out, _ = faces_out
    before = read_faces(out)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "crops").rglob("*.jpg")}
    again = preprocess(index, out, root=face_dataset, cfg=CFG, progress=False)
    assert again.videos_skipped == len(index) and again.videos_done == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "crops").rglob("*.jpg")} == mtimes
    pd.testing.assert_frame_equal(read_faces(out), before)


def test_killed_run_resumes_where_it_stopped(faces_out, face_dataset, tmp_path):
    index, done_out, _ = faces_out
    # simulate a kill after the first video: only its record exists
    first = index.sort_values("video_id").iloc[:1]
    preprocess(first, tmp_path, root=face_dataset, cfg=CFG, progress=False)
    resumed = preprocess(index, tmp_path, root=face_dataset, cfg=CFG, progress=False)
    assert resumed.videos_skipped == 1 and resumed.videos_done + resumed.videos_failed == len(index) - 1
    pd.testing.assert_frame_equal(read_faces(tmp_path), read_faces(done_out))


def test_shards_concatenate_to_the_whole(faces_out, face_dataset, tmp_path):
    index, done_out, _ = faces_out
    parts = []
    for i in range(2):
        preprocess(index, tmp_path / f"s{i}", root=face_dataset, cfg=CFG, shard=f"{i}/2", progress=False)
        parts.append(read_faces(tmp_path / f"s{i}"))
    assert all(len(p) for p in parts)
    whole = pd.concat(parts).sort_values(["video_id", "frame_idx"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, read_faces(done_out))


def test_parallel_workers_match_serial(faces_out, face_dataset, tmp_path):
    index, done_out, _ = faces_out
    preprocess(index, tmp_path, root=face_dataset, cfg=CFG, workers=2, progress=False)
    pd.testing.assert_frame_equal(read_faces(tmp_path), read_faces(done_out))


def test_full_detection_switch_crops_the_same_frames_alike(faces_out, face_dataset, tmp_path):
    index, done_out, summary = faces_out
    full = preprocess(index, tmp_path, root=face_dataset, cfg={**CFG, "detection": "full"}, progress=False)
    tracked, whole = read_faces(done_out), read_faces(tmp_path)
    assert full.crops == summary.crops and full.frames == summary.frames == 16  # 4 videos decoded, 4 frames each
    assert json.loads((tmp_path / "preprocess.json").read_text())["detection"] == "full"
    pd.testing.assert_frame_equal(
        tracked[["video_id", "frame_idx", "crop_size"]], whole[["video_id", "frame_idx", "crop_size"]]
    )
    ious = [box_iou(a, b) for a, b in zip(tracked[BOX_COLUMNS].to_numpy(), whole[BOX_COLUMNS].to_numpy())]
    assert np.mean(ious) >= 0.8, ious
    # same geometry: the crop side is margin x the box's longer side either way
    side = np.maximum(tracked["x2"] - tracked["x1"], tracked["y2"] - tracked["y1"]) * CFG_MARGIN
    assert np.allclose(tracked["crop_side"], side, atol=1)


def test_refuses_to_write_inside_dataset(face_dataset):
    index = build_index(face_dataset, "folder").df
    with pytest.raises(FmkitError, match="read-only"):
        preprocess(index, face_dataset / "faces", root=face_dataset, cfg=CFG, progress=False)


def test_read_faces_errors(tmp_path):
    with pytest.raises(FmkitError, match="faces manifest not found"):
        read_faces(tmp_path)
    pd.DataFrame({"video_id": ["a"]}).to_csv(tmp_path / "faces.csv", index=False)
    with pytest.raises(FmkitError, match="missing columns"):
        read_faces(tmp_path)


# --- windows of consecutive frames (--windows W --window-len L) -------------------------------


def test_windows_are_spread_evenly_never_overlap_and_stay_in_the_video():
    assert window_indices(12, 2, 4) == [[1, 2, 3, 4], [7, 8, 9, 10]], "each window centred in its half"
    assert window_indices(8, 2, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]], "exactly W·L frames: back to back"
    assert window_indices(6, 2, 4) == [[1, 2, 3, 4]], "too short for 2 windows: 1, centred"
    assert window_indices(3, 2, 4) == [[0, 1, 2]], "shorter than a window: all its frames"
    assert window_indices(0, 2, 4) == []
    for n in range(1, 70):
        for w in range(1, 6):
            for length in range(1, 12):
                spans = window_indices(n, w, length)
                flat = [i for span in spans for i in span]
                assert flat == sorted(set(flat)), "no overlap, in time order"
                assert flat[0] >= 0 and flat[-1] < n, "never past the last frame"
                assert all(span == list(range(span[0], span[0] + len(span))) for span in spans), "consecutive"
                assert len(spans) == (min(w, n // length) or 1), (n, w, length)
                assert {len(s) for s in spans} == {min(length, n)}
    with pytest.raises(FmkitError, match="at least 1"):
        window_indices(10, 0, 4)


def test_keyframes_start_and_end_every_window():
    assert keyframe_positions(16, 8) == [0, 8, 15]
    assert keyframe_positions(8, 8, [0] * 4 + [1] * 4) == [0, 3, 4, 7]
    assert keyframe_positions(10, 2, [5] * 5 + [6] * 5) == [0, 2, 4, 5, 7, 9]


def test_tracking_keeps_the_face_across_the_windows(detector):
    xs = [8, 10, 12, 14, 120, 122, 124, 126]  # the face moved between the two windows
    frames = moving_face(xs, [24] * 8, seed=2)
    tracker = FaceTracker(detector, keyframes=8)
    tracked = tracker.track(frames, windows=[0] * 4 + [1] * 4)
    ious, _ = _agreement(tracked, track_main_face(detector.detect(frames)))
    assert ious.min() >= 0.7, ious
    assert tracker.counts.keyframes == 4 and tracker.counts.lost == 0, "both ends of each window are keyframes"
    with pytest.raises(ValueError, match="window ids"):
        tracker.track(frames, windows=[0])


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    """A 12-frame and a 6-frame face video preprocessed in windows=2, window_len=4."""
    from fmkit.data.video import write_video

    root = tmp_path_factory.mktemp("windowed_ds")
    write_video(root / "real" / "long.mp4", face_frames(n=12, seed=4))
    write_video(root / "real" / "short.mp4", face_frames(n=6, seed=5))
    index = pd.DataFrame(
        {
            "video_id": ["long", "short"],
            "path": ["real/long.mp4", "real/short.mp4"],
            "label": [0, 0],
            "split": ["test", "test"],
            "method": ["real", "real"],
            "dataset": ["t", "t"],
            "source_id": ["long", "short"],
        }
    )
    out = tmp_path_factory.mktemp("windowed_faces")
    cfg = {**CFG, "windows": 2, "window_len": 4}
    summary = preprocess(index, out, root=root, cfg=cfg, progress=False)
    return out, summary


def test_preprocess_crops_windows_of_consecutive_frames(windowed):
    out, summary = windowed
    manifest = read_faces(out)
    assert list(manifest.columns) == FACE_COLUMNS and manifest["window"].dtype.kind == "i"
    rows = manifest.sort_values(["video_id", "frame_idx"])
    long, short = rows[rows["video_id"] == "long"], rows[rows["video_id"] == "short"]
    assert long["frame_idx"].tolist() == [1, 2, 3, 4, 7, 8, 9, 10], "two windows of 4, centred in each half"
    assert long["window"].tolist() == [0] * 4 + [1] * 4
    assert short["frame_idx"].tolist() == [1, 2, 3, 4] and short["window"].tolist() == [0] * 4, "one window fits"
    assert summary.frames == 12 and summary.crops == 12
    for _, row in manifest.iterrows():
        assert (out / row["crop_path"]).is_file() and row["crop_path"].endswith(f"{row['frame_idx']:06d}.jpg")
    settings = json.loads((out / "preprocess.json").read_text())
    assert (settings["windows"], settings["window_len"]) == (2, 4)


def test_even_sampling_records_no_window_and_old_manifests_read_as_such(faces_out, tmp_path):
    _, out, _ = faces_out
    manifest = read_faces(out)
    assert set(manifest["window"]) == {-1}
    old = pd.read_csv(out / "faces.csv").drop(columns="window")  # a manifest of an older fmkit
    old.to_csv(tmp_path / "faces.csv", index=False)
    pd.testing.assert_frame_equal(read_faces(tmp_path), manifest)
    # an older fmkit's per-video records merge with new ones
    (tmp_path / "videos").mkdir()
    records = sorted((out / "videos").glob("*.csv"))
    pd.read_csv(records[0]).drop(columns="window").to_csv(tmp_path / "videos" / records[0].name, index=False)
    for p in records[1:]:
        (tmp_path / "videos" / p.name).write_bytes(p.read_bytes())
    collected, _ = collect(tmp_path)
    assert list(collected.columns) == FACE_COLUMNS and set(collected["window"]) == {-1}
