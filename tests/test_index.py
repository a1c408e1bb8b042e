"""Tests of the video index: every layout on tiny fixture trees, splits, leaks and errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmkit.data.index import INDEX_COLUMNS, LAYOUTS, IndexResult, build_index, detect_layout, format_summary, summarize
from fmkit.data.schema import read_index
from fmkit.data.video import write_video
from fmkit.errors import FmkitError
from fmkit.io import write_csv

# Pairs taken from the packaged official FF++ lists (train.json, val.json, test.json).
PACKAGED = {"train": ["071", "054"], "val": ["720", "672"], "test": ["953", "974"]}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny real video (4 frames, 32x32) that the fixture trees copy."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, fps=10)


def put(root: Path, clip: Path, *relpaths: str) -> None:
    """Copy ``clip`` to each of ``relpaths`` under ``root``."""
    for rel in relpaths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, root / rel)


def write_splits(folder: Path, splits: dict[str, list[list[str]]]) -> None:
    """Write FF++-style ``{train,val,test}.json`` pair lists into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        (folder / f"{split}.json").write_text(json.dumps(pairs))


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size, to check that indexing writes nothing."""
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def expected_frame(rows: list[tuple]) -> pd.DataFrame:
    """The index table expected from ``rows`` of INDEX_COLUMNS values, sorted by video_id."""
    return pd.DataFrame(sorted(rows), columns=INDEX_COLUMNS).astype({"label": int})


def assert_index_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Compare index tables column by column (values, not dtypes' spelling)."""
    assert list(actual.columns) == INDEX_COLUMNS
    pd.testing.assert_frame_equal(actual.reset_index(drop=True), expected, check_dtype=False)


def assert_leak_free(df: pd.DataFrame) -> None:
    """No source_id may appear in two splits."""
    splits_per_source = df.groupby("source_id")["split"].nunique()
    assert (splits_per_source == 1).all(), splits_per_source[splits_per_source > 1]


# --- FaceForensics++ -------------------------------------------------------------------

FFPP_DFD = "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__meeting_serious__YVGY8LOK.mp4"
FFPP_ACTOR = "original_sequences/actors/c23/videos/01__exit_phone_room.mp4"
FFPP_CROSS = "manipulated_sequences/Deepfakes/c23/videos/071_720.mp4"  # ids of two different pairs


@pytest.fixture
def ffpp(tmp_path: Path, clip: Path) -> Path:
    """An FF++ tree: youtube originals, two methods at c23 (both pair orders), one c40 video, DFD and actors.

    The fake 071_720 mixes two official pairs, so no split covers it.
    """
    root = tmp_path / "ffpp"
    put(
        root,
        clip,
        *(f"original_sequences/youtube/c23/videos/{i}.mp4" for i in ("071", "054", "720", "953")),
        "original_sequences/youtube/c40/videos/071.mp4",
        "manipulated_sequences/Deepfakes/c23/videos/071_054.mp4",
        "manipulated_sequences/Deepfakes/c23/videos/054_071.mp4",
        "manipulated_sequences/Face2Face/c23/videos/720_672.mp4",
        "manipulated_sequences/Face2Face/c23/videos/974_953.mp4",
        FFPP_ACTOR,
        FFPP_DFD,
        FFPP_CROSS,
    )
    return root


def ffpp_rows(splits: dict[str, str]) -> list[tuple]:
    """Expected FF++ rows given the split of each pair (keyed by the pair's first packaged id)."""
    yt, fake = "original_sequences/youtube/c23/videos", "manipulated_sequences/{}/c23/videos"
    return [
        ("ffpp/youtube/071", f"{yt}/071.mp4", 0, splits["071"], "real", "ffpp", "071"),
        ("ffpp/youtube/054", f"{yt}/054.mp4", 0, splits["071"], "real", "ffpp", "054"),
        ("ffpp/youtube/720", f"{yt}/720.mp4", 0, splits["720"], "real", "ffpp", "720"),
        ("ffpp/youtube/953", f"{yt}/953.mp4", 0, splits["953"], "real", "ffpp", "953"),
        (
            "ffpp/Deepfakes/071_054",
            fake.format("Deepfakes") + "/071_054.mp4",
            1,
            splits["071"],
            "Deepfakes",
            "ffpp",
            "071",
        ),
        (
            "ffpp/Deepfakes/054_071",
            fake.format("Deepfakes") + "/054_071.mp4",
            1,
            splits["071"],
            "Deepfakes",
            "ffpp",
            "054",
        ),
        (
            "ffpp/Face2Face/720_672",
            fake.format("Face2Face") + "/720_672.mp4",
            1,
            splits["720"],
            "Face2Face",
            "ffpp",
            "720",
        ),
        (
            "ffpp/Face2Face/974_953",
            fake.format("Face2Face") + "/974_953.mp4",
            1,
            splits["953"],
            "Face2Face",
            "ffpp",
            "974",
        ),
    ]


