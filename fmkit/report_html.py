"""``RUN/report.html``: one self-contained page a reader takes in at a glance.

The page (built from plain string templates, no JavaScript) shows, top to bottom:

- the title and the run's data summary: persons (identities) per split, videos per method, the
  held-out persons of the test split; from the synthetic dataset's ``synth.json`` (its
  ``persons_per_split``, ``counts``, ``photos``) when the run used one, else from ``RUN/index.csv``;
- the main table, ``RUN/evaluation/summary.csv`` (notebook 05), with 95 % intervals;
- the claims with their verdicts, as the executed notebooks showed them (a table with a
  ``verdict`` column in the output of a cell tagged ``report``);
- one section per executed notebook: a link to it (``notebooks/NN_name.ipynb``, relative, so
  the run folder can move) and the figures of its cells tagged ``report``, each under the
  heading of the notebook section it belongs to.

Figures are embedded as base64 PNG (``data:`` URIs): the page opens offline and can be mailed
alone. It names no machine path: the run folder appears by its name only, the data by its layout.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import yaml

from fmkit import __version__
from fmkit.io import atomic_path

REPORT, REPORT_TAG = "report.html", "report"
SUMMARY_CSV = Path("evaluation") / "summary.csv"
SYNTH_JSON = "synth.json"

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0; }
main { max-width: 960px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin: 22px 0 6px; }
p.meta, p.note { color: #666; font-size: 0.9em; margin: 4px 0 12px; }
nav a { margin-right: 14px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 12px 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; }
td.text, th.text { text-align: left; white-space: normal; }
.verdict { font-weight: 600; text-align: center; }
.MET { background: #dff3e0; color: #1b5e20; }
.MISSED { background: #fbe0e0; color: #8b1a1a; }
.UNDECIDED { background: #f1f1f1; color: #555; }
figure { margin: 8px 0 20px; }
figure img { max-width: 100%; height: auto; display: block; }
"""

_VERDICTS = ("MET", "MISSED", "UNDECIDED")


# ---------------------------------------------------------------------------------------------
# reading the run


@dataclass
class Figure:
    """One report figure: its section heading in the notebook and the PNG (base64)."""

    heading: str
    png: str


@dataclass
class NotebookSection:
    """What the report shows of one executed notebook."""

    name: str  # file stem, e.g. 01_preprocessing
    title: str  # the notebook's first heading
    link: str  # relative to the run folder
    figures: list[Figure] = field(default_factory=list)
    claims: list[pd.DataFrame] = field(default_factory=list)
    seconds: float | None = None


def _heading(source: str) -> str | None:
    """The first markdown heading of a cell's source, without its ``#`` marks."""
    for line in source.splitlines():
        m = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            return m.group(1)
    return None


class _TableParser(HTMLParser):
    """The header and body cells of the first ``<table>`` of an HTML fragment (pandas' ``to_html``)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.header_rows = 0
        self._cell: list[str] | None = None
        self._in_thead = self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if tag == "thead":
            self._in_thead = True
        elif tag == "tr":
            self.rows.append([])
            self.header_rows += self._in_thead
        elif tag in ("th", "td") and self.rows:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._done:
            return
        if tag == "thead":
            self._in_thead = False
        elif tag in ("th", "td") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._done = True

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_table(fragment: str) -> pd.DataFrame | None:
    """The DataFrame shown by a pandas HTML output (one header row, first column the index), or None."""
    parser = _TableParser()
    parser.feed(fragment)
    if parser.header_rows != 1 or len(parser.rows) < 2:
        return None
    header, body = parser.rows[0], parser.rows[1:]
    if not header or any(len(r) != len(header) for r in body):
        return None
    df = pd.DataFrame(body, columns=header)
    return df.drop(columns=header[0]) if header[0] == "" else df


def read_notebook(path: Path, run_dir: Path) -> NotebookSection:
    """The title, link, report figures and claims tables of one executed notebook."""
    nb = nbformat.read(path, as_version=4)
    title, heading = path.stem, ""
    section = NotebookSection(path.stem, title, Path(os.path.relpath(path, run_dir)).as_posix())
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = _heading(cell.source)
            if found is not None:
                if section.title == path.stem:
                    section.title = found
                else:
                    heading = found
            continue
        if cell.cell_type != "code" or REPORT_TAG not in cell.metadata.get("tags", []):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                png = data["image/png"]
                png = "".join(png) if isinstance(png, list) else png
                section.figures.append(Figure(heading, "".join(png.split())))
            elif "text/html" in data:
                fragment = data["text/html"]
                fragment = "".join(fragment) if isinstance(fragment, list) else fragment
                table = html_table(fragment) if "verdict" in fragment else None
                if table is not None and "verdict" in table.columns:
                    section.claims.append(table)
    return section


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _data_root(run_dir: Path) -> Path | None:
    """The dataset root the pipeline ran on (``config.yaml``'s resolved parameters), else ``RUN/data``."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        root = (cfg.get("resolved_parameters") or {}).get("data_root")
    except (OSError, yaml.YAMLError):
        root = None
    if root:
        return Path(root)
    return run_dir / "data" if (run_dir / "data").is_dir() else None


def _layout(run_dir: Path) -> str | None:
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    return (cfg.get("resolved_parameters") or {}).get("layout") or (cfg.get("dataset") or {}).get("layout")


def _count_list(counts: dict[str, int], order: Iterable[str] = ()) -> str:
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in set(order))
    return ", ".join(f"{k} {int(counts[k])}" for k in keys)


