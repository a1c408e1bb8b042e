"""report.html (fmkit.report_html): one self-contained page, on a hand-made run folder and on the tiny pipeline run."""

import base64
import io
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import yaml

from fmkit.report_html import build_report, embedded_images, html_table

MACHINE_PATH = re.compile(r"/(tmp|work|home|root|Users)/")


def _without_images(page: str) -> str:
    """The page less its base64 images (whose text may spell anything)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,", page)


def _png() -> str:
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _claims() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim": ["detects (video AUC)", "temporal dropout helps (AUC − no dropout)"],
            "value": [0.93, 0.01],
            "lo": [0.9, -0.02],
            "hi": [0.96, 0.04],
            "target": [0.9, 0.0],
            "verdict": ["MET", "UNDECIDED"],
            "identities": [20, 20],
        }
    )


def _run(tmp_path):
    """A run folder as the pipeline leaves it: config, synthetic data, index, faces, summary, two notebooks."""
    run, data = tmp_path / "myrun", tmp_path / "data"
    (run / "notebooks").mkdir(parents=True)
    (run / "evaluation").mkdir()
    (run / "faces").mkdir()
    data.mkdir()
    resolved = {"data_root": str(data), "layout": "folder", "run_dir": str(run)}
    (run / "config.yaml").write_text(yaml.safe_dump({"dataset": {"root": None}, "resolved_parameters": resolved}))
    synth = {
        "photos": {f"ph{i}": {"person": f"p{i // 2}", "split": "train"} for i in range(6)},
        "persons_per_split": {"test": 2, "train": 4, "val": 1},
        "counts": {"real": 7, "faceswap": 7, "selfblend": 7},
    }
    (data / "synth.json").write_text(json.dumps(synth))
    pd.DataFrame({"split": ["train"] * 15 + ["test"] * 6, "method": "real", "label": 0, "source_id": "p"}).to_csv(
        run / "index.csv", index=False
    )
    pd.DataFrame({"video_id": ["a", "a", "b"]}).to_csv(run / "faces" / "faces.csv", index=False)
    pd.DataFrame(
        {
            "model": ["baseline2d", "td3dcnn"],
            "data": "faces",
            "items": ["frames", "clips"],
            "auc": [0.91, 0.88],
            "auc_lo": [0.85, float("nan")],
            "auc_hi": [0.95, float("nan")],
            "video_auc": [0.94, 0.9],
            "video_lo": [0.9, 0.8],
            "video_hi": [0.98, 0.97],
            "video_acc_at_threshold": [0.88, 0.86],
            "video_acc": [0.87, 0.85],
            "video_eer": [0.14, 0.17],
            "videos": [21, 21],
            "fallback_videos": [0, 2],
        }
    ).to_csv(run / "evaluation" / "summary.csv", index=False)
    png = _png()
    v4 = nbformat.v4
    first = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# 01 · First notebook\n\nWhat it does."),
            v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
            v4.new_markdown_cell(f"## 1 · A figure\n\nFrom `{run}`.", metadata={"tags": ["report"]}),
            v4.new_code_cell(
                f"print('{run}')",
                metadata={"tags": ["report"]},
                outputs=[
                    v4.new_output("stream", name="stdout", text=f"written to {run}\n"),
                    v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
                ],
            ),
            v4.new_markdown_cell("## 2 · Not in the report"),
            v4.new_code_cell("plot()", outputs=[v4.new_output("display_data", data={"image/png": png})]),
        ]
    )
    second = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# 03 · Second notebook"),
            v4.new_markdown_cell("## 5 · The claims", metadata={"tags": ["report"]}),
            v4.new_code_cell(
                "display(claims)",
                metadata={"tags": ["report"]},
                outputs=[
                    v4.new_output(
                        "execute_result",
                        data={"text/html": _claims().round(3).to_html(), "text/plain": "..."},
                        execution_count=3,
                    )
                ],
            ),
        ]
    )
    nbformat.write(first, run / "notebooks" / "01_first.ipynb")
    nbformat.write(second, run / "notebooks" / "03_second.ipynb")
    (run / "pipeline.json").write_text(json.dumps({"01_first": {"fingerprint": "x", "seconds": 12.5}}))
    return run


def test_html_table_reads_what_pandas_shows():
    table = html_table(_claims().round(3).to_html())
    assert list(table.columns) == list(_claims().columns)
    assert table["verdict"].tolist() == ["MET", "UNDECIDED"] and table["claim"][1].startswith("temporal dropout")
    assert html_table("<p>no table</p>") is None


def test_report_of_a_run_folder_is_one_offline_page_in_order_without_machine_paths(tmp_path):
    run = _run(tmp_path)
    page = build_report(run, sorted((run / "notebooks").glob("*.ipynb"))).read_text()
    text = _without_images(page)
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)
    assert "<script" not in page and "<link" not in page and not re.search(r'src="(?!data:)', page), "self-contained"
    assert "max-width: 960px" in page, "a readable width"
    order = ["<h1>fmkit report · myrun", 'id="data"', 'id="main-table"', 'id="claims"', 'id="01_first"']
    order.append('id="03_second"')
    positions = [page.index(marker) for marker in order]
    assert positions == sorted(positions), "title, data, main table, claims, then one section per notebook"
    # the data summary: from synth.json and the index
    for fact in ("6 photos of 7 persons", "7: train 4, val 1, test 2", "21: real 7, faceswap 7, selfblend 7"):
        assert fact in text, fact
    assert "2 persons (6 test videos), never seen in training or validation" in text
    assert "3 from 2 videos" in text
    # the main table, intervals joined; a missing interval is a dash
    assert "0.910 (0.850 … 0.950)" in text and "0.940 (0.900 … 0.980)" in text and "0.880 (—)" in text
    # the claims with their verdicts, linked to their notebook
    assert '<td class="verdict MET">MET</td>' in page and '<td class="verdict UNDECIDED">UNDECIDED</td>' in page
    assert "0.90 … 0.96" in text and "temporal dropout helps (AUC − no dropout)" in text
    # the notebooks: their titles, links, time, report figures only (none of the untagged cell), under their heading
    assert text.count('href="notebooks/01_first.ipynb"') == 1 and 'href="notebooks/03_second.ipynb"' in text
    assert "01 · First notebook" in text and "executed in 12.5 s" in text and "<h3>1 · A figure</h3>" in text
    assert "Not in the report" not in text and "What it does" not in text
    images = embedded_images(page)
    assert len(images) == 1 and all(i.startswith(b"\x89PNG") for i in images)


def test_report_without_synthetic_data_summarises_the_index(tmp_path):
    run = _run(tmp_path)
    (tmp_path / "data" / "synth.json").unlink()
    (run / "evaluation" / "summary.csv").unlink()
    text = _without_images(build_report(run, [run / "notebooks" / "03_second.ipynb"]).read_text())
    assert "layout folder" in text and "identities" in text and "21: real 21" in text
    assert "No main table" in text and not MACHINE_PATH.search(text)


def test_report_of_the_tiny_pipeline_run(tiny_pipeline):
    run, _ = tiny_pipeline
    page = (run / "report.html").read_text()
    text = _without_images(page)
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)
    assert "<script" not in page and not re.search(r'src="(?!data:)', page), "self-contained"
    data_root = yaml.safe_load((run / "config.yaml").read_text())["resolved_parameters"]["data_root"]
    persons = json.loads((Path(data_root) / "synth.json").read_text())["persons_per_split"]
    assert f"{sum(persons.values())}: train {persons['train']}, val {persons['val']}, test {persons['test']}" in text
    summary = pd.read_csv(run / "evaluation" / "summary.csv")
    for model in summary["model"]:
        assert f'<td class="text">{model}</td>' in page, model
    for name in ("02_whitening_detector", "03_td3dcnn", "04_relabel_distillation"):  # the notebooks with claims
        assert f'(<a href="notebooks/{name}.ipynb">{name}</a>)' in page, name
    assert page.count('class="verdict ') >= 9, "every claim has its verdict"
    for name in ("01_preprocessing", "02_whitening_detector", "03_td3dcnn", "04_relabel_distillation", "05_evaluation"):
        section = text.split(f'<h2 id="{name}">', 1)[1].split("<h2", 1)[0]
        assert f'href="notebooks/{name}.ipynb"' in section and "<img" in section, f"{name}: link and figures"
    assert "held out" in text and "1 person (5 test videos)" in text
    assert len(embedded_images(page)) >= 8 and all(i.startswith(b"\x89PNG") for i in embedded_images(page))