def test_ffpp_packaged_splits(ffpp: Path) -> None:
    before = tree(ffpp)
    result = build_index(ffpp)
    assert isinstance(result, IndexResult) and result.layout == "ffpp"
    assert_index_equal(result.df, expected_frame(ffpp_rows({"071": "train", "720": "val", "953": "test"})))
    assert result.uncovered == [FFPP_DFD, FFPP_CROSS, FFPP_ACTOR]
    assert result.missing == []
    assert_leak_free(result.df)
    assert tree(ffpp) == before


def test_ffpp_root_splits_win_over_packaged(ffpp: Path) -> None:
    write_splits(ffpp / "splits", {"train": [["720", "672"]], "val": [["974", "953"]], "test": [["054", "071"]]})
    result = build_index(ffpp, "ffpp")
    assert_index_equal(result.df, expected_frame(ffpp_rows({"071": "test", "720": "train", "953": "val"})))


def test_ffpp_splits_dir_wins_over_root_splits(ffpp: Path, tmp_path: Path) -> None:
    write_splits(ffpp / "splits", {"train": [["720", "672"]], "val": [["974", "953"]], "test": [["054", "071"]]})
    write_splits(tmp_path / "mine", {"train": [["953", "974"]], "val": [["071", "054"]], "test": [["720", "672"]]})
    result = build_index(ffpp, "ffpp", splits_dir=tmp_path / "mine")
    assert_index_equal(result.df, expected_frame(ffpp_rows({"071": "val", "720": "test", "953": "train"})))


def test_ffpp_uncovered_split_keeps_dfd_and_actors(ffpp: Path) -> None:
    df = build_index(ffpp, uncovered_split="val").df.set_index("video_id")
    dfd = df.loc["ffpp/DeepFakeDetection/01_02__meeting_serious__YVGY8LOK"]
    actor = df.loc["ffpp/actors/01__exit_phone_room"]
    assert tuple(dfd) == (FFPP_DFD, 1, "val", "DeepFakeDetection", "ffpp", "01__meeting_serious")
    assert tuple(actor) == (FFPP_ACTOR, 0, "val", "real", "ffpp", "01__exit_phone_room")
    assert df.loc["ffpp/Deepfakes/071_720", "source_id"] == "071"
    assert len(df) == 11


def test_ffpp_compression(ffpp: Path) -> None:
    df = build_index(ffpp, compression="c40").df
    assert df["path"].tolist() == ["original_sequences/youtube/c40/videos/071.mp4"]
    with pytest.raises(FmkitError, match=r"compression raw .*found: c23, c40"):
        build_index(ffpp, compression="raw")
    with pytest.raises(FmkitError, match="unknown FaceForensics.. compression 'c99'"):
        build_index(ffpp, compression="c99")


def test_ffpp_errors(ffpp: Path, tmp_path: Path) -> None:
    write_splits(ffpp / "splits", {"train": [["071", "054"]], "val": [["720", "672"]]})
    with pytest.raises(FmkitError, match=r"split file not found: .*splits/test\.json"):
        build_index(ffpp)
    (ffpp / "splits" / "test.json").write_text(json.dumps([["071", "999"]]))
    with pytest.raises(FmkitError, match="video id 071 is in both train.json and test.json"):
        build_index(ffpp)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FmkitError, match="neither original_sequences/ nor manipulated_sequences/"):
        build_index(tmp_path / "empty", "ffpp")


# --- Celeb-DF --------------------------------------------------------------------------

