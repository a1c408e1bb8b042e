import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from fmkit.cli import main

COMMANDS = ["synth", "index", "preprocess", "train", "evaluate", "predict", "explain", "pipeline"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: fmkit " + command in capsys.readouterr().out


def test_bad_input_is_one_line_and_nonzero(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fmkit", "index", str(tmp_path / "nope"), "-o", str(tmp_path / "i.csv")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fmkit: error:") and "nope" in lines[0]
    assert not (tmp_path / "i.csv").exists()


def test_unknown_layout_names_the_choices(tmp_path, capsys):
    assert main(["index", str(tmp_path), "--layout", "youtube", "-o", str(tmp_path / "i.csv")]) == 2
    err = capsys.readouterr().err
    assert "youtube" in err and "ffpp" in err and "celebdf" in err


def test_index_then_preprocess(face_dataset, tmp_path, capsys):
    index_csv = tmp_path / "index.csv"
    assert main(["index", str(face_dataset), "-o", str(index_csv)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "real" in out
    index = pd.read_csv(index_csv)
    assert len(index) == 5
    faces = tmp_path / "faces"
    # no --root: the dataset root that `fmkit index` recorded beside the CSV
    code = main(["preprocess", str(index_csv), "-o", str(faces), "--frames", "2", "--size", "32"])
    assert code == 0
    assert "2 failed" in capsys.readouterr().out
    assert len(pd.read_csv(faces / "faces.csv")) == 6  # 3 face videos × 2 frames
    errors = pd.read_csv(faces / "errors.csv")
    # the faceless video: one row per frame without a face plus one for the video; the corrupt one: one row
    assert errors.groupby("path").size().to_dict() == {"real/corrupt.mp4": 1, "real/noface.mp4": 3}


def test_preprocess_windows_options(face_dataset, tmp_path, capsys):
    index = tmp_path / "index.csv"
    assert main(["index", str(face_dataset), "-o", str(index)]) == 0
    df = pd.read_csv(index)
    df[df["path"] == "real/a.mp4"].to_csv(index, index=False)  # the 6-frame face video
    faces = tmp_path / "faces"
    args = ["preprocess", str(index), "--root", str(face_dataset), "-o", str(faces), "--size", "32"]
    assert main([*args, "--windows", "2", "--window-len", "2"]) == 0
    manifest = pd.read_csv(faces / "faces.csv")
    assert manifest["frame_idx"].tolist() == [0, 1, 3, 4] and manifest["window"].tolist() == [0, 0, 1, 1]
    settings = json.loads((faces / "preprocess.json").read_text())
    assert (settings["windows"], settings["window_len"]) == (2, 2)
    capsys.readouterr()
    assert main([*args, "--windows", "-1"]) == 2
    assert "config windows must be an integer >= 0" in capsys.readouterr().err
    assert main([*args, "--windows", "2", "--window-len", "0"]) == 2
    assert "window_len" in capsys.readouterr().err


def test_preprocess_fails_when_nothing_succeeds(face_dataset, tmp_path, capsys):
    index = tmp_path / "index.csv"
    main(["index", str(face_dataset), "-o", str(index)])
    df = pd.read_csv(index)
    df[df["path"].str.contains("corrupt")].to_csv(index, index=False)
    assert main(["preprocess", str(index), "--root", str(face_dataset), "-o", str(tmp_path / "f")]) == 1
    assert "no face crop" in capsys.readouterr().err


def test_index_of_a_csv_records_its_folder_as_the_root(face_dataset, tmp_path, capsys):
    """`fmkit index LIST.csv --layout csv` then `fmkit preprocess` without --root: the root is the CSV's folder."""
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "listing.csv"
    assert main(["index", str(face_dataset), "-o", str(tmp_path / "first.csv")]) == 0
    frame = pd.read_csv(tmp_path / "first.csv")
    frame = frame[~frame["path"].str.contains("corrupt|noface")]
    frame.assign(path=[os.path.relpath(face_dataset / p, listing.parent) for p in frame["path"]]).to_csv(
        listing, index=False
    )
    index = tmp_path / "index.csv"
    assert main(["index", str(listing), "--layout", "csv", "-o", str(index)]) == 0
    assert main(["preprocess", str(index), "-o", str(tmp_path / "faces"), "--frames", "1", "--size", "32"]) == 0
    assert len(pd.read_csv(tmp_path / "faces" / "faces.csv")) == 3


def test_train_set_overrides_are_validated_and_saved(tmp_path, capsys):
    assert (
        main(["train", "baseline2d", "--data", str(tmp_path), "-o", str(tmp_path / "run"), "--set", "optim.lrr=3e-4"])
        == 2
    )
    assert "unknown config key 'optim.lrr'; did you mean 'optim.lr'?" in capsys.readouterr().err


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
