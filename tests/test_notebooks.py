"""The real notebooks, executed top to bottom under papermill with tiny parameters."""

import ast
import json
import math
import re
from collections import Counter

import nbformat
import pandas as pd
import pytest
import yaml
from conftest import TINY
from nbconvert.filters import markdown2html
from papermill.translators import PythonTranslator

from fmkit.engine.report import MIN_PERSONS, claim_sentences, guard_verdicts
from fmkit.errors import FmkitError
from fmkit.pipeline import NOTEBOOKS_DIR, REPOSITORY, notebook_parameters, resolve_run_dir, run_pipeline
from fmkit.report_html import html_table

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
#: A verdict word, in the tables and computed sentences only: a markdown cell never states one.
VERDICT_WORD = re.compile(r"\b(MET|MISSED|UNDECIDED)\b")


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_what_you_will_learn_its_run_time_and_inputs_to_outputs(path):
    opening = nbformat.read(path, as_version=4).cells[0].source
    learn, run_time, inputs = (
        opening.find(s) for s in ("**You will learn**", "**Run time:**", "**Inputs → outputs:**")
    )
    assert 0 < learn < run_time < inputs, "title, what you will learn, the run time, then inputs → outputs"
    assert len(re.findall(r"^- ", opening[learn:run_time], re.M)) >= 2, "what you will learn, as a list"
    assert re.match(r"\*\*Run time:\*\* [^\n]*\d[^\n]* on 2 CPU cores", opening[run_time:]), "a run time on 2 cores"
    assert "→" in opening[inputs + len("**Inputs → outputs:**") :].split("\n\n")[0], "inputs → outputs, named"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_try_this_and_a_link_onwards(path):
    last = nbformat.read(path, as_version=4).cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Try this"), "the last cell: Try this"
    named = set(re.findall(r"`(\w+)`", last.source))
    assert named & set(notebook_parameters(path)), "a parameter to change"
    assert re.search(r"\blook (at|for)\b", last.source), "and what to look for"
    onwards = NOTEBOOKS[(NOTEBOOKS.index(path) + 1) % len(NOTEBOOKS)]  # the next notebook; after 05, back to 01
    assert re.findall(r"\]\((\d\d_\w+\.ipynb)\)", last.source) == [onwards.name], "a link to the next notebook"
    if path == NOTEBOOKS[-1]:
        assert "README" in last.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_states_no_verdict_and_every_setup_resolves_the_run_folder(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":  # a verdict is computed (tables, sentences), never written by hand
            assert not VERDICT_WORD.search(cell.source), f"verdict word in markdown: {cell.source[:80]!r}"
    setup = [c for c in nb.cells if c.cell_type == "code"][1].source  # the cell after the parameters
    assert "run_dir = resolve_run_dir(run_dir)" in setup, "a relative run_dir works from any working directory"
    assert "Path(run_dir)" not in setup


def test_the_frame_detector_overrides_have_one_name_in_every_notebook_and_config():
    helps: dict[str, dict[str, str]] = {}  # override parameter → notebook → its documented meaning
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "code")
        for p in PythonTranslator.inspect(cell):
            if p.name.endswith("settings"):
                helps.setdefault(p.name, {})[path.stem] = p.help
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        if 'train_config("baseline2d"' in code:  # every notebook that trains the frame detector: frame_settings
            assert re.search(r'train_config\("baseline2d", settings=frame_settings\b', code), path.stem
        assert "detector_settings" not in path.read_text(), path.stem
    assert set(helps["frame_settings"]) == {"02_whitening_detector", "03_td3dcnn", "04_relabel_distillation"}
    for name, meaning in helps.items():
        assert len(set(meaning.values())) == 1, f"{name} means one thing in every notebook: {meaning}"
    assert set(helps["settings"]) == {"03_td3dcnn"}, "`settings`: only a notebook's own (video) models"
    from fmkit.pipeline import DEFAULT_CONFIG

    for config in sorted(DEFAULT_CONFIG.parent.glob("*.yaml")):  # (load_config rejects a name no notebook declares)
        assert "detector_settings" not in config.read_text(), config.name


