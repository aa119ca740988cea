"""The report of a run: report.html opens with a one-screen summary (the result, what was trained, on what, in how
many minutes, the curves, the chapters), then the executed notebooks without their plumbing (cells tagged as
:data:`SKIPPED_IN_REPORT`, headers cut to their title). Everything a user names goes through :func:`markup.escape`."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nbformat

from ..config import EPOCH_BUDGET, budget_summary
from ..files import read_json, write_atomic
from . import history, manifest
from .markup import escape
from .run_dir import NOTEBOOKS, RESTORE, RunDir

PHONE_CSS = "<style>body{max-width:60em;margin:auto} img{max-width:100%;height:auto} pre{white-space:pre-wrap}</style>"
SKIPPED_IN_REPORT = {"parameters", "injected-parameters", "report-skip"}  # cell tags left out of report.html
TITLE_ONLY_IN_REPORT = "report-title"  # a notebook's header cell: report.html shows its first line, the chapter's title


def banner(run: RunDir, failure: str | None = None) -> str:
    """The run at a glance, in Markdown (the report's summary, Colab's headline): first any warning a reader must see
    (failed, generated data, over budget), then a table of the test accuracies with their 95% intervals, the best and
    worst classes, the model, the hardware and the training time; what the run has not written yet is left out."""
    cfg = json.loads(run.config.read_text())
    metrics = json.loads(run.metrics.read_text()) if run.metrics.exists() and not failure else {}
    record = read_json(run.manifest, RESTORE) if run.manifest.exists() else {}
    lines = [f"# ✖ RUN FAILED\n\n{escape(failure)}\n"] if failure else []
    if cfg.get("generated"):
        lines.append("# ⚠ GENERATED DATA: these numbers say nothing about CIFAR-100\n")
    if cfg["epochs"] > EPOCH_BUDGET:
        lines.append(f"# ⚠ OVER BUDGET: {cfg['epochs']} epochs, above the study's {EPOCH_BUDGET}\n")
    name, recipe = (f"<code>{escape(v)}</code>" for v in (run.root.name, cfg["recipe"]))
    lines.append(f"# CIFAR-100 run {name}: recipe {recipe}, {cfg['epochs']} epochs\n")
    rows = accuracy_rows(metrics) + setting_rows(run, cfg, metrics, record)
    if rows:
        lines.append("| | |\n| --- | --- |\n" + "\n".join(f"| {label} | {value} |" for label, value in rows))
    return "\n".join(lines)


def interval(metrics: dict, key: str) -> str:
    """`` (95% CI a-b)`` of ``metrics[key]``, or nothing where metrics.json has no interval for it."""
    if f"{key}_ci95" not in metrics:
        return ""
    low, high = metrics[f"{key}_ci95"]
    return f" (95% CI {low:.2%}-{high:.2%})"


def accuracy_rows(metrics: dict) -> list[tuple[str, str]]:
    """The test accuracies (with the recipe's TTA first, where it has one) and the best and worst classes."""
    if not metrics:
        return []
    plain = f"{metrics['top1']:.2%}{interval(metrics, 'top1')}"
    if "top1_tta" in metrics:
        tta = escape(metrics["tta"])
        top1 = f"**{metrics['top1_tta']:.2%}**{interval(metrics, 'top1_tta')} with {tta} TTA; {plain} without"
        top5 = f"{metrics['top5_tta']:.2%} with {tta} TTA; {metrics['top5']:.2%} without"
    else:
        top1, top5 = f"**{plain}**", f"{metrics['top5']:.2%}"
    rows = [("**Test top-1**", top1), ("Test top-5", top5)]
    if "superclass_top1" in metrics:
        rows.append(("Superclass top-1", f"{metrics['superclass_top1']:.2%} (the prediction in the true superclass)"))
    for key in ("best", "worst"):
        shown = metrics.get("classes", {}).get(key, [])[:5]
        if shown:
            rows.append((f"{key.title()} classes", ", ".join(f"{escape(n)} {a:.0%}" for n, a in shown)))
    return rows


def setting_rows(run: RunDir, cfg: dict, metrics: dict, record: dict) -> list[tuple[str, str]]:
    """What was trained, on what, for how long: the model and its parameters, the hardware and precision, the
    training minutes and the time budget's probe."""
    model = " ".join(escape(v) for v in (cfg.get("model"), cfg.get("backbone")) if v)
    size = f", size {escape(cfg['size'])}" if cfg.get("size") else ""
    parameters = f", {metrics['parameters']:,} parameters" if "parameters" in metrics else ""
    rows = [("Model", f"{model}{size}{parameters}")] if model else []
    if record.get("hardware"):
        rows.append(("Hardware", escape(manifest.describe_placement(run.manifest))))
    epochs = history.read_history(run.history)
    if epochs:
        minutes, budget = sum(row["seconds"] for row in epochs) / 60, (record.get("budget") or {}).get("minutes")
        over = f", over the {budget:g}-minute budget" if budget and minutes > budget else ""
        rows.append(("Training", f"{minutes:.1f} min for {len(epochs)} epoch(s){over}"))
    if record.get("budget"):
        budget = record["budget"]
        rows.append(("Time budget", f"{budget['minutes']:g} min of training: {escape(budget_summary(budget))}"))
    return rows


def summary(run: RunDir, failure: str | None, notebooks: list[Path]) -> str:
    """report.html's first screen: the banner, the learning curves, and a link to each chapter (notebook)."""
    parts = [banner(run, failure)]
    curves = run.figure("curves")
    if curves.is_file():
        picture = base64.b64encode(curves.read_bytes()).decode()
        parts.append(f'<img alt="learning curves" src="data:image/png;base64,{picture}">')
    titles = {path.stem: chapter_title(nbformat.read(path, as_version=4).cells) for path in notebooks}
    links = [f"[{escape(title)}](#{anchor})" for anchor, title in titles.items() if title]
    if links:
        parts.append("**Chapters:** " + " · ".join(links))
    return "\n\n".join(parts)


def chapter_title(cells: list) -> str | None:
    """A notebook's title: the first line of its header cell (tagged report-title), without the #."""
    header = next((c for c in cells if TITLE_ONLY_IN_REPORT in c.metadata.get("tags", [])), None)
    return header.source.splitlines()[0].lstrip("# ") if header else None


def write_report(run: RunDir, failure: str | None = None) -> Path:
    """One self-contained HTML file of the run: a one-screen summary, then its executed notebooks as chapters."""
    notebooks = [run.notebook(n) for n in NOTEBOOKS if run.notebook(n).exists()]
    return export_html(
        notebooks, summary(run, failure, notebooks), run.report, f"CIFAR-100 {run.root.name}"
    )  # the template escapes it


def report_cells(nb, anchor: str) -> list:
    """A notebook's cells as the report shows them: its plumbing (cells tagged SKIPPED_IN_REPORT) left out, its
    header cell cut to the title, anchored at ``anchor`` (the notebook's name: ``#01_data``) for the summary's links."""
    cells = []
    for cell in nb.cells:
        tags = set(cell.metadata.get("tags", []))
        if SKIPPED_IN_REPORT & tags:
            continue
        if TITLE_ONLY_IN_REPORT in tags:
            cell = nbformat.v4.new_markdown_cell(f'# <a id="{anchor}"></a>{chapter_title(nb.cells)}')
        cells.append(cell)
    return cells


def export_html(notebooks: list[Path], first_cell: str, path: Path, title: str) -> Path:
    """Notebooks merged into one self-contained HTML page: code hidden, figures embedded, readable on a
    phone. The template's CDN scripts (require.js, MathJax) are dropped: the report uses neither."""
    from nbconvert import HTMLExporter

    read = {Path(p).stem: nbformat.read(p, as_version=4) for p in notebooks}
    cells = [nbformat.v4.new_markdown_cell(first_cell)] + [c for a, nb in read.items() for c in report_cells(nb, a)]
    merged = nbformat.v4.new_notebook(cells=cells, metadata=next(iter(read.values())).metadata if read else {})
    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(merged, resources={"metadata": {"name": title}})
    body = re.sub(r'<script src="https?://[^"]*">\s*</script>\s*', "", body)
    write_atomic(path, body.replace("</head>", f"{PHONE_CSS}</head>", 1))
    return path
