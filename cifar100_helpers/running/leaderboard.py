"""Compare runs: a leaderboard from every ``outputs/*/metrics.json`` and ``run.json``, and the
``outputs/index.html`` that links every run's report with its headline numbers."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
from pathlib import Path
from urllib.parse import quote

from ..errors import RunError
from ..files import read_json, unreadable, write_atomic
from .history import read_history
from .markup import escape

SEED_FIELDS = ("seed", "data", "verify")  # config fields that give another sample of a setting, not another setting


def run_row(run: Path) -> dict:
    """One completed run's headline facts; runs over budget or on generated data are not ranked. A damaged
    file raises RunError naming it."""
    metrics, manifest = read_json(run / "metrics.json"), read_json(run / "run.json")
    try:
        seconds = sum(r["seconds"] for r in read_history(run / "history.csv"))
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"the epoch seconds add up to {seconds}, not a duration")
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as exc:
        raise RunError(unreadable(run / "history.csv", exc, None)) from None
    try:
        return headline(run, metrics, manifest, seconds)
    except KeyError as exc:
        raise RunError(f"{run / 'metrics.json'} (no {exc} entry)") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise RunError(f"{run / 'metrics.json'} or {run / 'run.json'} ({type(exc).__name__}: {exc})") from None


def headline(run: Path, metrics: dict, manifest: dict, seconds: float) -> dict:
    cfg = manifest.get("config", {})
    hardware = manifest.get("hardware", {})
    attempts = manifest.get("attempts") or [{}]
    best = "top1_tta" if "top1_tta" in metrics else "top1"
    best5 = "top5_tta" if best == "top1_tta" and "top5_tta" in metrics else "top5"
    row = {
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
        "best_top5": metrics[best5],
        "tta": metrics.get("tta", "none"),
        "training_minutes": round(seconds / 60, 1),
        "training_seconds": seconds,
        "seed": cfg.get("seed"),
        "setting": {k: v for k, v in cfg.items() if k not in SEED_FIELDS},  # what makes it another setting
        "hardware": ", ".join(hardware.get("gpus") or []) or hardware.get("cpu", "?"),
        "date": (attempts[0].get("started") or "")[:10],
        "over_budget": metrics["over_budget"],
        "generated_data": metrics["generated_data"],
        "ranked": not (metrics["over_budget"] or metrics["generated_data"]),
        "superclass_accuracy": metrics.get("superclass_accuracy", {}),
        "report": f"{run.name}/report.html",
    }
    fractions = [row[k] for k in ("top1", "best_top1", "top5", "best_top5")]
    fractions += [v for k in ("top1_ci95", "best_top1_ci95", "top5_ci95") for v in row[k] or (0, 0)]
    numbers = [row["epochs"], row["training_seconds"], *fractions]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        raise TypeError("epochs, top1, top5, their intervals and the epoch seconds must be finite numbers")
    if not (all(0 <= v <= 1 for v in fractions) and row["epochs"] >= 0):
        raise ValueError("top1, top5 and their intervals must be fractions from 0 to 1, epochs not negative")
    return row


def scan(outputs: Path) -> tuple[list[dict], list[str]]:
    """The rows of every run under ``outputs`` whose run.json says completed (or, for notebooks run by
    hand, which record no status, that has its metrics.json), best first (ranked runs before unranked
    ones), and one line per run skipped because a file of it is damaged. Runs still running, failed or
    interrupted are left out silently."""
    rows, skipped = [], []
    for manifest in distinct_runs(Path(outputs).glob("*/run.json")):
        try:
            status = read_json(manifest).get("status")
            if status == "completed" or (status is None and (manifest.parent / "metrics.json").exists()):
                rows.append(run_row(manifest.parent))
        except RunError as exc:
            skipped.append(str(exc))
    return sorted(rows, key=lambda r: (not r["ranked"], -r["best_top1"])), skipped


def distinct_runs(manifests) -> list[Path]:
    """Each run once, in name order: a symbolic link to a run beside it (an alias) is left out for the run itself,
    the first alias kept where the run is elsewhere."""
    seen, kept = set(), []
    for manifest in sorted(manifests, key=lambda m: (m.parent.is_symlink(), m)):
        real = os.path.realpath(manifest.parent)
        if real not in seen:
            seen.add(real)
            kept.append(manifest)
    return sorted(kept)


def collect(outputs: Path) -> list[dict]:
    """:func:`scan`'s rows; each damaged run is named on stderr (repair the file, or move the run away)."""
    rows, skipped = scan(outputs)
    warn_skipped(skipped, outputs)
    return rows