CELEB_REAL = ["id0_0000", "id0_0001", "id1_0000", "id2_0000", "id3_0000"]
CELEB_FAKE = ["id0_id1_0000", "id1_id0_0000", "id2_id3_0000", "id3_id2_0000"]
CELEB_YT = ["00000", "00001"]
CELEB_LIST = [
    "1 Celeb-real/id3_0000.mp4",
    "0 Celeb-synthesis/id3_id2_0000.mp4",
    "1 YouTube-real/00001.mp4",
    "0 Celeb-synthesis/id9_id8_0001.mp4",
]


@pytest.fixture
def celebdf(tmp_path: Path, clip: Path) -> Path:
    """A Celeb-DF tree with a test list (label 1 = real) naming one absent video."""
    root = tmp_path / "celebdf"
    put(
        root,
        clip,
        *(f"Celeb-real/{s}.mp4" for s in CELEB_REAL),
        *(f"Celeb-synthesis/{s}.mp4" for s in CELEB_FAKE),
        *(f"YouTube-real/{s}.mp4" for s in CELEB_YT),
    )
    (root / "List_of_testing_videos.txt").write_text("\n".join(CELEB_LIST) + "\n")
    return root


def test_celebdf(celebdf: Path) -> None:
    before = tree(celebdf)
    result = build_index(celebdf)
    assert result.layout == "celebdf"
    df = result.df
    test = {"Celeb-real/id3_0000.mp4", "Celeb-synthesis/id3_id2_0000.mp4", "YouTube-real/00001.mp4"}
    rows = (
        [(f"celebdf/Celeb-real/{s}", f"Celeb-real/{s}.mp4", 0, "real", s) for s in CELEB_REAL]
        + [
            (
                f"celebdf/Celeb-synthesis/{s}",
                f"Celeb-synthesis/{s}.mp4",
                1,
                "Celeb-synthesis",
                s.split("_")[0] + "_" + s.split("_")[2],
            )
            for s in CELEB_FAKE
        ]
        + [(f"celebdf/YouTube-real/{s}", f"YouTube-real/{s}.mp4", 0, "real", s) for s in CELEB_YT]
    )
    expected = expected_frame(
        [(vid, path, label, "?", method, "celebdf", source) for vid, path, label, method, source in rows]
    )
    expected["split"] = df["split"]
    assert_index_equal(df, expected)
    # The list says 1 for the real id3_0000 and 0 for the fake id3_id2_0000: inverted here.
    assert df.set_index("path").loc[sorted(test), "label"].tolist() == [0, 1, 0]
    assert set(df.loc[df["split"] == "test", "path"]) == test
    assert set(df.loc[df["split"] != "test", "split"]) == {"train", "val"}
    identity = df["path"].str.extract(r"/(id\d+|\d+)", expand=False)  # target identity, or the YouTube video
    assert not set(identity[df["split"] == "train"]) & set(identity[df["split"] == "val"])
    assert_leak_free(df)
    assert result.missing == ["Celeb-synthesis/id9_id8_0001.mp4"]
    assert result.uncovered == []
    assert tree(celebdf) == before


def test_celebdf_val_is_deterministic_and_optional(celebdf: Path) -> None:
    first, again = build_index(celebdf, seed=3).df, build_index(celebdf, seed=3).df
    pd.testing.assert_frame_equal(first, again)
    assert set(build_index(celebdf, val_fraction=0).df["split"]) == {"train", "test"}


def test_celebdf_errors(celebdf: Path, tmp_path: Path) -> None:
    (celebdf / "List_of_testing_videos.txt").write_text("0 Celeb-real/id3_0000.mp4\n")
    with pytest.raises(FmkitError, match=r"Celeb-real/id3_0000.mp4 is listed as fake .*label 1 means real"):
        build_index(celebdf)
    (celebdf / "List_of_testing_videos.txt").write_text("real Celeb-real/id3_0000.mp4\n")
    with pytest.raises(FmkitError, match=r"List_of_testing_videos.txt:1: expected"):
        build_index(celebdf)
    (celebdf / "List_of_testing_videos.txt").unlink()
    with pytest.raises(FmkitError, match=r"Celeb-DF test list not found: .*List_of_testing_videos.txt"):
        build_index(celebdf)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FmkitError, match="not a Celeb-DF root"):
        build_index(tmp_path / "empty", "celebdf")


