"""The documentation: every relative link in README.md, docs/ and outputs/README.md points at a file that exists and
that git does not ignore (so it exists in a fresh clone too), and at a heading of that file when it names one; the
README stays a first screen (at most 200 lines) with the headline `cpu` result, read from its evidence, in its first
40 lines."""

import csv
import json
import re
import statistics
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

DOCS = sorted([REPO / "README.md", REPO / "outputs" / "README.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^\s*(```|~~~)")
MAX_README_LINES = 200
HEADLINE_LINES = 40


def prose_lines(path: Path) -> list[str]:
    """The file's lines outside fenced code blocks, inline code replaced by a placeholder (a `[x](y)` inside code
    is not a link)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(re.sub(r"`[^`]*`", "code", line))
    return lines


def links(path: Path) -> list[str]:
    return [target for line in prose_lines(path) for target in LINK.findall(line)]


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2, ... for repeats."""
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        fenced ^= bool(FENCE.match(line))
        heading = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = unique = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            repeat = 0
            while unique in found:  # a repeated heading gets -1, -2, ...
                repeat += 1
                unique = f"{slug}-{repeat}"
            found.add(unique)
    return found


def git_ignored(paths: list[Path]) -> set[Path]:
    """The paths git ignores (tracked files never count as ignored); empty outside a git checkout."""
    paths = [p for p in paths if p.is_relative_to(REPO.resolve())]
    try:
        result = subprocess.run(
            ["git", "check-ignore", "--stdin"], cwd=REPO, input="\n".join(str(p) for p in paths),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except OSError:
        return set()
    return {Path(line) for line in result.stdout.splitlines()} if result.returncode in (0, 1) else set()


def resolved_links() -> list[tuple[Path, str, Path, str]]:
    """(document, link as written, target path, anchor) of every relative link."""
    found = []
    for doc in DOCS:
        for target in filter(is_relative, links(doc)):
            file, _, anchor = target.partition("#")
            found.append((doc, target, (doc.parent / file).resolve() if file else doc, anchor))
    return found


def test_the_docs_exist():
    names = {p.name for p in DOCS}
    assert {"README.md", "results.md", "troubleshooting.md", "development.md"} <= names


def test_every_relative_link_resolves_to_a_file_git_keeps():
    found = resolved_links()
    assert len(found) > 50, "the link scanner found almost nothing: is the pattern broken?"
    missing = [f"{d.relative_to(REPO)}: {t}" for d, t, p, _ in found if not p.exists()]
    assert not missing, "links to nothing:\n" + "\n".join(missing)
    ignored = git_ignored([p for _, _, p, _ in found])
    dropped = [f"{d.relative_to(REPO)}: {t}" for d, t, p, _ in found if p in ignored]
    assert not dropped, "links to files git ignores (absent from a fresh clone):\n" + "\n".join(dropped)


def test_every_anchor_names_a_heading():
    bad = [
        f"{d.relative_to(REPO)}: {t}" for d, t, p, a in resolved_links()
        if a and p.suffix == ".md" and a not in anchors(p)
    ]  # fmt: skip
    assert not bad, "anchors that name no heading:\n" + "\n".join(bad)


def test_readme_is_a_first_screen():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def headline_row() -> str:
    head = (REPO / "README.md").read_text(encoding="utf-8").splitlines()[:HEADLINE_LINES]
    rows = [line for line in head if line.startswith("| `cpu` |")]
    assert rows, f"no `cpu` row in the README's first {HEADLINE_LINES} lines"
    return rows[0]


def mean_std(values: list[float], digits: int) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def test_readme_headline_is_the_evidence():
    """The `cpu` row in the first 40 lines links its sweep, and its mean ± std (with TTA, plain, training minutes)
    are those of that sweep's committed runs."""
    row = headline_row()
    sweep = re.search(r"\]\((outputs/[^)#]+)/sweep\.json\)", row)
    assert sweep, "the headline row should link its sweep's sweep.json"
    runs = sorted(p.parent for p in (REPO / sweep.group(1)).glob("*/metrics.json"))
    assert len(runs) >= 2, f"{sweep.group(1)} holds fewer than two runs"
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    histories = [csv.DictReader((run / "history.csv").read_text().splitlines()) for run in runs]
    minutes = [sum(float(epoch["seconds"]) for epoch in history) / 60 for history in histories]
    for key in ("top1_tta", "top1"):
        assert f"{mean_std([m[key] * 100 for m in metrics], 2)}%" in row, key
    assert f"{mean_std(minutes, 1)} min" in row


@pytest.mark.parametrize("doc", [p for p in DOCS if p.parent.name == "docs"], ids=lambda p: p.name)
def test_every_page_is_linked_from_the_readme(doc):
    readme = {(REPO / target.partition("#")[0]).resolve() for target in links(REPO / "README.md")}
    assert doc.resolve() in readme, f"README.md links nowhere to {doc.relative_to(REPO)}"


def test_the_ladder_table_is_its_evidence():
    """docs/results.md's accuracy-per-minute ladder is what docs/ladder.py computes from the committed validation
    runs and benches, and its figure exists."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ladder", REPO / "docs" / "ladder.py")
    ladder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ladder)
    table = ladder.table([ladder.rung(*spec) for spec in ladder.RUNGS])
    assert table in (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    assert (REPO / "docs" / "figures" / "cpu_ladder.png").exists()