def warn_skipped(skipped: list[str], outputs: Path) -> None:
    for line in skipped:
        print(f"warning: skipped a damaged run: {line}; repair the file or move the run out of {outputs}.",
              file=sys.stderr)  # fmt: skip


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
            f"| {rank if r['ranked'] else '-'} | {escape(r['run'])}{flags} | {escape(r['recipe'])} "
            f"| {escape(r['backbone'])} | {escape(r['image_size'])} | {r['epochs']} | {r['top1']:.2%}{interval1} "
            f"| {r['best_top1']:.2%} ({escape(r['tta'])}) | {r['top5']:.2%}{interval5} | {r['training_minutes']} "
            f"| {escape(r['hardware'])} | {escape(r['date'])} |"
        )
    return "\n".join(lines)


STATISTICS = ("top1", "best_top1", "top5", "best_top5", "training_minutes")


def group_runs(rows: list[dict]) -> list[dict]:
    """Runs that differ only by seed (the same config apart from ``seed``, ``data`` and ``verify``) as one
    group each, a single run as a group of one: n, the runs and seeds, and per statistic (top-1 and top-5,
    plain and with TTA, training minutes) the mean and the sample standard deviation (None for one run).
    Best first, ranked groups before unranked ones, as :func:`scan` orders runs."""
    members: dict[str, list[dict]] = {}
    for r in rows:
        key = [r["recipe"], r["epochs"], r["over_budget"], r["generated_data"], r.get("setting", {})]
        members.setdefault(json.dumps(key, sort_keys=True, default=str), []).append(r)
    groups = []
    for unordered in members.values():
        runs = sorted(unordered, key=lambda r: (r.get("seed") is None, r.get("seed") or 0, r["run"]))
        values = {
            s: [r["training_seconds"] / 60 if s == "training_minutes" else r[s] for r in runs] for s in STATISTICS
        }
        first = runs[0]
        groups.append({
            "group": first["recipe"], "recipe": first["recipe"], "setting": first.get("setting", {}), "n": len(runs),
            "runs": [r["run"] for r in runs], "seeds": [r.get("seed") for r in runs], "tta": first["tta"],
            "ranked": first["ranked"], "over_budget": first["over_budget"], "generated_data": first["generated_data"],
            "best_top1_ci95": first["best_top1_ci95"] if len(runs) == 1 else None,
            **{s: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None}
               for s, v in values.items()},
        })  # fmt: skip
    name_groups(groups)
    return sorted(groups, key=lambda g: (not g["ranked"], -g["best_top1"]["mean"]))


def name_groups(groups: list[dict]) -> None:
    """Each group's name: its recipe and the config fields in which it differs from the recipe's other groups,
    e.g. ``cpu learning_rate=0.1``."""
    for recipe in {g["recipe"] for g in groups}:
        same = [g for g in groups if g["recipe"] == recipe]
        fields = sorted({k for g in same for k in g["setting"]})
        differing = [k for k in fields if len({json.dumps(g["setting"].get(k), default=str) for g in same}) > 1]
        for g in same:
            shown = (json.dumps(g["setting"].get(k), default=str).strip('"').replace(", ", ",") for k in differing)
            g["group"] = " ".join([recipe, *(f"{k}={v}" for k, v in zip(differing, shown, strict=True))])


def interval(group: dict) -> tuple[float, float]:
    """The spread of a group's best top-1: mean ± one standard deviation; for a single run its 95% interval
    over the test images (the value alone if the run has none)."""
    best = group["best_top1"]
    if best["std"] is not None:
        return best["mean"] - best["std"], best["mean"] + best["std"]
    return tuple(group["best_top1_ci95"] or (best["mean"], best["mean"]))


def spread_notes(groups: list[dict]) -> list[str]:
    """One line for each pair of groups (both ranked, or both not) whose best top-1 intervals overlap:
    their difference says nothing about which setting is better."""
    notes = []
    for i, a in enumerate(groups):
        for b in groups[i + 1 :]:
            (a_low, a_high), (b_low, b_high) = interval(a), interval(b)
            if a["ranked"] == b["ranked"] and a_low <= b_high and b_low <= a_high:
                spread = "run-to-run spread" if max(a["n"], b["n"]) > 1 else "95% intervals of the two runs"
                notes.append(f"{a['group']} vs {b['group']}: the difference is within the {spread}")
    return notes


