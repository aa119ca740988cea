"""Execute the numbered notebooks with papermill into one run directory, then write the
HTML report and the run manifest. It only orchestrates: the work happens in the notebooks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from . import data, manifest
from .config import EPOCH_BUDGET, RECIPES, RunConfig
from .errors import RunError
from .layout import RunDir, write_atomic

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ("01_data.ipynb", "02_model.ipynb", "03_train.ipynb", "04_results.ipynb")
KERNEL_NAME = "cifar100-helpers-current"
SKIPPED_IN_REPORT = {"parameters", "injected-parameters", "report-skip"}  # cell tags left out of report.html
NAMED_PARAMETERS = {"data": "data_path", "verify": "verify", "epochs": "epochs"}  # config field: notebook name


def notebook_parameters(cfg: RunConfig, run: RunDir) -> dict:
    """What papermill injects into every notebook: the recipe plus each field that differs from it."""
    recipe = RECIPES[cfg.recipe].to_dict()
    changed = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items() if v != recipe[k]}
    named = {param: changed.pop(field, None) for field, param in NAMED_PARAMETERS.items()}
    changed.pop("seed", None)
    return {"recipe": cfg.recipe, **named, "seed": cfg.seed, "overrides": changed, "run_dir": str(run.root),
            "interactive": False}  # fmt: skip


@contextlib.contextmanager
def current_interpreter_kernel():
    """A kernelspec that runs this very interpreter, found first on JUPYTER_PATH while in use."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "cifar100", "language": "python"}))
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (tmp, old) if p)
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def prepare_run_dir(path: Path) -> RunDir:
    run = RunDir(path)
    if run.root.exists():
        raise RunError(f"{run.root} already exists and is never overwritten: choose a new --output name.")
    parent = run.root.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise RunError(f"Cannot write to {parent}: choose an --output under a writable folder.")
    return run.create()


def check_data(cfg: RunConfig) -> None:
    """Fail before any notebook starts if the data cannot be found or fails its checksum."""
    if not cfg.generated:
        data.checked_source(cfg.data, cfg.verify)


def execute(notebook: str, run: RunDir, params: dict, kernel: str, notebook_dir: Path) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = run.notebook(notebook)
    try:
        papermill.execute_notebook(
            str(notebook_dir / notebook),
            str(output),
            parameters=params,
            kernel_name=kernel,
            cwd=str(run.root),
            progress_bar=False,
        )
    except PapermillExecutionError as exc:
        raise RunError(
            f"{notebook} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}). "
            f"The partly executed notebook is kept at {output}."
        ) from None


def with_absolute_data(cfg: RunConfig) -> RunConfig:
    """Notebooks run inside the run directory, so a relative data path must be made absolute first."""
    if cfg.data is None:
        return cfg
    return dataclasses.replace(cfg, data=str(Path(cfg.data).expanduser().resolve()))


def run(cfg: RunConfig, output: Path, notebook_dir: Path = NOTEBOOK_DIR) -> RunDir:
    """Run 01-04 into ``output`` (which must not exist), then write report.html and run.json."""
    cfg = with_absolute_data(cfg)
    check_data(cfg)
    run_dir = prepare_run_dir(output)
    write_atomic(run_dir.config, json.dumps(cfg.to_dict(), indent=2) + "\n")
    params = notebook_parameters(cfg, run_dir)
    manifest.write(
        run_dir.manifest,
        status="running",
        config=cfg.to_dict(),
        epoch_budget=EPOCH_BUDGET,
        over_budget=cfg.over_budget,
        started=manifest.now(),
        versions=manifest.package_versions(),
        hardware=manifest.hardware(),
        git=manifest.git_state(REPO),
        notebooks=list(NOTEBOOKS),
    )
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with current_interpreter_kernel() as kernel:
            for notebook in NOTEBOOKS:
                print(f"[{manifest.now()}] running {notebook}", flush=True)
                execute(notebook, run_dir, params, kernel, notebook_dir)
    except RunError as exc:
        manifest.write(run_dir.manifest, status="failed", error=str(exc), ended=manifest.now())
        raise
    write_report(run_dir)
    manifest.write(
        run_dir.manifest, status="completed", ended=manifest.now(), wall_seconds=round(time.perf_counter() - started, 1)
    )
    return run_dir


def banner(run: RunDir) -> str:
    """The report's first cell: headline numbers and any warning a reader must see first."""
    cfg = json.loads(run.config.read_text())
    metrics = json.loads(run.metrics.read_text()) if run.metrics.exists() else {}
    lines = []
    if cfg.get("generated"):
        lines.append("# ⚠ GENERATED DATA: these numbers say nothing about CIFAR-100\n")
    if cfg["epochs"] > EPOCH_BUDGET:
        lines.append(f"# ⚠ OVER BUDGET: {cfg['epochs']} epochs, above the study's {EPOCH_BUDGET}\n")
    lines.append(f"# CIFAR-100 run `{run.root.name}`: recipe `{cfg['recipe']}`, {cfg['epochs']} epochs\n")
    if metrics:
        tta = f" ({metrics['top1_tta']:.2%} with flip TTA)" if "top1_tta" in metrics else ""
        lines.append(f"**Test top-1 {metrics['top1']:.2%}**{tta}, top-5 {metrics['top5']:.2%}.")
    return "\n".join(lines)


def write_report(run: RunDir) -> Path:
    """One self-contained HTML file: the four executed notebooks, code hidden, figures embedded.
    The template's CDN scripts (require.js, MathJax) are dropped: the report uses neither."""
    from nbconvert import HTMLExporter

    notebooks = [nbformat.read(run.notebook(name), as_version=4) for name in NOTEBOOKS]
    cells = [nbformat.v4.new_markdown_cell(banner(run))]
    for nb in notebooks:
        cells += [c for c in nb.cells if not SKIPPED_IN_REPORT & set(c.metadata.get("tags", []))]
    merged = nbformat.v4.new_notebook(cells=cells, metadata=notebooks[0].metadata)
    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(merged, resources={"metadata": {"name": f"CIFAR-100 {run.root.name}"}})
    write_atomic(run.report, re.sub(r'<script src="https?://[^"]*">\s*</script>\s*', "", body))
    return run.report
