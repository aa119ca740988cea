"""Anything a user names (run folders, recipes, hardware, TTA names, class names via printed text) lands in the
report, the leaderboard and the index as text: never a live tag, attribute, link or Markdown markup."""

import json
from html.parser import HTMLParser

import nbformat
import pytest

from cifar100_helpers.running import leaderboard, report
from cifar100_helpers.running.markup import escape
from cifar100_helpers.running.run_dir import RunDir

from .test_compare import fake_run

HOSTILE = [
    "<svg onload=alert(9)>x",
    "a`<svg onload=alert(7)>`b",
    "<script>alert(8)</script>",
    "<img src=x onerror=alert(6)>",
    "x | y | <b>z</b>",
    "**bold** [link](javascript:alert(5)) $x$ # h",
    "q' onmouseover='alert(4)",
]


class Tags(HTMLParser):
    """Every tag and attribute of a page, and the text of its scripts."""

    def __init__(self, page: str):
        super().__init__()
        self.tags, self.attributes, self.scripts, self.text, self.inside = [], [], [], [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs
        self.inside = tag

    def handle_data(self, data):
        self.text.append(data)
        if self.inside == "script":
            self.scripts.append(data)


def assert_inert(page: str) -> None:
    parsed = Tags(page)
    assert not {"svg", "img", "b", "em"} & set(parsed.tags) and "<strong>bold" not in page, parsed.tags
    assert not [a for a in parsed.attributes if a[0].startswith("on")]
    assert not [s for s in parsed.scripts if "alert" in s]
    assert not [a for a in parsed.attributes if a[0] in ("href", "src") and a[1].lower().startswith("javascript")]


@pytest.mark.parametrize("name", HOSTILE)
def test_escape_shows_the_text_itself(name):
    parsed = Tags(f"<p title='{escape(name)}'>{escape(name)}</p>")
    assert parsed.tags == ["p"] and parsed.attributes == [("title", " ".join(name.split()))]


def hostile_outputs(tmp_path):
    """Runs whose folder, recipe, backbone, hardware, TTA name and date are hostile, in one outputs folder."""
    for i, name in enumerate(HOSTILE):
        run = fake_run(tmp_path, name.replace("/", "_"), HOSTILE[-1 - i], 0.5 + i / 100, seed=i, backbone=name)
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "tta": name}))
        record = json.loads((run / "run.json").read_text())
        record["hardware"] = {"cpu": name, "gpus": []}
        record["attempts"] = [{"started": name}]
        (run / "run.json").write_text(json.dumps(record))
    return tmp_path


def test_index_leaderboards_and_group_table_hold_no_live_html(tmp_path):
    outputs = hostile_outputs(tmp_path)
    rows = leaderboard.collect(outputs)
    assert len(rows) == len(HOSTILE)
    assert_inert(leaderboard.write_index(outputs, rows).read_text())
    tables = [leaderboard.leaderboard(rows, True), leaderboard.group_leaderboard(leaderboard.group_runs(rows), True)]
    cell = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data", {"text/markdown": t})
                                             for t in tables])  # fmt: skip
    notebook = tmp_path / "05.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), notebook)
    page = report.export_html([notebook], "# compared", tmp_path / "report.html", "runs").read_text()
    assert_inert(page)
    for name in HOSTILE:  # each shown as text, and each table row kept whole (no cell split by a `|`)
        assert " ".join(name.split()) in "".join(Tags(page).text)
    assert all(line.count("|") == 13 for line in tables[0].splitlines()[2:])


@pytest.mark.parametrize("name", HOSTILE)
def test_run_report_summary_holds_no_live_html(tmp_path, name):
    """The run's folder, recipe, model, size, TTA, class names and hardware, all hostile, in the report's summary."""
    run = RunDir(tmp_path / name.replace("/", "_")).create()
    run.config.write_text(json.dumps({"recipe": name, "epochs": 10, "model": name, "backbone": name, "size": name}))
    run.manifest.write_text(json.dumps({"hardware": {"cpu": name, "cpu_cores": 2, "gpus": []}}))
    classes = {"best": [[name, 0.9]], "worst": [[name, 0.1]]}
    run.metrics.write_text(json.dumps({"top1": 0.5, "top5": 0.8, "top1_tta": 0.51, "top5_tta": 0.81, "tta": name,
                                       "parameters": 10, "classes": classes}))  # fmt: skip
    page = report.write_report(run).read_text()
    assert_inert(page)
    shown, folder, text = " ".join(name.split()), " ".join(run.root.name.split()), "".join(Tags(page).text)
    assert f"CIFAR-100 run {folder}: recipe {shown}" in text and f"with {shown} TTA" in text
    assert f"{shown} 90%" in text and f"{shown} 10%" in text and f"Trained on {shown} (2 cores)" in text
    assert f"{shown} {shown}, size {shown}, 10 parameters" in text
    failed = report.write_report(run, failure=f"01_data.ipynb failed in {name}").read_text()
    assert_inert(failed)