def test_a_relative_run_dir_is_found_from_here_else_from_the_repository(tmp_path, monkeypatch):
    in_clone = (REPOSITORY / "pyproject.toml").is_file()
    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_run_dir("mine") == (tmp_path / "mine").resolve(), "found from the working directory"
    assert resolve_run_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere", "an absolute path is kept"
    expected = (REPOSITORY if in_clone else tmp_path).resolve() / "outputs" / "demo"
    assert resolve_run_dir("outputs/demo") == expected, "not here: the repository's"
    monkeypatch.chdir(NOTEBOOKS_DIR)  # where `make lab` starts the kernels
    if in_clone:
        assert resolve_run_dir("outputs/demo") == REPOSITORY.resolve() / "outputs" / "demo"


@pytest.mark.parametrize("column", ["n", "identities", "n_persons"])
def test_a_verdict_on_fewer_than_10_persons_reads_undecided_and_its_sentence_agrees(column):
    nan = float("nan")
    claims = pd.DataFrame(
        {
            "claim": ["a: fine", "b", "c", "d", "e"],
            "value": [0.95, 0.95, 0.1, 13.0, 0.5],
            "lo": [0.91, 0.91, 0.05, nan, 0.3],
            "hi": [0.99, 0.99, 0.2, nan, 0.7],
            "target": [0.9, 0.9, 0.5, 5.0, 0.4],
            "verdict": ["MET", "MET", "MISSED", "MET", "UNDECIDED"],
            column: [MIN_PERSONS - 1, MIN_PERSONS, 3, 18, 40],
        }
    )
    guarded = guard_verdicts(claims)
    assert guarded["verdict"].tolist() == ["UNDECIDED", "MET", "UNDECIDED", "MET", "UNDECIDED"]
    assert guarded["note"].tolist() == [f"too few persons (9 < {MIN_PERSONS})", "", "too few persons (3 < 10)", "", ""]
    assert claims["verdict"].tolist()[0] == "MET", "the table given is left as it was"
    lines = claim_sentences(guarded).splitlines()
    assert [re.search(r" → (\w+): ", line)[1] for line in lines] == guarded["verdict"].tolist()
    assert lines[0].startswith(
        "a: fine: 0.950 (95 % interval 0.910 … 0.990), target ≥ 0.9, 9 persons → UNDECIDED: too few"
    )
    assert lines[1].endswith("MET: the whole interval clears the target")
    assert "(no interval)" in lines[3] and lines[3].endswith("MET: the value clears the target")
    assert lines[4].endswith("straddles the target; more test persons, not more epochs, would decide")
    assert claim_sentences(guarded, "b") == lines[1]
    with pytest.raises(ValueError, match="persons column"):
        guard_verdicts(claims.drop(columns=column))


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
    text = "".join(o.get("text", "") for o in outputs)
    assert re.search(r"MTCNN found (the face in all|no face in [\d,]+ of) [\d,]+ sampled frames", text), (
        "frames lost, computed"
    )
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
    shown = ("text/plain", "text/markdown")  # a displayed Markdown's text/plain is only its repr
    text = "".join("".join(o.get("data", {}).get(k, "") for k in shown) + o.get("text", "") for o in outputs)
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
    assert re.search(r"^mean concept AUC \(test\): .* → (MET|MISSED|UNDECIDED): ", text, re.M), "the verdict, computed"
    assert "1× = points nowhere" in text, "the pointing ratios, computed"
    newton = re.search(r"the error goes from ([\d.]+) after 1 iteration to ([\d.]+) after T = \d+ \(exact ZCA", text)
    assert newton and float(newton[2]) < float(newton[1]), "Newton's iterations drive the whitening error down"
    for name in ("baseline2d", "whitening"):
        metrics = json.loads((run / "whitening" / name / "metrics.json").read_text())
        assert metrics["best_epoch"] == 1 and "auc" in metrics["test"]


