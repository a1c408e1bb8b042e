"""Run the numbered notebooks under papermill as one parameterized pipeline, ending in ``report.html``.

A pipeline config (YAML, :data:`fmkit.config.PIPELINE`) names the dataset (or asks for the
embedded synthetic one) and the notebooks to execute with their parameters; a step may only
set parameters its notebook declares (its cell tagged ``parameters``). Every notebook also gets
the shared parameters ``data_root``, ``layout`` and ``run_dir``, plus ``interactive=False`` so
that widgets degrade to static figures and ``progress=False`` so that no progress bar (a tqdm widget
that would stay frozen in the saved notebook) is drawn (each where the notebook declares it). The run
folder holds:

- ``notebooks/NN_name.ipynb``: the executed notebooks;
- ``pipeline.log``: one line per step (started, finished with its seconds, skipped, failed);
- ``kernels.log``: what the kernel processes printed outside the notebooks' cells (their start-up
  and shut-down messages, a crash), kept off the terminal;
- ``pipeline.json``: each finished step's fingerprint — a hash of the notebook's source, its
  parameters and the fingerprints of the steps before it;
- ``report.html``: one self-contained page (:mod:`fmkit.report_html`): the run's data, the main
  table, the claims with their verdicts, and the figures of the cells tagged ``report`` of every
  executed notebook, with links to the executed notebooks.

A failing notebook stops the pipeline with one FmkitError naming the notebook, the cell and
the error; the notebooks that finished stay. ``resume=True`` skips the steps whose executed
notebook exists with the same fingerprint (same source, parameters and inputs) and reruns
the others (and so every step after a changed one). The synthetic dataset is built once, and
the training steps inside the notebooks resume their runs either way.

While it runs, the pipeline reports on standard error: the synthesis, then ``[i/n] name`` for each
notebook with, on a terminal, a bar over its cells that shows the elapsed time and, when an earlier
run into the same folder logged the notebook, the time it took then (``expected``); elsewhere (a log,
CI) one line when a notebook starts and one when it finishes. The kernels talk over IPC sockets
(POSIX; elsewhere TCP with CurveZMQ encryption where available, :func:`kernel_config`), so that no
kernel warns that it runs over TCP without encryption; they run with ``FMKIT_PROGRESS=0`` and show
each warning text once (the IPython extension of :mod:`fmkit.console`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any, TextIO

import nbformat
import yaml
from tqdm.std import tqdm

from fmkit.config import PIPELINE, parse_assignments, read_yaml, resolve
from fmkit.console import PROGRESS_ENV, is_terminal
from fmkit.errors import FmkitError
from fmkit.io import atomic_path

#: The packaged notebooks and configs (``fmkit/notebooks``, ``fmkit/configs``; a clone links them at its root).
NOTEBOOKS_DIR = Path(str(files("fmkit") / "notebooks"))
DEFAULT_CONFIG = Path(str(files("fmkit") / "configs" / "demo.yaml"))
SHARED = ("data_root", "layout", "run_dir", "interactive", "progress")
STATE, LOG, REPORT, KERNEL_LOG = "pipeline.json", "pipeline.log", "report.html", "kernels.log"
REPORT_TAG = "report"
#: Kernel command-line options: each warning text once (:mod:`fmkit.console`).
KERNEL_ARGUMENTS = ["--IPKernelApp.extensions=fmkit.console"]
ENGINE = "fmkit"


#: The folder a source checkout of fmkit sits in (the package's parent), where ``make demo`` writes ``outputs/demo``.
REPOSITORY = Path(__file__).resolve().parents[1]


def resolve_run_dir(path: str | os.PathLike) -> Path:
    """A notebook's folder parameter (``run_dir``, ``data_root``, …) as an absolute path, from any working directory.

    An absolute path is kept. A relative one is taken from the working directory when it exists there,
    else from the repository root (:data:`REPOSITORY`, when fmkit runs from a clone: it holds
    ``pyproject.toml``), so that ``outputs/demo`` names the demo run both from the repository and from a
    kernel started in ``notebooks/`` (``make lab``); outside a clone, from the working directory.
    """
    given = Path(path).expanduser()
    if given.is_absolute():
        return given
    here = Path.cwd() / given
    if here.exists() or not (REPOSITORY / "pyproject.toml").is_file():
        return here.resolve()
    return (REPOSITORY / given).resolve()


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


def _previous_seconds(run_dir: Path) -> dict[str, float]:
    """Each notebook's time in the last run that finished it in ``run_dir`` (from ``pipeline.log``)."""
    path = run_dir / LOG
    if not path.is_file():
        return {}
    finished = re.compile(r"^\S+ \S+ (\S+): finished in ([0-9.]+) s$")
    seconds = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = finished.match(line)
        if match:
            seconds[match[1]] = float(match[2])
    return seconds


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class _CellBar(tqdm):
    """papermill's bar over a notebook's cells (it calls ``update``, sets ``n`` and closes it): titled
    ``[i/n] name`` whatever papermill would call it, and redrawn every second so that the elapsed time
    moves during a long cell."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="fmkit-cell-bar", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.refresh()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Kept as it is: papermill would replace it by ``Executing <cell description>``."""

    def close(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None and not stop.is_set():
            stop.set()
            if self._ticker is not threading.current_thread():
                self._ticker.join()
        super().close()


class _Console:
    """What the pipeline reports while it runs, on ``stream`` (stderr): bars on a terminal (``bars``),
    one line per event elsewhere."""

    def __init__(self, bars: bool, stream: TextIO | None = None) -> None:
        self.bars, self.stream = bars, stream if stream is not None else sys.stderr

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def cell_bar(self, label: str, cells: int, expected: float | None) -> _CellBar | None:
        """The bar over a notebook's cells on a terminal; None elsewhere (a start line instead)."""
        if not self.bars:
            self.line(label + (f" (expected {duration(expected)})" if expected is not None else ""))
            return None
        hint = f"expected {tqdm.format_interval(expected)}" if expected is not None else None
        fmt = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} cells [{elapsed}" + (f", {hint}]" if hint else "]")
        return _CellBar(total=cells, desc=label, unit="cell", file=self.stream, bar_format=fmt, dynamic_ncols=True)


