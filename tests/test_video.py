import numpy as np
import pytest
from conftest import face_frames

from fmkit.data.video import probe, read_frames, sample_indices, write_video
from fmkit.errors import FmkitError


def test_write_probe_read_roundtrip(tmp_path):
    frames = face_frames(n=10, size=64)
    path = write_video(tmp_path / "v.mp4", frames, fps=10)
    info = probe(path)
    assert (info.num_frames, info.width, info.height) == (10, 64, 64)
    assert info.fps == pytest.approx(10)
    got = read_frames(path, [0, 4, 9])
    assert len(got) == 3 and got[0].shape == (64, 64, 3) and got[0].dtype == np.uint8
    # lossy but close: frame 4 decodes near the frame that was written
    assert np.abs(got[1].astype(int) - frames[4].astype(int)).mean() < 8
    assert not list(tmp_path.glob(".*tmp*")), "temporary files must not be left behind"


def test_sample_indices_cover_whole_video():
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, 8) == [0, 1, 2]


def test_bad_videos_raise_naming_the_file(tmp_path):
    with pytest.raises(FmkitError, match="not found: .*missing.mp4"):
        probe(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 50)
    with pytest.raises(FmkitError, match="bad.mp4"):
        read_frames(bad)
