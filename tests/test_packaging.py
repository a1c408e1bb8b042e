"""Install metadata: the pip pins and the conda environment agree; the CLI is wired."""
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(lines):
    return {m[1].lower(): m[2] for line in lines if (m := re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([^\s#]+)\s*", line))}


def test_conda_environment_matches_pip_pins():
    pip = _pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == pip
    assert pip["torch"] == "2.14.1" and pip["torchvision"] == "0.29.1"
    assert "facenet-pytorch" not in pip, "facenet-pytorch is installed separately with --no-deps"


def test_makefile_installs_facenet_without_deps():
    text = (REPO / "Makefile").read_text()
    assert "--no-deps facenet-pytorch==2.6.0" in text
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_ffpp_splits_ship_with_their_licence():
    from importlib.resources import files

    folder = files("fmkit.data") / "splits" / "ffpp"
    assert all((folder / f"{s}.json").is_file() for s in ("train", "val", "test"))
    assert "MIT License" in (folder / "LICENSE").read_text()


def test_console_script_and_module_entry_print_help():
    for cmd in ([str(Path(sys.executable).parent / "fmkit"), "--help"], [sys.executable, "-m", "fmkit", "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for sub in ["synth", "index", "preprocess", "train", "evaluate", "explain", "predict", "pipeline"]:
            assert sub in out
