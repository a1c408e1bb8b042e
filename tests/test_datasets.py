import pandas as pd
import pytest
import torch

from fmkit.data.datasets import ClipDataset, FrameDataset
from fmkit.data.index import build_index
from fmkit.data.preprocess import preprocess
from fmkit.data.schema import read_faces
from fmkit.errors import FmkitError


@pytest.fixture(scope="module")
def faces_dir(face_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds_faces")
    index = build_index(face_dataset, "folder").df
    index["split"] = ["train", "val", "test", "train", "train"][: len(index)]
    preprocess(index, out, root=face_dataset, cfg={"frames": 5, "size": 48}, progress=False)
    return out


def test_frame_dataset_items_and_split_filter(faces_dir):
    manifest = read_faces(faces_dir)
    ds = FrameDataset(faces_dir)
    assert len(ds) == len(manifest)
    x, y = ds[0]
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert float(y) == float(manifest.sort_values(["video_id", "frame_idx"])["label"].iloc[0])
    for split in ["train", "val", "test"]:
        part = FrameDataset(faces_dir / "faces.csv", split=split)
        assert len(part) == (manifest["split"] == split).sum()
        assert set(part.video_ids) == set(manifest.loc[manifest["split"] == split, "video_id"])
    flipped = FrameDataset(faces_dir, transform=lambda t: t.flip(-1))
    assert torch.equal(flipped[0][0], ds[0][0].flip(-1))
    with pytest.raises(FmkitError, match="unknown split"):
        FrameDataset(faces_dir, split="training")


def test_clip_dataset_volumes_are_ordered_frames_of_one_video(faces_dir):
    manifest = read_faces(faces_dir)
    frames = FrameDataset(faces_dir)
    assert set(manifest.groupby("video_id").size()) == {5}
    clips = ClipDataset(faces_dir, clip_len=3, clips_per_video=3)
    x, y = clips[0]
    assert x.shape == (3, 3, 48, 48)
    vid = clips.video_ids[0]
    first = manifest[manifest["video_id"] == vid].sort_values("frame_idx")
    for t in range(3):
        assert torch.equal(x[:, t], frames[t][0]), "clip frame t is the video's t-th crop in time order"
    assert float(y) == float(first["label"].iloc[0])
    # evenly spaced over 5 crops: starts 0, 1, 2 (the last clip ends at the last crop)
    assert [clips.start(i) for i in range(len(clips))] == [0, 1, 2] * manifest["video_id"].nunique()
    assert torch.equal(clips[2][0][:, 0], frames[2][0])
    # more clips than starts: coinciding starts merge
    assert len(ClipDataset(faces_dir, clip_len=5, clips_per_video=4)) == manifest["video_id"].nunique()
    with pytest.raises(FmkitError, match="clip_len"):
        ClipDataset(faces_dir, clip_len=0)


def test_clip_dataset_random_clips_are_new_each_epoch_and_reproducible(faces_dir):
    clips = ClipDataset(faces_dir, clip_len=2, clips_per_video=8, sampling="random", seed=3)
    assert len(clips) == 8 * len(set(clips.video_ids))
    draws = []
    for epoch in (1, 2, 1):
        clips.set_epoch(epoch)
        draws.append([clips.start(i) for i in range(len(clips))])
    assert draws[0] == draws[2], "the same (seed, epoch) draws the same clips (a resumed run repeats them)"
    assert draws[0] != draws[1], "a new epoch draws new clips"
    assert len(set(draws[0])) > 1
    frames = FrameDataset(faces_dir)  # the first video's crops come first in both
    for i in range(8):
        start = clips.start(i)
        assert torch.equal(clips[i][0][:, 1], frames[start + 1][0])


def test_clip_dataset_fails_clearly_on_videos_shorter_than_a_clip(faces_dir):
    longest = int(read_faces(faces_dir).groupby("video_id").size().max())
    with pytest.raises(FmkitError, match=rf"fewer than the clip length {longest + 1}.*--frames of at least"):
        ClipDataset(faces_dir, clip_len=longest + 1)
    with pytest.warns(UserWarning, match="left out"):
        none = ClipDataset(faces_dir, clip_len=longest + 1, short_videos="skip")
    assert len(none) == 0 and len(none.skipped) == read_faces(faces_dir)["video_id"].nunique()
    assert all(n == longest for _, n in none.skipped)


def test_dataframe_manifest_needs_root(faces_dir):
    with pytest.raises(FmkitError, match="root="):
        FrameDataset(pd.read_csv(faces_dir / "faces.csv"))


# --- clips over windows of consecutive frames ---------------------------------------------------

#: Crops (video → [(window, frame_idx), …]) of a hand-made manifest: "w" has windows 0 and 1 of 6 crops each,
#: window 2 of 3 (short) and window 3 whose frame 92 lost its face (runs 90-91 and 93-96); "s" has no window
#: with 4 crops; "e" was sampled evenly (no window).
WINDOWED = {
    "w": [(0, f) for f in range(10, 16)]
    + [(1, f) for f in range(40, 46)]
    + [(2, f) for f in range(70, 73)]
    + [(3, f) for f in (90, 91, 93, 94, 95, 96)],
    "s": [(0, 1), (0, 2), (0, 3), (1, 8), (1, 9)],
    "e": [(-1, f) for f in (0, 5, 10, 15, 20)],
}


def frame_of(x: torch.Tensor) -> list[int]:
    """The frame indices a clip (3, T, H, W) of :func:`numbered_crops` shows."""
    return [round(float(x[:, t].mean()) * 255 / 2) for t in range(x.shape[1])]


@pytest.fixture(scope="module")
def numbered_crops(tmp_path_factory):
    """A faces folder of uniform crops whose grey level is 2 × their frame index, and its manifest (WINDOWED)."""
    from PIL import Image

    from fmkit.data.schema import FACE_COLUMNS

    root = tmp_path_factory.mktemp("numbered")
    rows = []
    for vid, crops in WINDOWED.items():
        (root / "crops" / vid).mkdir(parents=True)
        for window, frame in crops:
            crop = f"crops/{vid}/{frame:06d}.jpg"
            Image.new("RGB", (8, 8), (2 * frame,) * 3).save(root / crop, quality=100)
            rows.append({**dict.fromkeys(FACE_COLUMNS, 0), "video_id": vid, "label": int(vid == "w")})
            rows[-1].update(frame_idx=frame, window=window, crop_path=crop, mask_path="", split="test")
    frame = pd.DataFrame(rows, columns=FACE_COLUMNS).sample(frac=1, random_state=0)  # any row order
    return frame, root


def test_window_runs_and_possible_clip_starts():
    from fmkit.data.datasets import clip_runs, even_clip_starts, even_starts, window_starts

    windows, frames = zip(*WINDOWED["w"])
    assert clip_runs(windows, frames) == [6, 6, 3, 2, 4], "a missed frame splits its window"
    assert clip_runs([-1] * 3, [0, 9, 20]) == [3], "evenly sampled crops are one run"
    assert window_starts([6, 6, 3, 2, 4], 4) == [0, 1, 2, 6, 7, 8, 17]
    assert even_clip_starts([6, 6, 3, 2, 4], 4, 3) == [0, 6, 17]
    assert even_clip_starts([4] * 4, 4, 4) == [0, 4, 8, 12], "windows of T crops: one clip each"
    assert even_clip_starts([3, 2], 4, 2) == []
    for n, t, k in [(5, 3, 3), (32, 16, 4), (9, 2, 8), (4, 4, 2)]:
        assert even_clip_starts([n], t, k) == even_starts(n, t, k), "one run: as without windows"


def test_clips_never_mix_windows_and_are_consecutive_frames(numbered_crops):
    frame, root = numbered_crops
    with pytest.warns(UserWarning, match=r"video s has 3 face crops of consecutive frames in one window at most"):
        even = ClipDataset(frame, clip_len=4, clips_per_video=3, root=root, short_videos="skip")
    assert even.skipped == [("s", 3)]
    clips = {vid: [frame_of(even[i][0]) for i in range(len(even)) if even.video_ids[i] == vid] for vid in "we"}
    assert clips["w"] == [[10, 11, 12, 13], [40, 41, 42, 43], [93, 94, 95, 96]], "evenly spread over the windows"
    assert clips["e"] == [[0, 5, 10, 15], [5, 10, 15, 20]], "no window column value: as before"
    allowed = {tuple(range(s, s + 4)) for s in (10, 11, 12, 40, 41, 42, 93)}
    with pytest.warns(UserWarning, match="left out"):
        train = ClipDataset(
            frame, clip_len=4, clips_per_video=4, sampling="random", seed=1, root=root, short_videos="skip"
        )
    seen = set()
    for epoch in range(6):
        train.set_epoch(epoch)
        for i in (i for i in range(len(train)) if train.video_ids[i] == "w"):
            seen.add(tuple(frame_of(train[i][0])))
    assert seen <= allowed and len(seen) >= 5, seen
    with pytest.raises(FmkitError, match=r"--window-len of at least 4"):
        ClipDataset(frame, clip_len=4, root=root)


def test_a_manifest_without_the_window_column_gives_the_clips_of_before(numbered_crops, tmp_path):
    frame, root = numbered_crops
    even = frame[frame["video_id"] == "e"]
    old = even.drop(columns="window")
    assert "window" not in old.columns
    a = ClipDataset(old, clip_len=2, clips_per_video=3, root=root)
    b = ClipDataset(even, clip_len=2, clips_per_video=3, root=root)
    assert [frame_of(a[i][0]) for i in range(len(a))] == [[0, 5], [10, 15], [15, 20]]
    assert [frame_of(b[i][0]) for i in range(len(b))] == [frame_of(a[i][0]) for i in range(len(a))]
    # a windowed video ignores the window column's absence the same way: one run of all its crops
    whole = frame[frame["video_id"] == "w"].drop(columns="window")
    c = ClipDataset(whole, clip_len=4, clips_per_video=2, root=root)
    assert [frame_of(c[i][0]) for i in range(len(c))] == [[10, 11, 12, 13], [93, 94, 95, 96]]
