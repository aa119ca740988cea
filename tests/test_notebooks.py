"""The notebooks read as chapters: 02 shows the network's code, 03 the optimizer, the schedule and the fit call,
and the set-up every notebook repeats stays a few lines."""

import re

import nbformat
import pytest

from cifar100_helpers.running import notebook_runner, report

from .test_docs import anchors

NUMBERED = [notebook_runner.NOTEBOOK_DIR / n for n in notebook_runner.NOTEBOOKS]
EXECUTED = notebook_runner.REPO / "tests" / "nbval"  # the smoke run's executed copies (make nbval-refresh)


def code_lines(path, set_up_only=False) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    if set_up_only:  # the Colab cell and the one that makes the config and run directory
        cells = [c for c in cells if "google.colab" in c.source or "colab.start(" in c.source]
    return [line.strip() for c in cells for line in c.source.splitlines() if line.strip()]


def test_set_up_repeated_across_notebooks_is_at_most_five_lines():
    shared = set.intersection(*(set(code_lines(p, set_up_only=True)) for p in NUMBERED))
    assert len(shared) <= 5, sorted(shared)
    assert all(len(code_lines(p, set_up_only=True)) <= 8 for p in NUMBERED)


def outputs(name: str) -> str:
    nb = nbformat.read(EXECUTED / name, as_version=4)
    return "".join(o.get("text", "") + str(o.get("data", {})) for c in nb.cells for o in c.get("outputs", []))


def test_02_shows_the_networks_code_and_its_layers():
    source = "\n".join(code_lines(notebook_runner.NOTEBOOK_DIR / "02_model.ipynb"))
    assert "models.builder_source(cfg)" in source and "models.block_table(model)" in source
    shown = outputs("02_model.ipynb")
    assert "def build_airbench" in shown and "MaxPooling2D" in shown and "Conv2D" in shown
    assert "FusedBatchNorm + gelu" in shown and "parameters" in shown


def test_03_shows_the_optimizer_the_schedule_and_the_fit_call():
    source = "\n".join(code_lines(notebook_runner.NOTEBOOK_DIR / "03_train.ipynb"))
    for shown in ("training.optimizer_source()", "training.describe_optimizer(model)", "plots.learning_rate_schedule(",
                  "model.fit(", "callbacks=list(fit.callbacks.values())", "epoch_files.finish("):  # fmt: skip
        assert shown in source
    shown = outputs("03_train.ipynb")
    assert "optimizer: SGD(" in shown and "label_smoothing" in shown and "ema_momentum" not in shown


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_each_notebook_links_its_executed_showcase_copy(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert f"../outputs/showcase/{path.name}" in first.source and "report-skip" in first.metadata["tags"]


ALL = sorted(notebook_runner.NOTEBOOK_DIR.glob("0*.ipynb"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_each_header_is_its_title_and_one_line(path):
    """The header says in one line what the notebook does and where its files go, linking the real heading."""
    header = nbformat.read(path, as_version=4).cells[1]
    title, blank, line, *more = header.source.splitlines() + [""] * 2
    assert title.startswith("# ") and blank == "" and line and not any(more), header.source
    assert "Part of the CIFAR-100" not in line and "**Reads:**" not in line
    for target in re.findall(r"\]\((\.\./docs/[^)#]+)#([^)]+)\)", line):
        assert target[1] in anchors(path.parent / target[0]), target
    if path.name != "00_colab.ipynb":  # 00 is not in a report; the others' reports keep only the title
        assert report.TITLE_ONLY_IN_REPORT in header.metadata["tags"]


def cell_outputs(name: str, heading: str) -> str:
    """The text the code cell after the markdown cell starting with ``heading`` printed in the smoke run."""
    cells = nbformat.read(EXECUTED / name, as_version=4).cells
    (i,) = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith(heading)]
    return "".join(o.get("text", "") for o in cells[i + 1].get("outputs", []))


def test_01_says_the_split_sizes_and_the_class_balance_in_words():
    assert cell_outputs("01_data.ipynb", "## Load").startswith("1,800 training, 200 validation and 500 test images")
    balance = cell_outputs("01_data.ipynb", "## Classes and superclasses")
    assert balance == "Every class has 18 training, 2 validation and 5 test images.\n"
    assert "image shape" not in outputs("01_data.ipynb") and "class_balance" not in outputs("01_data.ipynb")


def test_04_shows_the_superclass_matrix_not_the_100_by_100_one():
    source = "\n".join(code_lines(notebook_runner.NOTEBOOK_DIR / "04_results.ipynb"))
    assert 'run.figure("superclass_confusion")' in source and "fine_confusion" not in source
    assert "evaluation.confused_pairs_table(" in source
    table = cell_outputs("04_results.ipynb", "## Most-confused pairs")
    assert re.match(r"true class +predicted as +images +the other way +same superclass\n", table), table


def test_04_demo_says_what_the_model_got_right_and_wrong():
    shown = cell_outputs("04_results.ipynb", "## Use the model")
    assert shown.count("): right\n") == 3 and shown.count("): wrong (true class ranked ") == 3
    assert shown.count("  1. ") == 6  # each with its top 5
