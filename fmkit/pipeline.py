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
from pathlib import Path
from typing import Any, Sequence

import yaml

from fmkit.errors import FmkitError
from fmkit.io import atomic_path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "demo.yaml"


def load_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a pipeline YAML (default: ``configs/demo.yaml``) and check its keys."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise FmkitError(f"pipeline config not found: {path}")
    cfg = yaml.safe_load(path.read_text()) or {}
    unknown = set(cfg) - {"dataset", "synth", "notebooks", "notebooks_dir"}
    if unknown:
        raise FmkitError(f"unknown key(s) in {path}: {', '.join(sorted(unknown))} "
                         "(expected dataset, synth, notebooks, notebooks_dir)")
    if not cfg.get("notebooks"):
        raise FmkitError(f"{path} lists no notebooks to run")
    return cfg


def _parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FmkitError(f"bad parameter {item!r}: expected KEY=VALUE")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def run_pipeline(config: str | os.PathLike | None, run_dir: str | os.PathLike,
                 overrides: Sequence[str] = ()) -> Path:
    """Execute the config's notebooks in order into ``run_dir``; return the run folder."""
    import papermill as pm

    cfg = load_config(config)
    run_dir = Path(run_dir).resolve()
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    data = cfg.get("dataset") or {}
    data_root = data.get("root")
    if data_root is None:
        data_root = run_dir / "data"
        if not (data_root / "synth.json").is_file():
            from fmkit.data.synth import synthesize

            synthesize(data_root, **(cfg.get("synth") or {}))
    shared = {"data_root": str(data_root), "layout": data.get("layout", "auto"), "run_dir": str(run_dir),
              "interactive": False}
    forced = _parse_overrides(overrides)
    nb_dir = Path(cfg.get("notebooks_dir") or REPO / "notebooks")
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({**cfg, "resolved_parameters": {**shared, **forced}}, sort_keys=False))
    for step in cfg["notebooks"]:
        name = step["name"]
        source = nb_dir / f"{name}.ipynb"
        if not source.is_file():
            raise FmkitError(f"notebook not found: {source}")
        params = {**shared, **(step.get("parameters") or {}), **forced}
        target = run_dir / "notebooks" / f"{name}.ipynb"
        try:
            pm.execute_notebook(str(source), str(target), parameters=params, cwd=str(run_dir), progress_bar=False)
        except pm.PapermillExecutionError as exc:
            raise FmkitError(f"notebook {name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                             f"(executed copy: {target})") from None
    return run_dir