def test_notebook_03_shows_dropout_roc_methods_ablation_and_claims(tiny_pipeline):
    run, _ = tiny_pipeline
    images, text = _outputs(run, "03_td3dcnn")
    assert images == FIGURES["03_td3dcnn"], "dropout strip, curves, ROC"
    for shown in ("wobble", "td3dcnn_keep0.5", "temporal dropout helps", "verdict", "scored by every detector"):
        assert shown in text, shown
    wobble = re.search(r"^wobble fakes: (.*)$", text, re.M)
    assert wobble and all(f"{m} " in wobble[1] for m in ("baseline2d", "td3dcnn")), "per-method AUC, computed"
    assert re.search(r"(chance|no interval)", wobble[1])
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
    shown = re.search(
        r"(\d+) of (\d+) neighbours flipped \(([\d.]+)%\).*Faces with a flipped neighbour: (\d+) of", text
    )
    assert shown, "the showcase face's flip rate is printed"
    flipped, drawn, rate, faces_flipping = int(shown[1]), int(shown[2]), float(shown[3]), int(shown[4])
    assert math.isclose(rate, 100 * flipped / drawn, abs_tol=0.05)
    assert (flipped > 0) == (faces_flipping > 0), "the face shown is one whose neighbours flip, when there is one"
    if not faces_flipping:
        assert "uninformative" in text, "no flip: the notebook says the map is uninformative"
    raw = re.search(
        r"convergence delta \S+; fmkit's ig map differs from their signed channel sum by at most (\S+)", text
    )
    assert raw and float(raw[1]) < 1e-4, "one raw Captum call, and fmkit's ig map is that call"
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
        ("02_whitening_detector", "frame_settings"): "whitening",
        ("02_whitening_detector", "whitening_settings"): "whitening",
        ("03_td3dcnn", "settings"): "td3dcnn",
        ("03_td3dcnn", "frame_settings"): "baseline2d",
        ("04_relabel_distillation", "frame_settings"): "baseline2d",
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


#: A line of fmkit.engine.report.claim_sentences: (claim, verdict).
CLAIM_SENTENCE = re.compile(
    r"^(.+): (?:-?\d+\.\d+|nan) \((?:95 % interval [^)]*|no interval)\), target [≥≤] \S+, (?:\d+|\?) persons? → "
    r"(MET|MISSED|UNDECIDED): ",
    re.M,
)


def _verdict_tables_and_sentences(executed) -> tuple[list[pd.DataFrame], list[tuple[str, str]]]:
    """The claims tables an executed notebook shows (their HTML outputs) and its computed verdict sentences."""
    tables, sentences = [], []
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            table = html_table(html) if "verdict" in html else None
            if table is not None and "verdict" in table.columns:
                tables.append(table)
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            sentences += CLAIM_SENTENCE.findall(text)
    return tables, sentences


@pytest.mark.parametrize("name", list(FIGURES))
def test_executed_notebook_states_only_the_verdicts_its_tables_hold(tiny_pipeline, name):
    run, _ = tiny_pipeline
    executed = nbformat.read(run / "notebooks" / f"{name}.ipynb", as_version=4)
    for cell in executed.cells:
        if cell.cell_type == "markdown":
            assert not VERDICT_WORD.search(cell.source), cell.source[:80]
    tables, sentences = _verdict_tables_and_sentences(executed)
    if name in ("02_whitening_detector", "03_td3dcnn", "04_relabel_distillation"):
        assert tables and sentences, "a claims table, and its verdicts in words"
    for table in tables:
        persons = next(c for c in ("n_persons", "identities", "n") if c in table.columns)
        few = pd.to_numeric(table[persons], errors="coerce") < MIN_PERSONS
        if "n_fits" in table.columns:  # the protocol's cost claims: timing rounds, not persons
            few &= pd.to_numeric(table["n_fits"], errors="coerce") != 0
        assert (table.loc[few, "verdict"] == "UNDECIDED").all(), f"a verdict on fewer than {MIN_PERSONS} persons"
    shown = [(c, v) for t in tables for c, v in zip(t["claim"], t["verdict"])]
    for claim, verdict in sentences:  # pandas shortens a long claim in its table to a prefix and "..."
        rows = [v for c, v in shown if c == claim or (c.endswith("...") and claim.startswith(c[:-3]))]
        assert rows and set(rows) == {verdict}, f"{claim!r}: the sentence says {verdict}, the table {rows}"
