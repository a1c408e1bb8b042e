"""The real notebooks, executed top to bottom under papermill with tiny parameters."""

import ast
import json

import nbformat
import pandas as pd
import pytest
import yaml
from nbconvert.filters import markdown2html
from papermill.translators import PythonTranslator

from fmkit.errors import FmkitError
from fmkit.pipeline import NOTEBOOKS_DIR, run_pipeline

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _code(cell) -> ast.Module:
    """A code cell parsed as Python (IPython magics dropped)."""
    return ast.parse("\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_thin_committed_without_outputs_and_parameterized(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell is tagged parameters"
    assert not any(c.get("outputs") for c in code), "notebooks are committed without outputs"
    assert nb.cells[0].cell_type == "markdown", "a notebook opens by saying what it does"
    for cell in code:
        defined = [n for n in ast.walk(_code(cell)) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defined, f"logic lives in fmkit, not in notebooks: {ast.unparse(defined[0])[:60]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_annotated_and_documented(path):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    statements = _code(cell).body
    assert statements and all(isinstance(s, ast.AnnAssign) for s in statements), "name: type = value"
    documented = {p.name: p.help for p in PythonTranslator.inspect(cell)}  # what papermill --help-notebook shows
    for s in statements:
        assert documented.get(s.target.id), f"papermill cannot read parameter {s.target.id} with its comment"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_renders_without_control_characters(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            bad = [ch for ch in cell.source if ord(ch) < 32 and ch != "\n"]
            assert not bad, f"control character {bad[0]!r} in: {cell.source[:60]!r}"
            assert markdown2html(cell.source).strip()


def _config(tmp_path, root, notebooks):
    cfg = {"dataset": {"root": str(root), "layout": "folder"}, "notebooks": notebooks}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_notebook_01_runs_under_papermill(tiny_synth, tmp_path):
    cfg = _config(tmp_path, tiny_synth, [{"name": "01_preprocessing", "parameters": {"frames": 3, "size": 64}}])
    run = run_pipeline(cfg, tmp_path / "run")
    executed = nbformat.read(run / "notebooks" / "01_preprocessing.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows figures"
    faces = pd.read_csv(run / "faces" / "faces.csv")
    assert len(faces) > 0 and set(faces["frame_idx"]) <= {0, 1, 2, 3}
    assert (run / "index.csv").is_file() and (run / "faces" / "errors.csv").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["resolved_parameters"]["interactive"] is False


def test_pipeline_errors_are_clear(tmp_path, tiny_synth):
    with pytest.raises(FmkitError, match="not found"):
        run_pipeline(tmp_path / "missing.yaml", tmp_path / "run")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"notebooks": [{"name": "01_preprocessing"}], "colour": 1}))
    with pytest.raises(FmkitError, match="unknown config key 'colour'"):
        run_pipeline(bad, tmp_path / "run")
    with pytest.raises(FmkitError, match="notebook not found"):
        run_pipeline(_config(tmp_path, tiny_synth, [{"name": "99_nope"}]), tmp_path / "run")
    with pytest.raises(FmkitError, match="KEY=VALUE"):
        run_pipeline(_config(tmp_path, tiny_synth, [{"name": "01_preprocessing"}]), tmp_path / "run", ["frames"])


def test_notebook_02_runs_under_papermill(synth_faces, tiny_synth, tmp_path):
    params = {
        "faces_dir": str(synth_faces),
        "epochs": 1,
        "settings": ["data.size=32", "data.batch_size=16"],
        "whitening_settings": ["model.group_size=64", "callbacks.concept_alignment.every=2"],
        "n_top": 3,
    }
    cfg = _config(tmp_path, tiny_synth, [{"name": "02_whitening_detector", "parameters": params}])
    run = run_pipeline(cfg, tmp_path / "run")
    executed = nbformat.read(run / "notebooks" / "02_whitening_detector.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4, "curves, heatmaps, galleries"
    text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    for shown in ("blend_boundary", "mean |off-diag corr|", "whitening − baseline2d", "inside", "verdict"):
        assert shown in text, shown
    for name in ("baseline2d", "whitening"):
        metrics = json.loads((run / "whitening" / name / "metrics.json").read_text())
        assert metrics["best_epoch"] == 1 and "auc" in metrics["test"]


def test_notebook_03_runs_under_papermill(synth_faces, tiny_synth, tmp_path):
    params = {
        "faces_dir": str(synth_faces),
        "clip_len": 3,
        "size": 32,
        "epochs": 1,
        "ablation_keeps": [0.5],
        "settings": ["model.width=8", "data.batch_size=8", "data.clips_per_video=1", "data.eval_clips=2"],
        "frame_settings": ["data.size=32", "data.batch_size=16"],
    }
    cfg = _config(tmp_path, tiny_synth, [{"name": "03_td3dcnn", "parameters": params}])
    run = run_pipeline(cfg, tmp_path / "run")
    executed = nbformat.read(run / "notebooks" / "03_td3dcnn.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3, "dropout strip, curves, ROC"
    text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    for shown in ("flicker", "td3dcnn_keep0.5", "temporal dropout helps", "verdict", "scored by every detector"):
        assert shown in text, shown
    for name in ("td3dcnn", "td3dcnn_nodrop", "td3dcnn_keep0.5"):
        metrics = json.loads((run / "td3dcnn" / name / "metrics.json").read_text())
        assert metrics["monitor"] == "val_video_auc" and "video_auc" in metrics["test"]
