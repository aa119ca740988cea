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

from . import compare as runs
from . import data, manifest
from .config import EPOCH_BUDGET, RECIPES, RunConfig, make_config
from .errors import RunError
from .layout import RunDir, write_atomic

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ("01_data.ipynb", "02_model.ipynb", "03_train.ipynb", "04_results.ipynb")
COMPARE_NOTEBOOK = "05_compare.ipynb"
PHONE_CSS = "<style>body{max-width:60em;margin:auto} img{max-width:100%;height:auto} pre{white-space:pre-wrap}</style>"
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
        # log level ERROR: no "running over TCP without encryption" notice for every notebook
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--IPKernelApp.log_level=ERROR"]
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
        raise RunError(
            f"{run.root} already exists and is never overwritten: choose a new --output name, "
            f"or continue it with --resume {path}."
        )
    try:
        run.root.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(run.root.parent, os.W_OK):
            raise PermissionError
        return run.create()
    except OSError:
        raise RunError(f"Cannot create {run.root}: choose an --output under a writable folder.") from None


def check_data(cfg: RunConfig) -> None:
    """Fail before any notebook starts if the data cannot be found or fails its checksum."""
    if not cfg.generated:
        data.checked_source(cfg.data, cfg.verify)


def execute(notebook: str, folder: Path | RunDir, params: dict, kernel: str, notebook_dir: Path) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    folder = folder.root if isinstance(folder, RunDir) else folder
    output = folder / notebook
    try:
        papermill.execute_notebook(
            str(notebook_dir / notebook),
            str(output),
            parameters=params,
            kernel_name=kernel,
            cwd=str(folder),
            progress_bar=False,
        )
    except PapermillExecutionError as exc:
        raise RunError(
            f"{notebook} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}). "
            f"The partly executed notebook is kept at {output}."
        ) from None


def with_absolute_paths(cfg: RunConfig) -> RunConfig:
    """Notebooks run inside the run directory, so relative data and weights paths are made absolute."""

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    changes = {"data": absolute(cfg.data)} if cfg.data else {}
    if cfg.weights not in (None, "imagenet"):
        changes["weights"] = absolute(cfg.weights)
    return dataclasses.replace(cfg, **changes)


def run(cfg: RunConfig, output: Path, notebook_dir: Path = NOTEBOOK_DIR) -> RunDir:
    """Run 01-04 into ``output`` (which must not exist), then write report.html and run.json."""
    cfg = with_absolute_paths(cfg)
    check_data(cfg)
    run_dir = prepare_run_dir(output)
    write_atomic(run_dir.config, json.dumps(cfg.to_dict(), indent=2) + "\n")
    manifest.write(
        run_dir.manifest,
        config=cfg.to_dict(),
        epoch_budget=EPOCH_BUDGET,
        over_budget=cfg.over_budget,
        deterministic=cfg.deterministic,
        notebooks=list(NOTEBOOKS),
        completed_notebooks=[],
        attempts=[],
    )
    return execute_remaining(cfg, run_dir, notebook_dir)


def resume(path: Path, notebook_dir: Path = NOTEBOOK_DIR) -> RunDir:
    """Continue an interrupted run: completed notebooks are kept, training goes on from its last
    finished epoch (the epoch budget counts across all attempts)."""
    run_dir = RunDir(path)
    if not run_dir.config.exists() or not run_dir.manifest.exists():
        raise RunError(f"{run_dir.root} is not a run directory (no config.json and run.json): check the --resume path.")
    status = json.loads(run_dir.manifest.read_text()).get("status")
    if status == "completed":
        raise RunError(f"{run_dir.root} already completed; start a new run with --output NAME.")
    cfg = config_from_file(run_dir.config)
    check_data(cfg)
    return execute_remaining(cfg, run_dir, notebook_dir)


def config_from_file(path: Path) -> RunConfig:
    saved = json.loads(path.read_text())
    return make_config(saved.pop("recipe"), **saved)