def mean_std(stat: dict, percent: bool = True) -> str:
    """``64.10% ± 0.35`` (the spread in percentage points), or the value alone for a single run."""
    if percent:
        return f"{stat['mean']:.2%}" + ("" if stat["std"] is None else f" ± {stat['std'] * 100:.2f}")
    return f"{stat['mean']:.1f}" + ("" if stat["std"] is None else f" ± {stat['std']:.1f}")


def group_leaderboard(groups: list[dict], include_unranked: bool = False) -> str:
    """A markdown table of the groups (mean ± standard deviation over seeds, n), then one line for each pair
    whose difference is within the run-to-run spread. Unranked groups are marked and left out by default."""
    lines = [
        "| rank | setting | n | seeds | top-1 | best with TTA | top-5 | top-5 with TTA | training min | runs |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    shown = [g for g in groups if g["ranked"] or include_unranked]
    rank = 0
    for g in shown:
        rank += g["ranked"]
        flags = " ⚠ over budget" * g["over_budget"] + " ⚠ generated data" * g["generated_data"]
        cells = [mean_std(g[s]) for s in ("top1", "best_top1", "top5", "best_top5")]
        lines.append(
            f"| {rank if g['ranked'] else '-'} | {escape(g['group'])}{flags} | {g['n']} "
            f"| {escape(', '.join(map(str, g['seeds'])))} | {' | '.join(cells)} "
            f"| {mean_std(g['training_minutes'], percent=False)} | {escape(', '.join(g['runs']))} |"
        )
    notes = spread_notes(shown)
    return "\n".join(lines + ([""] if notes else []) + [f"- {escape(n)}" for n in notes])


def default_pair(rows: list[dict]) -> tuple[dict, dict] | None:
    """``seed`` against the best ranked run (or the two best ranked runs when there is no seed run)."""
    ranked = [r for r in rows if r["ranked"] and r["superclass_accuracy"]]
    seed = next((r for r in ranked if r["recipe"] == "seed"), None)
    others = [r for r in ranked if r is not seed]
    if seed and others:
        return seed, others[0]
    return (ranked[1], ranked[0]) if len(ranked) >= 2 else None


def groups_section(groups: list[dict]) -> str:
    """The index's table of settings repeated over seeds (mean ± standard deviation, n) and its notes; empty
    when no setting ran more than once."""
    if all(g["n"] == 1 for g in groups):
        return ""
    items = "\n".join(
        f"<tr><td>{escape(g['group'])}</td><td>{g['n']}</td><td>{mean_std(g['top1'])}</td>"
        f"<td>{mean_std(g['best_top1'])}</td><td>{mean_std(g['top5'])}</td><td>{mean_std(g['best_top5'])}</td>"
        f"<td>{mean_std(g['training_minutes'], percent=False)}</td><td>{'' if g['ranked'] else 'not ranked'}</td></tr>"
        for g in groups
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in spread_notes(groups))
    return f"""
<h2>Across seeds: mean ± standard deviation (percentage points)</h2><div><table>
<tr><th>setting</th><th>n</th><th>top-1</th><th>with TTA</th><th>top-5</th><th>top-5 with TTA</th>
<th>training min</th><th></th></tr>
{items}
</table></div>{f"<ul>{notes}</ul>" if notes else ""}"""


def write_index(outputs: Path, rows: list[dict]) -> Path:
    """``outputs/index.html``: every run with its headline numbers and a link to its report, then, where a
    setting ran with several seeds, each setting's mean ± standard deviation."""
    items = "\n".join(
        f"<tr><td><a href='{escape(quote(r['report']))}'>{escape(r['run'])}</a></td><td>{escape(r['recipe'])}</td>"
        f"<td>{r['epochs']}</td><td>{r['top1']:.2%}</td><td>{r['best_top1']:.2%}</td><td>{r['training_minutes']}</td>"
        f"<td>{escape(r['hardware'])}</td><td>{'' if r['ranked'] else 'not ranked: '}"
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
</table></div>{groups_section(group_runs(rows))}</body></html>
"""
    path = Path(outputs) / "index.html"
    write_atomic(path, page)
    return path