# --- DFDC ------------------------------------------------------------------------------

DFDC_META = {
    "dfdc_train_part_0": {
        "aaa.mp4": ("REAL", None),
        "bbb.mp4": ("FAKE", "aaa.mp4"),
        "ccc.mp4": ("FAKE", "aaa.mp4"),
        "ddd.mp4": ("REAL", None),
        "eee.mp4": ("FAKE", "ddd.mp4"),
        "zzz.mp4": ("FAKE", "ddd.mp4"),
    },
    "dfdc_train_part_1": {"fff.mp4": ("REAL", None), "ggg.mp4": ("FAKE", "fff.mp4"), "hhh.mp4": ("REAL", None)},
}


@pytest.fixture
def dfdc(tmp_path: Path, clip: Path) -> Path:
    """A DFDC tree: two parts (one listed video absent, one unlisted video), a test folder with labels.csv."""
    root = tmp_path / "dfdc"
    for part, entries in DFDC_META.items():
        meta = {
            name: {"label": label, "split": "train", "original": original}
            for name, (label, original) in entries.items()
        }
        put(root, clip, *(f"{part}/{name}" for name in entries if name != "zzz.mp4"))
        (root / part / "metadata.json").write_text(json.dumps(meta))
    put(root, clip, "dfdc_train_part_1/stray.mp4", "test/t1.mp4", "test/t2.mp4")
    (root / "test" / "labels.csv").write_text("filename,label\nt1.mp4,1\nt2.mp4,0\nt3.mp4,1\n")
    return root


def test_dfdc(dfdc: Path) -> None:
    before = tree(dfdc)
    result = build_index(dfdc)
    assert result.layout == "dfdc"
    df = result.df
    rows = [
        (
            f"dfdc/{part}/{name[:3]}",
            f"{part}/{name}",
            int(label == "FAKE"),
            "?",
            "dfdc" if label == "FAKE" else "real",
            "dfdc",
            (original or name)[:3],
        )
        for part, entries in DFDC_META.items()
        for name, (label, original) in entries.items()
        if name != "zzz.mp4"
    ]
    rows += [
        ("dfdc/test/t1", "test/t1.mp4", 1, "test", "dfdc", "dfdc", "t1"),
        ("dfdc/test/t2", "test/t2.mp4", 0, "test", "real", "dfdc", "t2"),
    ]
    expected = expected_frame(rows)
    train_part = expected["split"] == "?"
    expected.loc[train_part, "split"] = df.loc[train_part, "split"]
    assert_index_equal(df, expected)
    assert set(df.loc[train_part, "split"]) == {"train", "val"}
    assert_leak_free(df)
    assert result.missing == ["dfdc_train_part_0/zzz.mp4", "test/t3.mp4"]
    assert result.uncovered == ["dfdc_train_part_1/stray.mp4"]
    assert tree(dfdc) == before


def test_dfdc_errors(dfdc: Path, tmp_path: Path) -> None:
    (dfdc / "test" / "labels.csv").write_text("name,label\nt1.mp4,1\n")
    with pytest.raises(FmkitError, match=r"labels.csv: missing column 'filename'"):
        build_index(dfdc)
    (dfdc / "test" / "labels.csv").unlink()
    with pytest.raises(FmkitError, match=r"test/labels.csv not found"):
        build_index(dfdc)
    (dfdc / "dfdc_train_part_1" / "metadata.json").unlink()
    with pytest.raises(FmkitError, match=r"DFDC part without metadata: .*dfdc_train_part_1/metadata.json"):
        build_index(dfdc)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FmkitError, match=r"no dfdc_train_part_\*/ folders"):
        build_index(tmp_path / "empty", "dfdc")


# --- Plain folders ---------------------------------------------------------------------

FOLDER_REAL = ["real/r001.mp4", "real/sub/r002.avi", "real/r003.mp4", "real/r004.mov", "real/r005.mp4", "real/r006.mp4"]
FOLDER_FAKE = {
    "fake/swap/r001_r002.mp4": "r001",
    "fake/swap/r003_r005.mp4": "r003",
    "fake/blend/deep/r004.mkv": "r004",
    "fake/blend/x_y.webm": "x_y",
}


