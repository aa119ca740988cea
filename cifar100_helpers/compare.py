"""Compare runs: a leaderboard from every ``outputs/*/metrics.json`` and ``run.json``, and the
``outputs/index.html`` that links every run's report with its headline numbers."""

from __future__ import annotations

import html
import json
from pathlib import Path

from .layout import write_atomic
from .training import read_history


def run_row(run: Path) -> dict:
    """One run's headline facts; runs over budget or on generated data are not ranked."""
    metrics = json.loads((run / "metrics.json").read_text())
    manifest = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    cfg = manifest.get("config", {})
    hardware = manifest.get("hardware", {})
    attempts = manifest.get("attempts") or [{}]
    best = "top1_tta" if "top1_tta" in metrics else "top1"
    return {
        "run": run.name,
        "recipe": metrics["recipe"],
        "backbone": cfg.get("backbone") or cfg.get("model", ""),
        "image_size": cfg.get("image_size"),
        "epochs": metrics["epochs"],
        "top1": metrics["top1"],
        "top1_ci95": metrics.get("top1_ci95"),
        "best_top1": metrics[best],
        "best_top1_ci95": metrics.get(f"{best}_ci95"),
        "top5": metrics["top5"],
        "top5_ci95": metrics.get("top5_ci95"),
        "tta": metrics.get("tta", "none"),
        "training_minutes": round(sum(r["seconds"] for r in read_history(run / "history.csv")) / 60, 1),
        "hardware": ", ".join(hardware.get("gpus") or []) or hardware.get("cpu", "?"),
        "date": (attempts[0].get("started") or "")[:10],
        "over_budget": metrics["over_budget"],
        "generated_data": metrics["generated_data"],
        "ranked": not (metrics["over_budget"] or metrics["generated_data"]),
        "superclass_accuracy": metrics.get("superclass_accuracy", {}),
        "report": f"{run.name}/report.html",
    }


def collect(outputs: Path) -> list[dict]:
    """Every completed run under ``outputs``, best first (ranked runs before unranked ones)."""
    rows = [run_row(m.parent) for m in sorted(Path(outputs).glob("*/metrics.json"))]
    return sorted(rows, key=lambda r: (not r["ranked"], -r["best_top1"]))


def leaderboard(rows: list[dict], include_unranked: bool = False) -> str:
    """A markdown table; runs over budget or on generated data are marked and left out by default."""
    lines = [
        "| rank | run | recipe | backbone | size | epochs | top-1 (95% CI) | best with TTA | top-5 (95% CI) "
        "| training min | hardware | date |",
        "| ---: | --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: | --- | --- |",
    ]
    rank = 0
    for r in rows:
        if not (r["ranked"] or include_unranked):
            continue
        rank += r["ranked"]
        flags = " ⚠ over budget" * r["over_budget"] + " ⚠ generated data" * r["generated_data"]
        interval1, interval5 = (f" ({ci[0]:.1%}-{ci[1]:.1%})" if ci else "" for ci in (r["top1_ci95"], r["top5_ci95"]))
        lines.append(
            f"| {rank if r['ranked'] else '-'} | {r['run']}{flags} | {r['recipe']} | {r['backbone']} "
            f"| {r['image_size']} | {r['epochs']} | {r['top1']:.2%}{interval1} | {r['best_top1']:.2%} ({r['tta']}) "
            f"| {r['top5']:.2%}{interval5} | {r['training_minutes']} | {r['hardware']} | {r['date']} |"
        )
    return "\n".join(lines)


def default_pair(rows: list[dict]) -> tuple[dict, dict] | None:
    """``seed`` against the best ranked run (or the two best ranked runs when there is no seed run)."""
    ranked = [r for r in rows if r["ranked"] and r["superclass_accuracy"]]
    seed = next((r for r in ranked if r["recipe"] == "seed"), None)
    others = [r for r in ranked if r is not seed]
    if seed and others:
        return seed, others[0]
    return (ranked[1], ranked[0]) if len(ranked) >= 2 else None


def write_index(outputs: Path, rows: list[dict]) -> Path:
    """``outputs/index.html``: every run with its headline numbers and a link to its report."""
    items = "\n".join(
        f"<tr><td><a href='{html.escape(r['report'])}'>{html.escape(r['run'])}</a></td><td>{r['recipe']}</td>"
        f"<td>{r['epochs']}</td><td>{r['top1']:.2%}</td><td>{r['best_top1']:.2%}</td><td>{r['training_minutes']}</td>"
        f"<td>{html.escape(r['hardware'])}</td><td>{'' if r['ranked'] else 'not ranked: '}"
        f"{'over budget ' * r['over_budget']}{'generated data' * r['generated_data']}</td></tr>"
        for r in rows
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>CIFAR-100 runs</title>
<style>body{{font-family:sans-serif;margin:1em;max-width:60em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3em;text-align:left}}div{{overflow-x:auto}}</style></head>
<body><h1>CIFAR-100 in 10 epochs: runs</h1><div><table>
<tr><th>run</th><th>recipe</th><th>epochs</th><th>top-1</th><th>with TTA</th><th>training min</th>
<th>hardware</th><th></th></tr>
{items}
</table></div></body></html>
"""
    path = Path(outputs) / "index.html"
    write_atomic(path, page)
    return path
