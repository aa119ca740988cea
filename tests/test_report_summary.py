"""report.html opens with a one-screen summary of the run, before any notebook, and leaves the notebooks' plumbing
out; built from a run directory's files as a run leaves them (no TensorFlow, no training)."""

import json
import shutil
from html.parser import HTMLParser

import pytest

from cifar100_helpers.running import notebook_runner, report
from cifar100_helpers.running.run_dir import RunDir

PNG = bytes.fromhex(  # a 1x1 PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4bb0000000049454e44ae426082"
)
METRICS = {
    "recipe": "cpu", "epochs": 10, "over_budget": False, "generated_data": False, "parameters": 1_234_567,
    "test_images": 10000, "top1": 0.6953, "top1_ci95": [0.6859, 0.7048], "top5": 0.9112, "top5_ci95": [0.9054, 0.9167],
    "top1_tta": 0.7164, "top1_tta_ci95": [0.7075, 0.7252], "top5_tta": 0.9243, "top5_tta_ci95": [0.9187, 0.9295],
    "tta": "flip_translate", "superclass_top1": 0.7971,
    "classes": {"best": [["sunflower", 0.95], ["road", 0.93]], "worst": [["otter", 0.31], ["seal", 0.35]]},
}  # fmt: skip
HARDWARE = {"cpu": "AMD EPYC", "cpu_cores": 2, "gpus": []}
TRAINING = {
    "kind": "cpu", "replicas": 1, "precision": "mixed_bfloat16", "jit_compile": False, "per_replica_batch": 256,
    "global_batch": 256, "peak_learning_rate": 0.2, "rule": "linear", "images_left_out_per_epoch": 80, "ema": None,
    "deterministic": False,
}  # fmt: skip


def fake_run(tmp_path, generated=False, notebooks=notebook_runner.NOTEBOOKS) -> RunDir:
    """A finished run's files: config, run.json, metrics, a 10-epoch history, the curves figure and the notebooks
    (the repository's, with their tags: what papermill executes keeps them)."""
    run = RunDir(tmp_path / "cpu-run").create()
    config = {"recipe": "cpu", "model": "airbench", "epochs": 10, "size": "XS", "backbone": "", "generated": generated}
    run.config.write_text(json.dumps(config))
    run.manifest.write_text(json.dumps({"status": "completed", "hardware": HARDWARE, "training": TRAINING}))
    run.metrics.write_text(json.dumps(METRICS))
    rows = "".join(f"{e},1.0,0.5,0.8,,,,0.1,126.0,397.0\n" for e in range(1, 11))  # 10 x 126 s: 21.0 minutes
    run.history.write_text("epoch,loss,accuracy,top5,val_loss,val_accuracy,val_top5,learning_rate,seconds,"
                           f"images_per_second\n{rows}")  # fmt: skip
    run.figure("curves").write_bytes(PNG)
    for name in notebooks:
        shutil.copy(notebook_runner.NOTEBOOK_DIR / name, run.notebook(name))
    return run


class Cells(HTMLParser):
    """The report's cells (nbconvert's jp-Cell divs) as their HTML, in order, and every element id."""

    def __init__(self, page: str):
        super().__init__()
        self.page, self.starts, self.ids = page, [], set()
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "jp-Cell" in (attrs.get("class") or "").split():
            self.starts.append(self.getpos())
        if attrs.get("id"):
            self.ids.add(attrs["id"])

    def cells(self) -> list[str]:
        lines = self.page.splitlines(keepends=True)
        offsets = [sum(len(line) for line in lines[: row - 1]) + col for row, col in self.starts]
        return [self.page[a:b] for a, b in zip(offsets, [*offsets[1:], len(self.page)], strict=True)]


def test_the_summary_is_the_first_cell_and_holds_every_headline_item(tmp_path):
    run = fake_run(tmp_path)
    page = report.write_report(run).read_text()
    parsed = Cells(page)
    first, rest = parsed.cells()[0], "".join(parsed.cells()[1:])
    for item in (
        "CIFAR-100 run", "cpu-run", "recipe <code>cpu</code>",  # the run and its recipe
        "airbench, size XS, 1,234,567 parameters",  # the model and its size
        "AMD EPYC (2 cores)", "mixed_bfloat16",  # hardware and precision
        "21.0 min for 10 epoch(s)",  # training minutes, from history.csv
        "<strong>71.64%</strong> (95% CI 70.75%-72.52%) with flip_translate TTA",  # top-1 with TTA and interval
        "69.53% (95% CI 68.59%-70.48%) without",  # plain top-1 and its interval
        "92.43% with flip_translate TTA; 91.12% without",  # top-5
        "79.71%",  # superclass accuracy
        "sunflower 95%", "otter 31%",  # the best and worst classes
        '<img alt="learning curves" src="data:image/png;base64,',  # the learning curves figure
    ):  # fmt: skip
        assert item in first, item
        assert item not in rest, f"{item} is in a notebook's cell, not only in the summary"
    for notebook in notebook_runner.NOTEBOOKS:  # a link to each chapter, and the chapter's anchor
        anchor = notebook.removesuffix(".ipynb")
        assert f'href="#{anchor}"' in first and anchor in parsed.ids
        assert page.index(f'id="{anchor}"') > page.index(first)


def test_the_report_leaves_out_the_notebooks_plumbing(tmp_path):
    page = report.write_report(fake_run(tmp_path)).read_text()
    for plumbing in ("where the files go", "Google Drive", "Part of the CIFAR-100", "**Reads:**",
                     "colab_setup", "interactive = True"):  # fmt: skip
        assert plumbing not in page, plumbing
    for title in ("01 · The data", "02 · The model", "03 · Training", "04 · Results on the test split"):
        assert title in page  # each header cell keeps its title


@pytest.mark.parametrize("generated", [False, True])
def test_a_failed_or_generated_run_says_so_before_anything_else(tmp_path, generated):
    run = fake_run(tmp_path, generated=generated, notebooks=notebook_runner.NOTEBOOKS[:3])
    page = report.write_report(run, failure="03_train.ipynb failed in cell 12 (NaN)").read_text()
    first = Cells(page).cells()[0]
    assert first.index("RUN FAILED") < first.index("CIFAR-100 run") and "failed in cell 12" in first
    assert "Test top-1" not in page  # a failed run's metrics (from an earlier attempt) are not its result
    assert ("GENERATED DATA" in first) is generated
    assert 'href="#03_train"' in first and 'href="#04_results"' not in first  # links only to the chapters it has
    if generated:
        page = report.write_report(run).read_text()
        assert page.index("GENERATED DATA") < page.index("Test top-1")


def test_a_run_over_its_time_budget_says_so_and_whether_the_probe_expected_it(tmp_path):
    """A budget of 20 minutes, 21 minutes trained: the summary says over; the probe had projected 23 for the
    smallest size it could choose, so the overrun was expected (the showcase on the AVX2 EPYC: 33.5 projected, 30.3
    trained)."""
    run = fake_run(tmp_path)
    budget = {"minutes": 20.0, "margin": 1.15, "precision": "float32", "size": "XS", "projected_minutes": 23.0,
              "probe": {"XS": {"images_per_second": 400.0, "projected_minutes": 23.0, "parameters": 1}}}  # fmt: skip
    record = json.loads(run.manifest.read_text()) | {"budget": budget}
    run.manifest.write_text(json.dumps(record))
    first = Cells(report.write_report(run).read_text()).cells()[0]
    assert "21.0 min for 10 epoch(s), over the 20-minute budget" in first
    assert "chose size XS, projected 23.0 min (the smallest size, projected over the budget" in first
