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
    assert "facenet-pytorch" not in pip, "facenet-pytorch is installed separately with --no-deps"


def test_every_registered_model_ships_a_recipe_that_resolves():
    from fmkit.config import recipe_path, train_config
    from fmkit.models import list_models

    for name in list_models():
        assert recipe_path(name).is_file(), f"no recipe for {name}"
        assert train_config(name)["model"]["name"] == name


def test_pipeline_resources_are_package_data():
    from fmkit.pipeline import DEFAULT_CONFIG, NOTEBOOKS_DIR, load_config

    for step in load_config(DEFAULT_CONFIG)["notebooks"]:
        assert (NOTEBOOKS_DIR / f"{step['name']}.ipynb").is_file()


def test_ffpp_splits_ship_with_their_licence():
    from importlib.resources import files

    folder = files("fmkit.data") / "splits" / "ffpp"
    assert all((folder / f"{s}.json").is_file() for s in ("train", "val", "test"))
    assert "MIT License" in (folder / "LICENSE").read_text()


def test_console_script_and_module_entry_print_help():
    for cmd in ([str(Path(sys.executable).parent / "fmkit"), "--help"], [sys.executable, "-m", "fmkit", "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for sub in ["synth", "index", "preprocess", "train", "evaluate", "predict", "explain", "pipeline"]:
            assert sub in out
