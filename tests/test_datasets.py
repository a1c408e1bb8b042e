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
