"""``fmkit preprocess --merge``: shard folders written by separate processes merge into one faces folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fmkit.cli import main
from fmkit.data.index import build_index
from fmkit.data.preprocess import merge, preprocess
from fmkit.data.schema import read_faces, write_index
from fmkit.errors import FmkitError

ARGS = ["--frames", "4", "--size", "64"]
CFG = {"frames": 4, "size": 64}


@pytest.fixture(scope="module")
def index_csv(face_dataset, tmp_path_factory):
    path = tmp_path_factory.mktemp("index") / "index.csv"
    write_index(build_index(face_dataset, "folder").df, path, face_dataset)
    return path


@pytest.fixture(scope="module")
def single(index_csv, tmp_path_factory):
    """The whole index preprocessed in one run."""
    out = tmp_path_factory.mktemp("single")
    preprocess(index_csv, out, cfg=CFG, progress=False)
    return out


@pytest.fixture(scope="module")
def shards(index_csv, tmp_path_factory):
    """The index split into 3 shards, each preprocessed by its own `fmkit preprocess` process into its own folder."""
    base = tmp_path_factory.mktemp("shards")
    folders = [base / f"s{i}" for i in range(3)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "fmkit", "preprocess", str(index_csv), "-o", str(f), "--shard", f"{i}/3", *ARGS],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i, f in enumerate(folders)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], logs
    return folders


def _copy(folders, tmp_path):
    """Fresh copies of the shard folders (a merge may move their files)."""
    copies = []
    for f in folders:
        shutil.copytree(f, tmp_path / f.name)
        copies.append(tmp_path / f.name)
    return copies


def _videos(folder):
    """The video ids a faces folder holds (with faces or failed)."""
    return sorted(set(read_faces(folder)["video_id"]) | set(pd.read_csv(folder / "errors.csv")["video_id"]))


def test_three_shards_merge_into_the_single_run(shards, single, index_csv, tmp_path):
    assert all(len(read_faces(f)) for f in shards[:2]), "the face videos are spread over the shards"
    out = tmp_path / "merged"
    report = merge(out, shards, index=index_csv, progress=False)
    assert (report.videos_merged, report.duplicates, report.missing, report.not_in_index) == (5, {}, [], [])
    pd.testing.assert_frame_equal(read_faces(out), read_faces(single))
    pd.testing.assert_frame_equal(pd.read_csv(out / "errors.csv"), pd.read_csv(single / "errors.csv"))
    for rel in read_faces(out)["crop_path"]:
        assert (out / rel).read_bytes() == (single / rel).read_bytes()
        assert (out / rel).stat().st_nlink >= 2, "linked, not copied"
    settings = json.loads((out / "preprocess.json").read_text())
    assert settings["size"] == 64 and len(settings["merged_from"]) == 3
    assert json.loads((out / "merge.json").read_text())["missing"] == []
    # merging again finds every video there already
    again = merge(out, shards, index=index_csv, progress=False)
    assert (again.videos_merged, again.videos_present) == (0, 5)


def test_duplicates_and_missing_videos_are_reported(shards, index_csv, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(shards[0], twin)
    report = merge(tmp_path / "m", [shards[0], twin, shards[1]], index=index_csv, progress=False)
    assert sorted(report.missing) == _videos(shards[2]) and report.missing
    assert sorted(report.duplicates) == _videos(shards[0])
    assert all(fs == [str(shards[0]), str(twin)] for fs in report.duplicates.values())
    text = str(report)
    assert "in several shards" in text and "of the index in no shard" in text
    saved = json.loads((tmp_path / "m" / "merge.json").read_text())
    assert saved["missing"] == report.missing and set(saved["duplicates"]) == set(report.duplicates)
    # without an index, missing videos cannot be checked, and the report says so
    unchecked = merge(tmp_path / "m2", shards[:2], progress=False)
    assert not unchecked.index_checked and "not checked" in str(unchecked)


def test_merge_moves_or_copies_files(shards, single, tmp_path):
    moved = _copy(shards, tmp_path / "a")
    out = tmp_path / "moved"
    merge(out, moved, files="move", progress=False)
    pd.testing.assert_frame_equal(read_faces(out), read_faces(single))
    assert not list((tmp_path / "a").rglob("*.jpg")), "the crops were moved out of the shards"
    copied = tmp_path / "copied"
    merge(copied, shards, files="copy", progress=False)
    assert all((copied / rel).stat().st_nlink == 1 for rel in read_faces(copied)["crop_path"])


def test_merge_cli(shards, index_csv, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["preprocess", str(index_csv), "--merge", str(out), *map(str, shards)]) == 0
    printed = capsys.readouterr().out
    assert "3 faces folder(s) merged: 5 video(s) merged now" in printed and "faces.csv" in printed
    assert (out / "faces.csv").is_file()


def test_a_folder_that_is_not_a_faces_folder_is_a_clear_error(shards, tmp_path, capsys):
    stray = tmp_path / "photos"
    stray.mkdir()
    (stray / "a.jpg").write_bytes(b"x")
    with pytest.raises(FmkitError, match=r"photos is not a faces folder"):
        merge(tmp_path / "out", [shards[0], stray], progress=False)
    with pytest.raises(FmkitError, match="faces folder not found"):
        merge(tmp_path / "out", [shards[0], tmp_path / "nowhere"], progress=False)
    with pytest.raises(FmkitError, match="also one of the shards"):
        merge(shards[0], shards, progress=False)
    with pytest.raises(FmkitError, match="given twice"):
        merge(tmp_path / "out", [shards[0], shards[0]], progress=False)
    assert main(["preprocess", "--merge", str(tmp_path / "out"), str(stray)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmkit: error: ") and "is not a faces folder" in err and err.count("\n") == 1
    assert main(["preprocess", "--merge", str(tmp_path / "out")]) == 2
    assert "at least one faces folder" in capsys.readouterr().err


def test_shards_with_other_crop_settings_do_not_merge(shards, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(shards[1], other)
    settings = json.loads((other / "preprocess.json").read_text())
    (other / "preprocess.json").write_text(json.dumps({**settings, "size": 128}))
    with pytest.raises(FmkitError, match=r"shards differ in setting 'size': 64 in .*s0, 128 in .*other"):
        merge(tmp_path / "out", [shards[0], other], progress=False)


def test_shards_merge_only_with_the_same_frames_or_windows(shards, tmp_path):
    """Shards must share their windows; an older fmkit's settings (no windows) are windows 0."""
    from fmkit.data.preprocess import _shard_settings

    settings = json.loads((shards[1] / "preprocess.json").read_text())
    folders = {}
    for name, change in [("old", {}), ("windowed", {"windows": 4, "window_len": 16}), ("other_len", {"window_len": 8})]:
        folders[name] = tmp_path / name
        folders[name].mkdir()
        written = (
            {k: v for k, v in settings.items() if k not in ("windows", "window_len")} if name == "old" else settings
        )
        (folders[name] / "preprocess.json").write_text(json.dumps({**written, **change}))
    assert _shard_settings([shards[0], folders["old"]])["frames"] == 4
    assert _shard_settings([shards[0], folders["other_len"]]), "window_len does not count without windows"
    with pytest.raises(FmkitError, match=r"shards differ in setting 'windows': 0 in .*s0, 4 in .*windowed"):
        _shard_settings([shards[0], folders["windowed"]])


def test_a_shard_that_failed_a_video_another_did_is_merged_from_the_one_with_faces(shards, single, tmp_path):
    """A video recorded as failed in one shard and with faces in another (e.g. retried there) keeps its faces."""
    broken = tmp_path / "broken"
    shutil.copytree(shards[0], broken)
    first = read_faces(shards[0]).iloc[0]
    name = Path(first["crop_path"]).parent.name
    (broken / "videos" / f"{name}.csv").unlink()
    shutil.rmtree(broken / "crops" / name)
    report = merge(tmp_path / "out", [broken, shards[0], shards[1], shards[2]], progress=False)
    assert report.duplicates[first["video_id"]] == [str(broken), str(shards[0])]
    pd.testing.assert_frame_equal(read_faces(tmp_path / "out"), read_faces(single))
