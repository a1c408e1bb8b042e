"""The notebooks in JupyterLab and the pipeline's report, driven in headless Chromium as a person would.

JupyterLab (``jupyter lab --no-browser`` on a free port with a token) serves copies of the five
notebooks whose parameters point at a copy of the tiny pipeline run (``tiny_pipeline``: trained
already, so the training cells only load the runs) with ``interactive=True``. Playwright drives
Debian's ``chromium`` (no browser download): each notebook is opened and run with Run > Run All
Cells; then no cell may show an error, every figure must have loaded, and the explorers of 01, 02
and 04 must be widgets that respond (pick another item, and the figure they show changes). The
report (``report.html``) is opened offline: every image loads from the page itself, every link to
a notebook resolves, the page names no machine path and keeps a readable width.

Without Chromium or Playwright the tests skip with one line saying so; with ``FMKIT_REQUIRE_BROWSER=1``
(set by ``.ci/run``) they fail instead. Screenshots go to the tests' temporary folder
(``pytest --basetemp=DIR`` keeps them at a known place).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml

NOTEBOOKS = ("01_preprocessing", "02_whitening_detector", "03_td3dcnn", "04_relabel_distillation", "05_evaluation")
EXPLORERS = ("01_preprocessing", "02_whitening_detector", "04_relabel_distillation")
CHROMIUM_ARGS = [  # the sandbox has no network: no background connection, no update, no sync
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAB_SETTINGS = {  # every cell in the DOM, no news or update check
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}
RUN_TIMEOUT_MS = 240_000  # one notebook's Run All on a slow shared machine
WIDGET_TIMEOUT_MS = 60_000  # one explorer's redraw (04 recomputes an explanation)


def _chromium() -> str | None:
    path = os.environ.get("FMKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return path if path and os.access(path, os.X_OK) else None


def _missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if _chromium() is None:
        return "no chromium on PATH (apt-get install chromium, or set FMKIT_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements.txt)"
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        return "jupyter lab is not installed beside this Python"
    return None


MISSING = _missing()
REQUIRED = os.environ.get("FMKIT_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRED, reason=f"browser tests: {MISSING}")


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; a failure when the browser tests are required (FMKIT_REQUIRE_BROWSER=1) but cannot run."""
    if MISSING is not None:
        pytest.fail(f"browser tests required (FMKIT_REQUIRE_BROWSER=1) but {MISSING}")
    return _chromium()