@pytest.fixture
def folder(tmp_path: Path, clip: Path) -> Path:
    """A real/ + fake/<method>/ tree, with a masks/ folder and a non-video file to ignore."""
    root = tmp_path / "folder"
    put(root, clip, *FOLDER_REAL, *FOLDER_FAKE, "masks/r001.mp4")
    (root / "real" / "notes.txt").write_text("not a video")
    return root


def folder_rows(sources: dict[str, str]) -> pd.DataFrame:
    """Expected folder-layout rows (split left to compare separately) given each fake's source."""
    rows = [("folder/" + p.rsplit(".", 1)[0], p, 0, "?", "real", "folder", Path(p).stem) for p in FOLDER_REAL]
    rows += [
        ("folder/" + p.rsplit(".", 1)[0], p, 1, "?", p.split("/")[1], "folder", source) for p, source in sources.items()
    ]
    return expected_frame(rows)


def test_folder(folder: Path) -> None:
    before = tree(folder)
    result = build_index(folder)
    assert result.layout == "folder"
    expected = folder_rows(FOLDER_FAKE)
    expected["split"] = result.df["split"]
    assert_index_equal(result.df, expected)
    assert set(result.df["split"]) == {"train", "val", "test"}
    assert result.df["split"].value_counts()["train"] >= 4
    assert_leak_free(result.df)
    assert result.missing == [] and result.uncovered == []
    assert tree(folder) == before
    pd.testing.assert_frame_equal(result.df, build_index(folder).df)


def test_folder_metadata_overrides(folder: Path) -> None:
    (folder / "metadata.csv").write_text(
        "path,source_id,split\nreal/r006.mp4,,test\nfake/blend/x_y.webm,r006,\n"
        "real/r001.mp4,,val\nreal/gone.mp4,,train\n"
    )
    result = build_index(folder)
    df = result.df.set_index("path")
    assert df.loc["fake/blend/x_y.webm", "source_id"] == "r006"
    assert df.loc[["real/r006.mp4", "fake/blend/x_y.webm"], "split"].tolist() == ["test", "test"]
    assert df.loc[["real/r001.mp4", "fake/swap/r001_r002.mp4"], "split"].tolist() == ["val", "val"]
    assert_leak_free(result.df)
    assert result.missing == ["real/gone.mp4"]


def _metadata(text: str) -> Callable[[Path], object]:
    return lambda root: (root / "metadata.csv").write_text(text)


def _copy(source: str, target: str) -> Callable[[Path], object]:
    return lambda root: shutil.copyfile(root / source, root / target)


BAD_FOLDERS = {
    "source in two splits": (
        _metadata("path,split\nreal/r001.mp4,test\nfake/swap/r001_r002.mp4,train\n"),
        "source r001 is given both splits test and train",
    ),
    "path listed twice": (
        _metadata("path,split\nreal/r001.mp4,val\nreal/r001.mp4,test\n"),
        "metadata.csv: path real/r001.mp4 is listed twice",
    ),
    "unknown split": (_metadata("path,split\nreal/r001.mp4,holdout\n"), "metadata.csv: bad split value 'holdout'"),
    "no path column": (_metadata("file,split\nreal/r001.mp4,test\n"), "metadata.csv: missing column 'path'"),
    "same id twice": (_copy("real/r001.mp4", "real/r001.webm"), "video_id folder/real/r001 is not unique"),
    "fake without method": (
        _copy("real/r001.mp4", "fake/loose.mp4"),
        r"fake video outside a method folder: .*fake/loose.mp4",
    ),
}


@pytest.mark.parametrize("breakage, message", BAD_FOLDERS.values(), ids=BAD_FOLDERS.keys())
def test_folder_errors(folder: Path, breakage: Callable[[Path], object], message: str) -> None:
    breakage(folder)
    with pytest.raises(FmkitError, match=message):
        build_index(folder)


def test_an_empty_root_is_not_a_folder_layout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FmkitError, match="neither real/ nor fake/<method>/"):
        build_index(tmp_path / "empty", "folder")


# --- csv, auto, summaries, general errors ------------------------------------------------