def _engine() -> str:
    """The papermill engine of the pipeline: papermill's nbclient engine, drawing the pipeline's cell bar."""
    from papermill.engines import NBClientEngine, papermill_engines

    class FmkitEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, cell_bar=None, **kwargs):
            if cell_bar is not None:
                cell_bar.total = len(nb_man.nb.cells)  # with papermill's injected-parameters cell
                nb_man.pbar = cell_bar
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE, FmkitEngine)
    return ENGINE


@functools.cache
def kernel_manager_class() -> type:
    """nbclient's kernel manager, the kernel process's own output (its start-up and shut-down messages,
    outside any cell) appended to the file ``FmkitKernelManager.output_file`` names instead of the terminal."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Unicode

    class FmkitKernelManager(AsyncKernelManager):
        output_file = Unicode("", config=True, help="file the kernel process's stdout and stderr go to")

        async def start_kernel(self, **kw: Any) -> None:
            if not self.output_file or "stderr" in kw:
                return await super().start_kernel(**kw)
            with open(self.output_file, "ab") as out:  # the kernel holds its own copy of the descriptor
                return await super().start_kernel(stdout=out, stderr=out, **kw)

    return FmkitKernelManager


def kernel_config(kernel_name: str = "python3", output_file: str | os.PathLike | None = None) -> Any:
    """Kernel manager settings (a traitlets Config) under which an IPython kernel starts without warning
    that it runs over TCP without encryption: IPC sockets in the user's private Jupyter runtime folder on
    POSIX (no TCP port: parallel pipelines cannot collide on one), else CurveZMQ transport encryption where
    pyzmq has it and the kernelspec declares it, else the defaults; with :func:`kernel_manager_class`, the
    kernel process's own output goes to ``output_file``."""
    from traitlets.config import Config

    config = Config()
    if output_file is not None:
        config.FmkitKernelManager.output_file = str(output_file)
    if os.name == "posix":
        config.KernelManager.transport = "ipc"
    elif _supports_curve(kernel_name):
        config.KernelManager.transport_encryption = "auto"
    return config


