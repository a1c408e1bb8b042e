"""Run the numbered notebooks under papermill as one parameterized pipeline.

A pipeline config (YAML) names the dataset (or asks for the embedded synthetic one) and
the notebooks to execute with their parameters. Every notebook gets the shared
parameters ``data_root``, ``layout`` and ``run_dir``, plus ``interactive=False`` so that
widgets degrade to static figures. Executed notebooks land in ``RUN/notebooks/``.
Re-running resumes: the synthetic dataset is built once and the steps inside the
notebooks skip finished work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from fmkit.config import PIPELINE, parse_assignments, read_yaml, resolve
from fmkit.errors import FmkitError
from fmkit.io import atomic_path

#: The packaged notebooks and configs (``fmkit/notebooks``, ``fmkit/configs``; a clone links them at its root).
NOTEBOOKS_DIR = Path(str(files("fmkit") / "notebooks"))
DEFAULT_CONFIG = Path(str(files("fmkit") / "configs" / "demo.yaml"))


def load_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read and check a pipeline YAML (default: the packaged ``configs/demo.yaml``).

    Its keys are those of :data:`fmkit.config.PIPELINE`.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise FmkitError(f"pipeline config not found: {path}")
    cfg = resolve(PIPELINE, read_yaml(path))
    if cfg["notebooks"] is None:
        raise FmkitError(f"{path} lists no notebooks to run (notebooks: [{{name: 01_preprocessing, ...}}])")
    return cfg


def run_pipeline(config: str | os.PathLike | None, run_dir: str | os.PathLike, overrides: Sequence[str] = ()) -> Path:
    """Execute the config's notebooks in order into ``run_dir``; return the run folder."""
    import papermill as pm

    cfg = load_config(config)
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
    forced = parse_assignments(overrides)
    nb_dir = Path(cfg["notebooks_dir"] or NOTEBOOKS_DIR)
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({**cfg, "resolved_parameters": {**shared, **forced}}, sort_keys=False))
    for step in cfg["notebooks"]:
        name = step["name"]
        source = nb_dir / f"{name}.ipynb"
        if not source.is_file():
            raise FmkitError(f"notebook not found: {source}")
        params = {**shared, **step["parameters"], **forced}
        target = run_dir / "notebooks" / f"{name}.ipynb"
        try:
            pm.execute_notebook(str(source), str(target), parameters=params, cwd=str(run_dir), progress_bar=False)
        except pm.PapermillExecutionError as exc:
            raise FmkitError(
                f"notebook {name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} (executed copy: {target})"
            ) from None
    return run_dir