def execute_remaining(cfg: RunConfig, run_dir: RunDir, notebook_dir: Path) -> RunDir:
    """Execute the notebooks not yet completed, recording this attempt, then write the report."""
    record = json.loads(run_dir.manifest.read_text())
    done, attempts = record["completed_notebooks"], record["attempts"]
    attempts.append({"started": manifest.now(), "skipped": list(done)})
    manifest.write(
        run_dir.manifest,
        status="running",
        attempts=attempts,
        versions=manifest.package_versions(),
        hardware=manifest.hardware(),
        git=manifest.git_state(REPO),
    )
    params = notebook_parameters(cfg, run_dir)
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with current_interpreter_kernel() as kernel:
            for notebook in (n for n in NOTEBOOKS if n not in done):
                print(f"[{manifest.now()}] running {notebook}", flush=True)
                execute(notebook, run_dir, params, kernel, notebook_dir)
                done.append(notebook)
                manifest.write(run_dir.manifest, completed_notebooks=done)
    except RunError as exc:
        attempts[-1].update(ended=manifest.now(), status="failed", error=str(exc))
        manifest.write(run_dir.manifest, status="failed", error=str(exc), attempts=attempts)
        write_report(run_dir, failure=str(exc))
        raise
    attempts[-1].update(ended=manifest.now(), status="completed", wall_seconds=round(time.perf_counter() - started, 1))
    manifest.write(run_dir.manifest, status="completed", attempts=attempts, error=None)
    write_report(run_dir)
    runs.write_index(run_dir.root.parent, runs.collect(run_dir.root.parent))
    return run_dir


def banner(run: RunDir, failure: str | None = None) -> str:
    """The report's first cell: headline numbers and any warning a reader must see first."""
    cfg = json.loads(run.config.read_text())
    metrics = json.loads(run.metrics.read_text()) if run.metrics.exists() and not failure else {}
    lines = [f"# ✖ RUN FAILED\n\n{failure}\n"] if failure else []
    if cfg.get("generated"):
        lines.append("# ⚠ GENERATED DATA: these numbers say nothing about CIFAR-100\n")
    if cfg["epochs"] > EPOCH_BUDGET:
        lines.append(f"# ⚠ OVER BUDGET: {cfg['epochs']} epochs, above the study's {EPOCH_BUDGET}\n")
    lines.append(f"# CIFAR-100 run `{run.root.name}`: recipe `{cfg['recipe']}`, {cfg['epochs']} epochs\n")
    if metrics:
        tta = f" ({metrics['top1_tta']:.2%} with {metrics['tta']} TTA)" if "top1_tta" in metrics else ""
        lines.append(f"**Test top-1 {metrics['top1']:.2%}**{tta}, top-5 {metrics['top5']:.2%}.")
    return "\n".join(lines)


def write_report(run: RunDir, failure: str | None = None) -> Path:
    """One self-contained HTML file of the run: its executed notebooks behind a banner."""
    notebooks = [run.notebook(n) for n in NOTEBOOKS if run.notebook(n).exists()]
    return export_html(notebooks, banner(run, failure), run.report, f"CIFAR-100 {run.root.name}")


def export_html(notebooks: list[Path], first_cell: str, path: Path, title: str) -> Path:
    """Notebooks merged into one self-contained HTML page: code hidden, figures embedded, readable on a
    phone. The template's CDN scripts (require.js, MathJax) are dropped: the report uses neither."""
    from nbconvert import HTMLExporter

    read = [nbformat.read(p, as_version=4) for p in notebooks]
    cells = [nbformat.v4.new_markdown_cell(first_cell)]
    for nb in read:
        cells += [c for c in nb.cells if not SKIPPED_IN_REPORT & set(c.metadata.get("tags", []))]
    merged = nbformat.v4.new_notebook(cells=cells, metadata=read[0].metadata if read else {})
    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(merged, resources={"metadata": {"name": title}})
    body = re.sub(r'<script src="https?://[^"]*">\s*</script>\s*', "", body)
    write_atomic(path, body.replace("</head>", f"{PHONE_CSS}</head>", 1))
    return path


def compare(outputs: Path, include_unranked: bool = False, notebook_dir: Path = NOTEBOOK_DIR) -> Path:
    """Run notebook 05 over every run in ``outputs``: leaderboard, charts, ``outputs/index.html``;
    the executed notebook and its HTML go to ``outputs/compare/``."""
    outputs = Path(outputs).resolve()
    if not any(outputs.glob("*/metrics.json")):
        raise RunError(f"No completed runs under {outputs}: run one first, or pass --outputs DIR.")
    folder = outputs / "compare"
    folder.mkdir(exist_ok=True)
    params = {"outputs_dir": str(outputs), "include_unranked": include_unranked}
    with current_interpreter_kernel() as kernel:
        execute(COMPARE_NOTEBOOK, folder, params, kernel, notebook_dir)
    return export_html(
        [folder / COMPARE_NOTEBOOK], "# CIFAR-100 runs compared", folder / "report.html", "CIFAR-100 runs"
    )