def test_csv_layout_round_trip(folder: Path, tmp_path: Path) -> None:
    built = build_index(folder).df
    path = write_csv(built.sample(frac=1, random_state=0), tmp_path / "out" / "index.csv")
    for root in (path, path.parent):
        result = build_index(root)
        assert result.layout == "csv" and result.missing == [] and result.uncovered == []
        pd.testing.assert_frame_equal(result.df, built, check_dtype=False)
    assert build_index(path, "csv").df["source_id"].tolist() == built["source_id"].tolist()


def test_read_index_validation(tmp_path: Path) -> None:
    good = pd.DataFrame([["v1", "a.mp4", 1, "train", "m", "d", "007"]], columns=INDEX_COLUMNS)
    path = write_csv(good, tmp_path / "index.csv")
    assert read_index(path).loc[0, "source_id"] == "007"
    write_csv(good.drop(columns=["source_id"]), path)
    with pytest.raises(FmkitError, match=r"index.csv: missing column\(s\) source_id"):
        read_index(path)
    write_csv(good.assign(label=2), path)
    with pytest.raises(FmkitError, match=r"index.csv: bad label '2'"):
        read_index(path)
    write_csv(good.assign(split="dev"), path)
    with pytest.raises(FmkitError, match=r"index.csv: bad split 'dev'"):
        read_index(path)
    write_csv(pd.concat([good, good]), path)
    with pytest.raises(FmkitError, match="video_id v1 is not unique"):
        read_index(path)
    with pytest.raises(FmkitError, match="index file not found"):
        read_index(tmp_path / "nope.csv")


def test_detect_layout(ffpp: Path, celebdf: Path, dfdc: Path, folder: Path, tmp_path: Path) -> None:
    assert [detect_layout(r) for r in (ffpp, celebdf, dfdc, folder)] == ["ffpp", "celebdf", "dfdc", "folder"]
    (tmp_path / "other").mkdir()
    with pytest.raises(FmkitError, match=r"unknown dataset layout .*original_sequences/.*Celeb-real/.*real/"):
        detect_layout(tmp_path / "other")
    (tmp_path / "other" / "index.csv").write_text("x\n")
    assert detect_layout(tmp_path / "other") == "csv"
    assert detect_layout(tmp_path / "other" / "index.csv") == "csv"
    (celebdf / "real").mkdir()
    with pytest.raises(FmkitError, match="looks like celebdf and folder"):
        detect_layout(celebdf)


def test_wrong_layout_and_bad_arguments(ffpp: Path, tmp_path: Path) -> None:
    with pytest.raises(FmkitError, match="dataset root not found: .*nowhere"):
        build_index(tmp_path / "nowhere")
    with pytest.raises(FmkitError, match="unknown layout 'ffpp\\+\\+': expected one of " + ", ".join(LAYOUTS)):
        build_index(ffpp, "ffpp++")
    with pytest.raises(FmkitError, match="not a Celeb-DF root"):
        build_index(ffpp, "celebdf")
    with pytest.raises(FmkitError, match="val_fraction must be in"):
        build_index(ffpp, val_fraction=1.5)
    with pytest.raises(FmkitError, match="unknown uncovered_split 'dev'"):
        build_index(ffpp, uncovered_split="dev")


def test_summarize_and_format(ffpp: Path) -> None:
    result = build_index(ffpp)
    table = summarize(result.df)
    assert list(table.columns) == ["split", "method", "label", "videos"]
    assert table.values.tolist() == [
        ["train", "Deepfakes", 1, 2],
        ["train", "real", 0, 2],
        ["val", "Face2Face", 1, 1],
        ["val", "real", 0, 1],
        ["test", "Face2Face", 1, 1],
        ["test", "real", 0, 1],
    ]
    text = format_summary(result)
    assert text.startswith("8 videos indexed (layout ffpp)")
    assert "3 videos on disk but covered by no official split" in text and FFPP_DFD in text
    assert "absent on disk" not in text
    missing = IndexResult(result.df, [f"gone/{i}.mp4" for i in range(7)], [], "ffpp")
    assert "7 videos listed in split/metadata files but absent on disk" in format_summary(missing)
    assert "gone/4.mp4" in format_summary(missing) and "... and 2 more" in format_summary(missing)
