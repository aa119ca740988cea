"""The notebooks read as chapters: 02 shows the network's code, 03 the optimizer, the schedule and the fit call,
and the set-up every notebook repeats stays a few lines."""

import nbformat
import pytest

from cifar100_helpers.running import notebook_runner

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