def _supports_curve(kernel_name: str) -> bool:
    import zmq
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    if not zmq.has("curve"):
        return False
    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return False
    declared = (spec.metadata or {}).get("supported_encryption") or ()
    declared = [declared] if isinstance(declared, str) else declared
    return "curve" in {str(d).strip().lower() for d in declared}


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """The environment the kernels inherit: no progress bars (``FMKIT_PROGRESS=0``)."""
    values = {PROGRESS_ENV: "0"}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_pipeline(
    config: str | os.PathLike | None,
    run_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
    resume: bool = False,
    progress: bool | None = None,
) -> Path:
    """Execute the config's notebooks in order into ``run_dir``, then write ``report.html``; return the run folder.

    ``overrides`` (``KEY=VALUE``) go to every notebook that declares the parameter (one that none
    declares is an error); ``resume`` skips unchanged steps. ``progress``: bars on standard error
    (the synthesis, each notebook's cells); False: one line per event; None: bars on a terminal only.
    """
    import papermill as pm

    cfg = load_config(config)
    nb_dir = Path(cfg["notebooks_dir"] or NOTEBOOKS_DIR)
    declared = {s["name"]: set(notebook_parameters(nb_dir / f"{s['name']}.ipynb")) for s in cfg["notebooks"]}
    forced = parse_assignments(overrides)
    unknown = sorted(set(forced) - set().union(*declared.values()))
    if unknown:
        raise FmkitError(f"-p {unknown[0]}: no notebook of the pipeline has this parameter")
    console = _Console(is_terminal() if progress is None else bool(progress))
    run_dir = Path(run_dir).resolve()
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    expected = _previous_seconds(run_dir)
    steps = cfg["notebooks"]
    known = [expected[s["name"]] for s in steps if s["name"] in expected]
    before = f" (its notebooks took {duration(sum(known))} last time)" if len(known) == len(steps) else ""
    console.line(f"fmkit pipeline: {len(steps)} notebook(s) into {run_dir}{before}")
    started = time.perf_counter()
    data = cfg["dataset"]
    data_root = data["root"]
    if data_root is None:
        data_root = run_dir / "data"
        if not (data_root / "synth.json").is_file():
            from fmkit.data.synth import synthesize

            console.line(f"synthesizing the dataset into {data_root}")
            start = time.perf_counter()
            synthesize(data_root, progress=console.bars, **cfg["synth"])
            console.line(f"synthesized in {duration(time.perf_counter() - start)}")
    shared = {
        "data_root": str(data_root),
        "layout": data["layout"],
        "run_dir": str(run_dir),
        "interactive": False,
        "progress": False,
    }
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({**cfg, "resolved_parameters": {**shared, **forced}}, sort_keys=False))
    state = _read_state(run_dir) if resume else {}
    engine, previous, executed = _engine(), "", []
    for i, step in enumerate(steps, start=1):
        name = step["name"]
        label = f"[{i}/{len(steps)}] {name}"
        source = nb_dir / f"{name}.ipynb"
        params = {k: v for k, v in {**shared, **step["parameters"], **forced}.items() if k in declared[name]}
        target = run_dir / "notebooks" / f"{name}.ipynb"
        previous = fingerprint(source, params, previous)
        executed.append(target)
        if resume and state.get(name, {}).get("fingerprint") == previous and target.is_file():
            _log(run_dir, f"{name}: skipped (executed before with the same source, parameters and inputs)")
            console.line(f"{label}: skipped (executed before with the same source, parameters and inputs)")
            continue
        state.pop(name, None)
        _log(run_dir, f"{name}: started")
        start = time.perf_counter()
        with open(run_dir / KERNEL_LOG, "a", encoding="utf-8") as kernel_log:
            kernel_log.write(f"== {datetime.now(UTC):%Y-%m-%d %H:%M:%S} {name}\n")
        bar = console.cell_bar(label, len(nbformat.read(source, as_version=4).cells), expected.get(name))
        try:
            with _kernel_environment():
                pm.execute_notebook(
                    str(source),
                    str(target),
                    parameters=params,
                    cwd=str(run_dir),
                    engine_name=engine,
                    progress_bar=False,
                    cell_bar=bar,
                    config=kernel_config(output_file=run_dir / KERNEL_LOG),
                    kernel_manager_class=kernel_manager_class(),
                    extra_arguments=KERNEL_ARGUMENTS,
                )
        except pm.PapermillExecutionError as exc:
            _log(run_dir, f"{name}: FAILED in cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
            _write_state(run_dir, state)
            raise FmkitError(
                f"notebook {name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} (executed copy: {target})"
            ) from None
        finally:
            if bar is not None:
                bar.close()
        seconds = round(time.perf_counter() - start, 1)
        state[name] = {"fingerprint": previous, "seconds": seconds}
        _write_state(run_dir, state)
        _log(run_dir, f"{name}: finished in {seconds} s")
        if not console.bars:
            console.line(f"{label}: finished in {duration(seconds)}")
    build_report(run_dir, executed)
    _log(run_dir, f"report written: {run_dir / REPORT}")
    console.line(f"pipeline finished in {duration(time.perf_counter() - started)}; report: {run_dir / REPORT}")
    return run_dir


def build_report(run_dir: Path, notebooks: Sequence[Path]) -> Path:
    """``report.html``: the run's data, main table, claims and each notebook's report figures (fmkit.report_html)."""
    from fmkit.report_html import build_report as build

    return build(run_dir, notebooks)
