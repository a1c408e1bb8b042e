"""Run the numbered notebooks under papermill as one parameterized pipeline, ending in ``report.html``.

A pipeline config (YAML, :data:`fmkit.config.PIPELINE`) names the dataset (or asks for the
embedded synthetic one) and the notebooks to execute with their parameters; a step may only
set parameters its notebook declares (its cell tagged ``parameters``). Every notebook also gets
the shared parameters ``data_root``, ``layout`` and ``run_dir``, plus ``interactive=False`` so
that widgets degrade to static figures (each where the notebook declares it). The run folder holds:

- ``notebooks/NN_name.ipynb``: the executed notebooks;
- ``pipeline.log``: one line per step (started, finished with its seconds, skipped, failed);
- ``pipeline.json``: each finished step's fingerprint — a hash of the notebook's source, its
  parameters and the fingerprints of the steps before it;
- ``report.html``: the cells tagged ``report`` of every executed notebook (their outputs, no
  code) on one page, with links to the executed notebooks, rendered by nbconvert.

A failing notebook stops the pipeline with one FmkitError naming the notebook, the cell and
the error; the notebooks that finished stay. ``resume=True`` skips the steps whose executed
notebook exists with the same fingerprint (same source, parameters and inputs) and reruns
the others (and so every step after a changed one). The synthetic dataset is built once, and
the training steps inside the notebooks resume their runs either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import nbformat
import yaml

from fmkit.config import PIPELINE, parse_assignments, read_yaml, resolve
from fmkit.errors import FmkitError
from fmkit.io import atomic_path

#: The packaged notebooks and configs (``fmkit/notebooks``, ``fmkit/configs``; a clone links them at its root).
NOTEBOOKS_DIR = Path(str(files("fmkit") / "notebooks"))
DEFAULT_CONFIG = Path(str(files("fmkit") / "configs" / "demo.yaml"))
SHARED = ("data_root", "layout", "run_dir", "interactive")
STATE, LOG, REPORT = "pipeline.json", "pipeline.log", "report.html"
REPORT_TAG = "report"


def load_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read and check a pipeline YAML (default: the packaged ``configs/demo.yaml``).

    Its keys are those of :data:`fmkit.config.PIPELINE`; each step's notebook must exist and
    declare every parameter the step sets.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise FmkitError(f"pipeline config not found: {path}")
    cfg = resolve(PIPELINE, read_yaml(path))
    if cfg["notebooks"] is None:
        raise FmkitError(f"{path} lists no notebooks to run (notebooks: [{{name: 01_preprocessing, ...}}])")
    nb_dir = Path(cfg["notebooks_dir"] or NOTEBOOKS_DIR)
    for step in cfg["notebooks"]:
        declared = notebook_parameters(nb_dir / f"{step['name']}.ipynb")
        unknown = sorted(set(step["parameters"]) - set(declared))
        if unknown:
            raise FmkitError(
                f"{path}: notebook {step['name']} has no parameter {unknown[0]!r} "
                f"(its parameters: {', '.join(declared)})"
            )
    return cfg


def notebook_parameters(source: Path) -> list[str]:
    """The parameter names a notebook declares in its ``parameters`` cell (FmkitError if it is missing)."""
    import papermill as pm

    if not source.is_file():
        raise FmkitError(f"notebook not found: {source}")
    return list(pm.inspect_notebook(str(source)))


def fingerprint(source: Path, params: dict[str, Any], previous: str) -> str:
    """sha256 of the notebook's source, its parameters and the previous step's fingerprint."""
    digest = hashlib.sha256(source.read_bytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(previous.encode())
    return digest.hexdigest()


def _log(run_dir: Path, message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with open(run_dir / LOG, "a", encoding="utf-8") as log:
        log.write(f"{stamp} {message}\n")


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    with atomic_path(run_dir / STATE) as tmp:
        tmp.write_text(json.dumps(state, indent=2))


def run_pipeline(
    config: str | os.PathLike | None,
    run_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
    resume: bool = False,
) -> Path:
    """Execute the config's notebooks in order into ``run_dir``, then write ``report.html``; return the run folder.

    ``overrides`` (``KEY=VALUE``) go to every notebook that declares the parameter (one that none
    declares is an error); ``resume`` skips unchanged steps.
    """
    import papermill as pm

    cfg = load_config(config)
    nb_dir = Path(cfg["notebooks_dir"] or NOTEBOOKS_DIR)
    declared = {s["name"]: set(notebook_parameters(nb_dir / f"{s['name']}.ipynb")) for s in cfg["notebooks"]}
    forced = parse_assignments(overrides)
    unknown = sorted(set(forced) - set().union(*declared.values()))
    if unknown:
        raise FmkitError(f"-p {unknown[0]}: no notebook of the pipeline has this parameter")
    run_dir = Path(run_dir).resolve()
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    data = cfg["dataset"]
    data_root = data["root"]
    if data_root is None:
        data_root = run_dir / "data"
        if not (data_root / "synth.json").is_file():
            from fmkit.data.synth import synthesize

            synthesize(data_root, progress=False, **cfg["synth"])
    shared = {"data_root": str(data_root), "layout": data["layout"], "run_dir": str(run_dir), "interactive": False}
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({**cfg, "resolved_parameters": {**shared, **forced}}, sort_keys=False))
    state = _read_state(run_dir) if resume else {}
    previous, executed = "", []
    for step in cfg["notebooks"]:
        name = step["name"]
        source = nb_dir / f"{name}.ipynb"
        params = {k: v for k, v in {**shared, **step["parameters"], **forced}.items() if k in declared[name]}
        target = run_dir / "notebooks" / f"{name}.ipynb"
        previous = fingerprint(source, params, previous)
        executed.append(target)
        if resume and state.get(name, {}).get("fingerprint") == previous and target.is_file():
            _log(run_dir, f"{name}: skipped (executed before with the same source, parameters and inputs)")
            continue
        state.pop(name, None)
        _log(run_dir, f"{name}: started")
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(source), str(target), parameters=params, cwd=str(run_dir), progress_bar=False)
        except pm.PapermillExecutionError as exc:
            _log(run_dir, f"{name}: FAILED in cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
            _write_state(run_dir, state)
            raise FmkitError(
                f"notebook {name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} (executed copy: {target})"
            ) from None
        seconds = round(time.perf_counter() - start, 1)
        state[name] = {"fingerprint": previous, "seconds": seconds}
        _write_state(run_dir, state)
        _log(run_dir, f"{name}: finished in {seconds} s")
    build_report(run_dir, executed)
    _log(run_dir, f"report written: {run_dir / REPORT}")
    return run_dir


def build_report(run_dir: Path, notebooks: Sequence[Path]) -> Path:
    """``report.html``: the ``report``-tagged cells of each executed notebook, under a heading that
    links to the notebook, exported by nbconvert without code."""
    from nbconvert import HTMLExporter

    cells = [
        nbformat.v4.new_markdown_cell(
            f"# fmkit pipeline report\n\nRun folder `{run_dir}`; each section shows the key tables and figures "
            "of one notebook and links to the whole executed notebook."
        )
    ]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        rel = path.relative_to(run_dir).as_posix()
        cells.append(nbformat.v4.new_markdown_cell(f"## {path.stem}\n\n[the executed notebook]({rel})"))
        cells.extend(c for c in nb.cells if REPORT_TAG in c.metadata.get("tags", []))
    report = nbformat.v4.new_notebook(
        cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(report)
    with atomic_path(run_dir / REPORT) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return run_dir / REPORT