def _copy(src: str, dst: str) -> None:
    """Checkpoints are hard-linked (only read), everything else copied: the notebooks may rewrite files."""
    if src.endswith(".pt"):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def lab_root(tiny_pipeline, tmp_path_factory) -> Path:
    """A folder with a copy of the tiny run (``run/``) and the five notebooks, their parameters pointing at it."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from fmkit.pipeline import NOTEBOOKS_DIR, notebook_parameters

    run, _ = tiny_pipeline
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(run, root / "run", copy_function=_copy)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    resolved = cfg["resolved_parameters"]  # what a person sets by hand; the rest keeps the notebooks' defaults
    shared = {"data_root": resolved["data_root"], "layout": resolved["layout"], "run_dir": str(root / "run")}
    shared["interactive"] = True
    for step in cfg["notebooks"]:
        source = NOTEBOOKS_DIR / f"{step['name']}.ipynb"
        declared = set(notebook_parameters(source))
        params = {k: v for k, v in {**shared, **step["parameters"]}.items() if k in declared}
        nb = parameterize_notebook(load_notebook_node(str(source)), params)  # as papermill: an injected cell
        nbformat.write(nb, root / source.name)
    return root


def _answers(url: str, method: str = "GET") -> bool:
    """Whether the local server answers ``url`` with 2xx."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter_lab(chromium, lab_root, tmp_path_factory) -> Iterator[str]:
    """JupyterLab serving ``lab_root`` on a free port; yields its base URL (the token is ``fmkit``)."""
    home = tmp_path_factory.mktemp("jupyter")
    for rel, value in LAB_SETTINGS.items():
        (home / "settings" / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / "settings" / rel).write_text(json.dumps(value))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # the kernels' torch: small convolutions run faster so on shared cores
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    port = _free_port()
    log = open(home / "lab.log", "w")  # noqa: SIM115 - open for the server's lifetime
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jupyter"),
            "lab",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=fmkit",
            f"--ServerApp.root_dir={lab_root}",
            "--LabApp.news_url=None",
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"{base}/api/status?token=fmkit"):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {(home / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:  # the server shuts its kernels down and exits
        _answers(f"{base}/api/shutdown?token=fmkit", method="POST")
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    """A headless Chromium (Playwright, Debian's binary) with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go."""
    return tmp_path_factory.mktemp("screenshots")


# JavaScript run in the page: the state of one notebook's cells and outputs
CELLS_JS = """() => {
  const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')];
  return cells.map(c => ({
    prompt: (c.querySelector('.jp-InputPrompt') || {}).textContent || '',
    errors: [...c.querySelectorAll('.jp-OutputArea-output')]
      .filter(o => o.textContent.includes('Traceback (most recent call last)'))
      .map(o => o.textContent.slice(0, 500)),
    images: [...c.querySelectorAll('.jp-OutputArea-output img')]
      .map(i => ({complete: i.complete, width: i.naturalWidth})),
    widgets: c.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
    widgetFailures: [...c.querySelectorAll('.jp-OutputArea-output')]
      .filter(o => /Loading widget|Error displaying widget|model not found/.test(o.textContent))
      .map(o => o.textContent.slice(0, 200)),
  }));
}"""


# Run All has finished: no cell queued or running ([*]), the first one ran, the kernel is idle (a cell
# that raises stops Run All: the cells after it keep their empty prompt)
FINISHED_JS = f"""() => {{
  const cells = ({CELLS_JS})();
  const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
  return idle && cells.length && /^\\[\\d+\\]:$/.test(cells[0].prompt) && !cells.some(c => c.prompt.includes('*'));
}}"""


# the notebook's kernel is started and idle (before, the indicator says idle with "No Kernel")
KERNEL_READY_JS = """() => {
  const kernel = document.querySelector('.jp-NotebookPanel .jp-Toolbar-kernelName');
  const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
  return Boolean(idle && kernel && kernel.textContent.trim() && !kernel.textContent.includes('No Kernel'));
}"""
# Run All has started: some cell is queued, running or done
STARTED_JS = f"() => ({CELLS_JS})().some(c => /\\[(\\*|\\d+)\\]/.test(c.prompt))"


@pytest.fixture(scope="module")
def executed(jupyter_lab, browser, lab_root, shots) -> dict[str, object]:
    """Every notebook opened in its own JupyterLab page and run with Run > Run All Cells (all at once,
    so the kernels share the cores); returns the pages once every cell has run, the notebooks saved."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    pages = {}
    for name in NOTEBOOKS:
        page = browser.new_page()
        page.goto(f"{jupyter_lab}/lab/workspaces/{name}/tree/{name}.ipynb?token=fmkit&reset")
        page.wait_for_function(KERNEL_READY_JS, timeout=120_000, polling=250)
        for attempt in range(3):  # a click that came before the kernel could take it runs nothing: again
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            try:
                page.wait_for_function(STARTED_JS, timeout=30_000, polling=250)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    page.screenshot(path=str(shots / f"{name}-not-started.png"))
                    pytest.fail(f"{name}: Run > Run All Cells ran no cell")
        pages[name] = page
    for name, page in pages.items():
        try:
            page.wait_for_function(FINISHED_JS, timeout=RUN_TIMEOUT_MS, polling=500)
        except PlaywrightTimeout:
            page.screenshot(path=str(shots / f"{name}-timeout.png"))
            prompts = [c["prompt"] for c in page.evaluate(CELLS_JS)]
            pytest.fail(f"{name}: Run All did not finish in {RUN_TIMEOUT_MS / 1000:g} s: prompts {prompts}")
        page.keyboard.press("Control+s")
        page.wait_for_function(  # saved: the tab loses its dirty mark
            "() => !document.querySelector('.jp-mod-current.jp-mod-dirty')", timeout=30_000
        )
        page.screenshot(path=str(shots / f"{name}.png"))
    return pages


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab_without_errors_and_shows_every_figure(name, executed, lab_root):
    page = executed[name]
    cells = page.evaluate(CELLS_JS)
    errors = [e for c in cells for e in c["errors"]]
    assert not errors, f"{name}: {errors[0]}"
    not_run = [i for i, c in enumerate(cells) if not re.fullmatch(r"\[\d+\]:", c["prompt"])]
    assert not not_run, f"{name}: code cells {not_run} did not run"
    saved = nbformat.read(lab_root / f"{name}.ipynb", as_version=4)
    outputs = [o for c in saved.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    error = next((o for o in outputs if o.get("output_type") == "error"), None)
    assert error is None, f"{name}: {error['ename']}: {error['evalue']}"
    images = [i for c in cells for i in c["images"]]
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    assert pngs >= 1 and len(images) >= pngs, f"{name}: {len(images)} figures shown of {pngs}"
    assert all(i["complete"] and i["width"] > 0 for i in images), f"{name}: a figure did not load: {images}"
    views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    failures = [f for c in cells for f in c["widgetFailures"]]
    assert not failures, f"{name}: {failures[0]}"
    if name in EXPLORERS:
        assert views >= 1 and any(c["widgets"] for c in cells), f"{name}: the explorer is not a widget"


def _explorer_figure(page) -> str:
    """The src of the image the last explorer's output shows (a data: URI or a blob: URL)."""
    locator = page.locator(".widget-interact .widget-output img").last
    locator.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
    return locator.get_attribute("src") or ""


def _pick(page, name: str) -> str:
    """Move the explorer as a person would: another item of its dropdown, or the next face on its slider;
    returns what was picked."""
    interact = page.locator(".widget-interact").last
    if name == "04_relabel_distillation":
        readout = interact.locator(".widget-slider").filter(has_text="face").locator(".widget-readout")
        readout.click()
        page.keyboard.press("Control+a")
        page.keyboard.type("1")
        page.keyboard.press("Enter")
        return "face 1 typed on the face slider"
    select = interact.locator(".widget-dropdown select")
    options = select.locator("option").all_inner_texts()
    assert len(options) >= 2, f"{name}: the explorer offers {options}"
    select.select_option(label=options[1])
    return f"{options[1]!r} picked in the dropdown"


@pytest.mark.parametrize("name", EXPLORERS)
def test_explorer_responds(name, executed, shots):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = executed[name]
    page.locator(".widget-interact").last.scroll_into_view_if_needed()
    before = _explorer_figure(page)
    picked = _pick(page, name)
    try:
        page.wait_for_function(
            """before => {
                 const imgs = document.querySelectorAll('.widget-interact .widget-output img');
                 const img = imgs[imgs.length - 1];
                 return img && img.complete && img.naturalWidth > 0 && img.getAttribute('src') !== before;
               }""",
            arg=before,
            timeout=WIDGET_TIMEOUT_MS,
        )
    except PlaywrightTimeout:
        pytest.fail(
            f"{name}: the explorer did not respond: {picked}, "
            f"its figure is unchanged after {WIDGET_TIMEOUT_MS / 1000:g} s"
        )
    finally:
        page.screenshot(path=str(shots / f"{name}-explorer.png"))


def test_report_opens_offline_with_every_image_and_notebook_link(tiny_pipeline, browser, shots):
    report = tiny_pipeline[0] / "report.html"
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "els => els.map(i => ({complete: i.complete, width: i.naturalWidth, src: i.src.slice(0, 22)}))"
    )
    assert len(images) >= 8 and all(i["complete"] and i["width"] > 0 for i in images), images
    assert all(i["src"].startswith("data:image/png;base64") for i in images), "images are embedded"
    assert not [u for u in requests if not u.startswith(("file:", "data:"))], f"the page fetched {requests}"
    links = page.eval_on_selector_all("a[href$='.ipynb']", "els => els.map(a => [a.getAttribute('href'), a.href])")
    assert {href for href, _ in links} >= {f"notebooks/{n}.ipynb" for n in NOTEBOOKS}
    for href, url in links:
        target = Path(urllib.request.url2pathname(url.removeprefix("file://")))
        assert target.is_file(), f"link {href} does not resolve"
        nbformat.read(target, as_version=4)  # a notebook
    text = page.inner_text("body")
    for shown in ("Data", "persons", "held out", "Main table", "Claims", "verdict", *NOTEBOOKS):
        assert shown in text, shown
    width = page.evaluate("() => document.querySelector('main').getBoundingClientRect().width")
    assert width <= 1000, f"the text column is {width}px wide"
    page_html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page.content())
    assert not re.search(r"/(tmp|work|home|root)/", page_html), "the report names a machine path"
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    page.close()