def data_summary(run_dir: Path) -> list[tuple[str, str]]:
    """(label, value) lines on the run's data: dataset, persons per split, videos per method,
    the held-out persons, face crops."""
    facts: list[tuple[str, str]] = []
    root = _data_root(run_dir)
    synth = _read_json(root / SYNTH_JSON) if root is not None else None
    index = None
    if (run_dir / "index.csv").is_file():
        index = pd.read_csv(run_dir / "index.csv", usecols=lambda c: c in {"split", "method", "label", "source_id"})
    splits = ("train", "val", "test")
    if synth is not None:
        per_split = {k: int(v) for k, v in synth.get("persons_per_split", {}).items()}
        counts = {k: int(v) for k, v in synth.get("counts", {}).items()}
        photos = len(synth.get("photos", {}))
        facts.append(("dataset", f"synthetic (fmkit synth): {photos} photos of {sum(per_split.values())} persons"))
        facts.append(("persons", f"{sum(per_split.values())}: {_count_list(per_split, splits)}"))
        facts.append(("videos", f"{sum(counts.values())}: {_count_list(counts, ['real'])}"))
        held_out, who = per_split.get("test", 0), "persons"
    elif index is not None:
        facts.append(("dataset", f"layout {_layout(run_dir) or 'unknown'}"))
        per_split = index.groupby("split")["source_id"].nunique().to_dict()
        counts = index.groupby("method").size().to_dict()
        facts.append(("identities", f"{sum(per_split.values())}: {_count_list(per_split, splits)}"))
        facts.append(("videos", f"{len(index)}: {_count_list(counts, ['real'])}"))
        held_out, who = per_split.get("test", 0), "identities"
    else:
        return [("data", "no index and no synthetic dataset found in the run")]
    test_videos = f" ({int((index['split'] == 'test').sum())} test videos)" if index is not None else ""
    who = {"persons": "person", "identities": "identity"}[who] if held_out == 1 else who
    facts.append(("held out", f"{held_out} {who}{test_videos}, never seen in training or validation"))
    faces = run_dir / "faces" / "faces.csv"
    if faces.is_file():
        crops = pd.read_csv(faces, usecols=["video_id"])
        facts.append(("face crops", f"{len(crops)} from {crops['video_id'].nunique()} videos"))
    return facts


# ---------------------------------------------------------------------------------------------
# rendering


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(lo: object, hi: object) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (lo, hi)):
        return "—"
    return f"{float(lo):.3f} … {float(hi):.3f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[tuple[str, str]]], titles: Sequence[str] = ()) -> str:
    """An HTML table; each cell is (text, css class); header cells may carry a title (column names)."""
    head = "".join(
        f'<th class="text" title="{_esc(t)}">{_esc(h)}</th>' if t else f'<th class="text">{_esc(h)}</th>'
        for h, t in zip(header, [*titles, *[""] * len(header)])
    )
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls}">{_esc(text)}</td>' for text, cls in row) + "</tr>" for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


SUMMARY_COLUMNS = (  # header, source columns, how to show them
    ("detector", ("model",), "text"),
    ("test data", ("data",), "text"),
    ("items", ("items",), "text"),
    ("AUC (95 % interval)", ("auc", "auc_lo", "auc_hi"), "interval"),
    ("video AUC (95 % interval)", ("video_auc", "video_lo", "video_hi"), "interval"),
    ("video ACC at the val threshold", ("video_acc_at_threshold",), "number"),
    ("video EER", ("video_eer",), "number"),
    ("test videos", ("videos",), "int"),
    ("scored 0.5 (no item)", ("fallback_videos",), "int"),
)


def summary_html(summary: pd.DataFrame) -> str:
    """The main table: one row per detector and test data, AUCs with their 95 % intervals."""
    columns = [c for c in SUMMARY_COLUMNS if c[1][0] in summary.columns]
    rows = []
    for rec in summary.to_dict("records"):
        row = []
        for _, cols, kind in columns:
            value = rec.get(cols[0])
            if kind == "interval":
                lo, hi = rec.get(cols[1]), rec.get(cols[2])
                row.append((f"{_number(value)} ({_interval(lo, hi)})", ""))
            elif kind == "int" and isinstance(value, (int, float)) and not math.isnan(value):
                row.append((str(int(value)), ""))
            elif kind == "text":
                row.append((str(value), "text"))
            else:
                row.append((_number(value), ""))
        rows.append(row)
    return _table([c[0] for c in columns], rows, [", ".join(c[1]) for c in columns])


