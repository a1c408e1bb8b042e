"""The real notebooks, executed top to bottom under papermill with tiny parameters."""

import ast
import json
import re
from collections import Counter

import nbformat
import pandas as pd
import pytest
import yaml
from conftest import TINY
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


@pytest.mark.parametrize(
    "params, windows",
    [({"frames": 3, "size": 64}, {-1}), ({"windows": 2, "window_len": 2, "size": 64}, {0, 1})],
    ids=["frames", "windows"],
)
def test_notebook_01_runs_under_papermill(tiny_synth, tmp_path, params, windows):
    cfg = _config(tmp_path, tiny_synth, [{"name": "01_preprocessing", "parameters": params}])
    run = run_pipeline(cfg, tmp_path / "run")
    executed = nbformat.read(run / "notebooks" / "01_preprocessing.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows figures"
    faces = pd.read_csv(run / "faces" / "faces.csv")
    assert len(faces) > 0 and set(faces["frame_idx"]) <= {0, 1, 2, 3} and set(faces["window"]) == windows
    assert (run / "index.csv").is_file() and (run / "faces" / "errors.csv").is_file()
    resolved = yaml.safe_load((run / "config.yaml").read_text())["resolved_parameters"]
    assert resolved["interactive"] is False and resolved["progress"] is False


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
    with pytest.raises(FmkitError, match="-p epochs: no notebook of the pipeline has this parameter"):
        run_pipeline(_config(tmp_path, tiny_synth, [{"name": "01_preprocessing"}]), tmp_path / "run", ["epochs=1"])


#: The figures each notebook of the TINY pipeline shows (static, interactive=False), each once.
FIGURES = {
    "01_preprocessing": 3,  # counts per split, crop grid, one video's strip
    "02_whitening_detector": 4,  # curves, correlation heatmaps, axis gallery, one axis
    "03_td3dcnn": 3,  # temporal dropout strip, curves, ROC
    "04_relabel_distillation": 5,  # VAE reconstructions and samples, neighbours, overlays, one explanation
    "05_evaluation": 2,  # ROC, confusion matrices
}
WIDGET = "application/vnd.jupyter.widget-view+json"


def _outputs(run, name):
    executed = nbformat.read(run / "notebooks" / f"{name}.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], name
    text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    return sum("image/png" in o.get("data", {}) for o in outputs), text


def test_pipeline_runs_all_five_notebooks_into_one_report(tiny_pipeline):
    run, _ = tiny_pipeline
    assert sorted(p.stem for p in (run / "notebooks").glob("*.ipynb")) == [s["name"] for s in TINY]
    report = (run / "report.html").read_text()
    for step in TINY:
        assert f'href="notebooks/{step["name"]}.ipynb"' in report, step["name"]
    assert report.count("<img") >= 8 and "video_auc" in report and "td3dcnn_nodrop" in report
    assert "import pandas" not in report, "the report shows outputs, not code"
    log = (run / "pipeline.log").read_text()
    assert all(f"{s['name']}: finished" in log for s in TINY)
    summary = pd.read_csv(run / "evaluation" / "summary.csv")
    assert {"baseline2d", "whitening", "td3dcnn", "td3dcnn_nodrop", "td3dcnn_keep0.5"} <= set(summary["model"])


def test_pipeline_reports_each_step_on_its_output_without_noise(tiny_pipeline):
    run, folder = tiny_pipeline  # ran as `fmkit pipeline` with its output in files, not on a terminal
    out, err = (folder / "pipeline.stdout").read_text(), (folder / "pipeline.stderr").read_text()
    steps = [f"[{i}/{len(TINY)}] {s['name']}" for i, s in enumerate(TINY, start=1)]
    for step in steps:
        assert f"{step}\n" in err and re.search(rf"^{re.escape(step)}: finished in \d", err, re.M), step
    assert err.index(steps[0]) < err.index(steps[-1])
    assert f"report: {run / 'report.html'}" in err, "the last line says where the report is"
    expected = r"(fmkit pipeline: \d+ notebook|\[\d+/\d+\] \d\d_\w+|pipeline finished in )"
    noise = [line for line in err.splitlines() if line and not re.match(expected, line)]
    assert not noise, f"nothing else (no bar, no kernel or library warning): {noise[:3]}"
    assert "\r" not in err, "no progress bar outside a terminal"
    assert (run / "kernels.log").read_text().count("== ") == len(TINY), "the kernels' own output goes there"
    assert "video_auc" in out and "td3dcnn_nodrop" in out, "the main table"
    assert out.rstrip().endswith(f"pipeline finished: {run / 'report.html'}")


@pytest.mark.parametrize("name", list(FIGURES))
def test_executed_notebook_holds_no_widget_nor_kernel_noise_and_each_figure_and_warning_once(tiny_pipeline, name):
    run, _ = tiny_pipeline
    executed = nbformat.read(run / "notebooks" / f"{name}.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if WIDGET in o.get("data", {})], "no progress widget (frozen at 0 %)"
    text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    assert "Kernel is running over TCP" not in text and "it/s]" not in text, "no kernel warning, no text bar"
    images = [o["data"]["text/plain"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == FIGURES[name], images
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    shown = Counter(re.findall(r"^\S.*?:\d+: (\w*Warning: .*)$", stderr, re.M))
    assert not [w for w, n in shown.items() if n > 1], f"each warning once: {shown.most_common(2)}"


def test_notebook_02_shows_the_whitening_figures_and_claims(tiny_pipeline):
    run, _ = tiny_pipeline
    images, text = _outputs(run, "02_whitening_detector")
    assert images == FIGURES["02_whitening_detector"], "curves, heatmaps, galleries"
    for shown in ("blend_boundary", "mean |off-diag corr|", "whitening − baseline2d", "inside", "verdict"):
        assert shown in text, shown
    for name in ("baseline2d", "whitening"):
        metrics = json.loads((run / "whitening" / name / "metrics.json").read_text())
        assert metrics["best_epoch"] == 1 and "auc" in metrics["test"]


def test_notebook_03_shows_dropout_roc_methods_ablation_and_claims(tiny_pipeline):
    run, _ = tiny_pipeline
    images, text = _outputs(run, "03_td3dcnn")
    assert images == FIGURES["03_td3dcnn"], "dropout strip, curves, ROC"
    for shown in ("wobble", "td3dcnn_keep0.5", "temporal dropout helps", "verdict", "scored by every detector"):
        assert shown in text, shown
    for name in ("td3dcnn", "td3dcnn_nodrop", "td3dcnn_keep0.5"):
        metrics = json.loads((run / "td3dcnn" / name / "metrics.json").read_text())
        assert metrics["monitor"] == "val_video_auc" and "video_auc" in metrics["test"]


def test_notebook_04_shows_the_vae_neighbours_overlays_and_metrics(tiny_pipeline):
    run, _ = tiny_pipeline
    images, text = _outputs(run, "04_relabel_distillation")
    assert images == FIGURES["04_relabel_distillation"], "VAE PNGs, neighbours, overlays, explorer"
    for shown in ("PSNR", "neighbours flipped", "deletion", "insertion", "mask_agreement", "fidelity_acc"):
        assert shown in text, shown
    for shown in ("relabel beats random", "verdict"):
        assert shown in text, shown
    vae = run / "vae"
    assert (vae / "reconstructions.png").is_file() and (vae / "samples.png").is_file()


def test_notebook_05_scores_every_detector_the_same_way(tiny_pipeline):
    run, _ = tiny_pipeline
    images, text = _outputs(run, "05_evaluation")
    assert images == FIGURES["05_evaluation"], "ROC curves, confusion matrices (saved figures are not shown)"
    for shown in ("video_acc_at_threshold", "wobble", "train"):
        assert shown in text, shown
    assert "Full protocol:" in text or "No committed claims table" in text, "section 8: the claims protocol's table"
    for model in ("baseline2d", "td3dcnn"):
        assert (run / "evaluation" / model / "cross_dataset.csv").is_file()


def test_pipeline_resume_skips_unchanged_steps_and_a_failure_names_notebook_and_cell(tiny_pipeline, tiny_synth, capsys):
    run, folder = tiny_pipeline
    stamps = {p.name: p.stat().st_mtime_ns for p in (run / "notebooks").glob("*.ipynb")}
    failing = [*TINY[:-1], {"name": "05_evaluation", "parameters": {"bootstrap": 50, "extra_faces": ["/no/such"]}}]
    with pytest.raises(FmkitError, match=r"notebook 05_evaluation failed in cell \d+: FmkitError: .*/no/such"):
        run_pipeline(_config(folder, tiny_synth, failing), run, resume=True)
    log = (run / "pipeline.log").read_text()
    assert all(f"{s['name']}: skipped" in log for s in TINY[:-1]) and "05_evaluation: FAILED in cell" in log
    for step in TINY[:-1]:  # the finished notebooks are kept, not rerun
        name = f"{step['name']}.ipynb"
        assert (run / "notebooks" / name).stat().st_mtime_ns == stamps[name]
    capsys.readouterr()
    run_pipeline(_config(folder, tiny_synth, TINY), run, resume=True)  # only the failed step runs again
    assert (run / "pipeline.log").read_text().count("05_evaluation: finished") == 2
    shown = capsys.readouterr().err
    assert "[1/5] 01_preprocessing: skipped" in shown and "(its notebooks took" in shown
    assert re.search(r"^\[5/5\] 05_evaluation \(expected [\d.]+ s\)$", shown, re.M), "the time it took before"
    assert (run / "notebooks" / "04_relabel_distillation.ipynb").stat().st_mtime_ns == stamps[
        "04_relabel_distillation.ipynb"
    ]


def test_pipeline_configs_name_known_notebooks_and_parameters(tmp_path):
    from fmkit.config import train_config
    from fmkit.pipeline import DEFAULT_CONFIG, load_config

    recipes = {  # (notebook, parameter) → the model whose recipe the overrides change
        ("02_whitening_detector", "settings"): "whitening",
        ("03_td3dcnn", "settings"): "td3dcnn",
        ("03_td3dcnn", "frame_settings"): "baseline2d",
        ("04_relabel_distillation", "detector_settings"): "baseline2d",
        ("04_relabel_distillation", "vae_settings"): "vae",
    }
    configs = sorted(DEFAULT_CONFIG.parent.glob("*.yaml"))
    assert {p.stem for p in configs} >= {"demo", "ffpp", "celebdf", "dfdc"}
    for path in configs:
        cfg = load_config(path)  # checks every step's notebook and parameter names
        assert cfg["notebooks"], path.name
        for step in cfg["notebooks"]:
            for key, value in step["parameters"].items():
                if (step["name"], key) in recipes:  # every override names a known config key
                    train_config(recipes[step["name"], key], settings=value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"notebooks": [{"name": "03_td3dcnn", "parameters": {"clip_length": 8}}]}))
    with pytest.raises(FmkitError, match="notebook 03_td3dcnn has no parameter 'clip_length'"):
        load_config(bad)
