"""``fmkit explain``: one image file in, an overlay figure and the numbers out; clear errors for bad files."""

import json

import numpy as np
import pytest
from PIL import Image

from fmkit.cli import main
from fmkit.config import train_config
from fmkit.data.schema import read_faces
from fmkit.engine import train


@pytest.fixture(scope="module")
def runs(synth_faces, tmp_path_factory, one_thread):
    """A tiny baseline2d detector and a tiny VAE trained one epoch on the synthetic faces."""
    out = tmp_path_factory.mktemp("explain_runs")
    detector = train(
        train_config("baseline2d", settings=["data.size=32", "data.batch_size=16"], epochs=1), synth_faces, out / "det"
    )
    vae = train(
        train_config("vae", settings=["data.batch_size=16", "model.latent=8", "model.width=8"], epochs=1),
        synth_faces,
        out / "vae",
    )
    return detector, vae


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A photo with one face (scikit-image's astronaut), not a crop."""
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_explain_a_face_crop_with_relabel_distillation(runs, synth_faces, tmp_path, capsys):
    detector, vae = runs
    crop = synth_faces / read_faces(synth_faces)["crop_path"].iloc[0]
    out = tmp_path / "explained.png"
    argv = ["explain", str(detector), "--vae", str(vae), "--image", str(crop), "--is-crop", "-o", str(out)]
    assert main([*argv, "--n-samples", "40", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["method"] == "relabel" and 0.0 <= report["prob"] <= 1.0 and report["box"] is None
    assert set(report["fidelity"]) >= {"acc", "auc"} and report["output"] == str(out)
    assert Image.open(out).size[0] > 100


def test_explain_detects_the_face_of_a_photo(runs, photo, tmp_path, capsys):
    detector, _ = runs
    out = tmp_path / "occlusion.png"
    assert (
        main(["explain", str(detector), "--image", str(photo), "--method", "occlusion", "-o", str(out), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    x1, y1, x2, y2 = report["box"]
    assert 150 < (x1 + x2) / 2 < 300 and 50 < (y1 + y2) / 2 < 200, "the astronaut's face is near (220, 120)"
    assert report["fidelity"] is None and out.is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [("noise", "no face found in"), ("corrupt", "unreadable image"), ("missing", "image not found")],
)
def test_explain_bad_files_give_one_line_and_exit_2(runs, tmp_path, capsys, content, message):
    detector, vae = runs
    path = tmp_path / f"{content}.png"
    if content == "noise":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(path)
    elif content == "corrupt":
        path.write_bytes(b"not an image" * 10)
    assert main(["explain", str(detector), "--vae", str(vae), "--image", str(path), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fmkit: error:") and message in err and str(path) in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def test_explain_relabel_needs_a_vae_and_a_known_method(runs, photo, tmp_path, capsys):
    detector, _ = runs
    assert main(["explain", str(detector), "--image", str(photo), "-o", str(tmp_path / "x.png")]) == 2
    assert "--vae" in capsys.readouterr().err
    assert (
        main(["explain", str(detector), "--image", str(photo), "--method", "shap", "-o", str(tmp_path / "x.png")]) == 2
    )
    assert "unknown explanation method 'shap'" in capsys.readouterr().err


def test_evaluate_refuses_a_vae_run(runs, synth_faces, capsys):
    _, vae = runs
    assert main(["evaluate", str(vae), "--data", str(synth_faces)]) == 2
    assert "not a detector" in capsys.readouterr().err