def claims_html(claims: pd.DataFrame) -> str:
    """A claims table as a notebook showed it, ``lo``/``hi`` joined into one interval, verdicts coloured."""
    cols = list(claims.columns)
    joined = "lo" in cols and "hi" in cols
    header: list[str] = []
    for c in cols:
        if c == "hi" and joined:
            continue
        header.append("95 % interval" if c == "lo" and joined else c)
    rows = []
    for rec in claims.to_dict("records"):
        row = []
        for c in cols:
            if c == "hi" and joined:
                continue
            value = str(rec[c])
            if c == "lo" and joined:
                lo, hi = value, str(rec["hi"])
                row.append(("—" if "nan" in (lo.lower(), hi.lower()) else f"{lo} … {hi}", ""))
            elif c == "verdict":
                row.append((value, f"verdict {value}" if value in _VERDICTS else "verdict"))
            elif c in ("claim", "figure"):
                row.append((value, "text"))
            else:
                row.append((value, ""))
        rows.append(row)
    return _table(header, rows)


def _figures_html(figures: Sequence[Figure]) -> str:
    parts, current = [], None
    for fig in figures:
        if fig.heading != current:
            current = fig.heading
            if current:
                parts.append(f"<h3>{_esc(current)}</h3>")
        alt = fig.heading or "figure"
        parts.append(f'<figure><img alt="{_esc(alt)}" src="data:image/png;base64,{fig.png}"></figure>')
    return "\n".join(parts)


def render(run_dir: Path, sections: Sequence[NotebookSection], generated: datetime | None = None) -> str:
    """The whole page as a string."""
    generated = generated or datetime.now(UTC)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>fmkit report · {_esc(run_dir.name)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>fmkit report · {_esc(run_dir.name)}</h1>",
        f'<p class="meta">pipeline run <code>{_esc(run_dir.name)}</code>, report written '
        f"{generated:%Y-%m-%d %H:%M} UTC by fmkit {_esc(__version__)}; every number is measured on the held-out "
        "test split, with a 95 % interval resampling identities.</p>",
    ]
    if sections:
        links = "".join(f'<a href="#{_esc(s.name)}">{_esc(s.name)}</a>' for s in sections)
        out.append(f"<nav>{links}</nav>")
    facts = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in data_summary(run_dir))
    out.append(f'<h2 id="data">Data</h2><dl class="facts">{facts}</dl>')

    out.append('<h2 id="main-table">Main table</h2>')
    summary_path = run_dir / SUMMARY_CSV
    if summary_path.is_file():
        out.append(
            '<p class="note">Every detector on every test video (<code>evaluation/summary.csv</code>); '
            "a video without an item to score (no face crop, or too few for a clip) scores 0.5.</p>"
        )
        out.append(summary_html(pd.read_csv(summary_path)))
    else:
        out.append('<p class="note">No main table: notebook 05_evaluation did not run.</p>')

    out.append('<h2 id="claims">Claims</h2>')
    with_claims = [s for s in sections if s.claims]
    if with_claims:
        out.append(
            '<p class="note">Each claim against its target: MET when the whole 95 % interval clears it, '
            "MISSED when the whole interval falls short, UNDECIDED otherwise.</p>"
        )
        for s in with_claims:
            out.append(f'<h3>{_esc(s.title)} (<a href="{_esc(s.link)}">{_esc(s.name)}</a>)</h3>')
            out.extend(claims_html(c) for c in s.claims)
    else:
        out.append('<p class="note">No notebook of this run measured claims.</p>')

    for s in sections:
        took = f", executed in {s.seconds:g} s" if s.seconds is not None else ""
        out.append(f'<h2 id="{_esc(s.name)}">{_esc(s.title)}</h2>')
        out.append(f'<p class="meta"><a href="{_esc(s.link)}">the executed notebook {_esc(s.name)}</a>{took}</p>')
        out.append(_figures_html(s.figures) if s.figures else '<p class="note">No report figures.</p>')
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def build_report(run_dir: str | os.PathLike, notebooks: Sequence[str | os.PathLike]) -> Path:
    """Write ``RUN/report.html`` from the run folder and its executed ``notebooks``; return its path."""
    run_dir = Path(run_dir)
    state = _read_json(run_dir / "pipeline.json") or {}
    sections = []
    for path in map(Path, notebooks):
        if not path.is_file():
            continue
        section = read_notebook(path, run_dir)
        section.seconds = (state.get(section.name) or {}).get("seconds")
        sections.append(section)
    with atomic_path(run_dir / REPORT) as tmp:
        tmp.write_text(render(run_dir, sections), encoding="utf-8")
    return run_dir / REPORT


def embedded_images(page: str) -> list[bytes]:
    """The PNG bytes of every ``data:`` image of a report page (for tests and checks)."""
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]
