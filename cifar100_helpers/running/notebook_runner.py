"""Execute the numbered notebooks with papermill into one run directory, then write the
HTML report and the run manifest. It only orchestrates: the work happens in the notebooks."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from .. import data, machine
from ..config import EPOCH_BUDGET, RECIPES, SIZES, RunConfig, make_config, without_retired
from ..errors import ConfigError, RunError
from ..files import exclusive, open_lock, read_json, resolve_path, writable_folder, write_atomic, write_fault
from . import history, jupyter_kernel, leaderboard, manifest, progress
from .markup import escape
from .run_dir import RunDir

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parent  # the repository in a checkout or an editable install (site-packages in a plain install)


def shipped_notebooks(package: Path = PACKAGE) -> Path:
    """The numbered notebooks: the copy a plain install (``pip install .``, a wheel) puts inside the package
    (pyproject.toml ships notebooks/ as ``cifar100_helpers/notebooks``), else the repository's notebooks/."""
    installed = package / "notebooks"
    return installed if installed.is_dir() else package.parent / "notebooks"


NOTEBOOK_DIR = shipped_notebooks()
NOTEBOOKS = ("01_data.ipynb", "02_model.ipynb", "03_train.ipynb", "04_results.ipynb")
COMPARE_NOTEBOOK = "05_compare.ipynb"
PHONE_CSS = "<style>body{max-width:60em;margin:auto} img{max-width:100%;height:auto} pre{white-space:pre-wrap}</style>"
KERNEL_NAME = "cifar100-helpers-current"
SKIPPED_IN_REPORT = {"parameters", "injected-parameters", "report-skip"}  # cell tags left out of report.html
TITLE_ONLY_IN_REPORT = "report-title"  # a notebook's header cell: report.html shows its first line, the chapter's title
NAMED_PARAMETERS = {"data": "data_path", "verify": "verify", "epochs": "epochs"}  # config field: notebook name
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first bytes of every .h5 file, Keras weights included


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
        # log level CRITICAL: no TCP notice per notebook, no ZMQ noise when a run is interrupted (cell errors
        # still reach papermill as messages); the kernel dies with this process
        kernel = [sys.executable, "-m", "cifar100_helpers.running.jupyter_kernel", "-f", "{connection_file}"]
        argv = [*kernel, "--IPKernelApp.log_level=CRITICAL"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "cifar100", "language": "python"}))
        settings = {"JUPYTER_PATH": os.pathsep.join(p for p in (tmp, os.environ.get("JUPYTER_PATH")) if p)}
        if not writable_folder(Path.home()):  # HOME unusable (/proc, read-only): IPython and Jupyter write here
            own = {"IPYTHONDIR": "ipython", "JUPYTER_RUNTIME_DIR": "runtime", "MPLCONFIGDIR": "matplotlib"}
            settings |= {k: str(Path(tmp) / v) for k, v in own.items() if k not in os.environ}
        with environment(settings):
            yield KERNEL_NAME


@contextlib.contextmanager
def environment(settings: dict[str, str]):
    """``settings`` in os.environ for the block, the previous values restored after it."""
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def check_data(cfg: RunConfig) -> Path | None:
    """Fail before any notebook starts if the data cannot be found, fails its checksum or is not valid
    CIFAR-100 (shapes, dtype, labels, class names); return the source found (None for generated data)."""
    if not cfg.generated:
        return data.validated_source(cfg.data, cfg.verify, cfg.val_fraction, batch_size=cfg.batch_size)
    return None


def check_weights(cfg: RunConfig) -> None:
    """A local ``--weights`` file must exist and be an HDF5 (.h5) file, as Keras's weights files are."""
    if cfg.weights in (None, "imagenet"):
        return
    path = Path(cfg.weights)
    if not path.is_file():
        raise RunError(f"--weights {path}: no such file. Pass a Keras .h5 weights file, 'imagenet' or None.")
    with open(path, "rb") as f:
        head = f.read(len(HDF5_SIGNATURE))
    if head != HDF5_SIGNATURE:
        raise RunError(
            f"--weights {path} is not an HDF5 (.h5) weights file (it starts with {head!r}): pass the Keras "
            "no-top .h5 file of the backbone (e.g. efficientnetv2-s_notop.h5), 'imagenet' or None."
        )


def check_notebooks(notebook_dir: Path, names: tuple[str, ...] = NOTEBOOKS) -> None:
    missing = [n for n in names if not (Path(notebook_dir) / n).is_file()]
    if missing:
        raise RunError(
            f"{notebook_dir} lacks {', '.join(missing)}: pass --notebooks the folder that holds them "
            "(the repository's notebooks/), or leave --notebooks out."
        )


def check_inputs(cfg: RunConfig, notebook_dir: Path) -> tuple[RunConfig, Path | None]:
    """Everything a run can be refused for before it starts. Returns the config with absolute paths (what
    config.json records) and the data source found (recorded in run.json as ``data_source``)."""
    check_notebooks(notebook_dir)
    cfg = with_absolute_paths(cfg)
    check_weights(cfg)
    return cfg, check_data(cfg)


@contextlib.contextmanager
def locked(run: RunDir):
    """One process per run directory: an exclusive lock on its lock file, held until the run ends and
    released by the system if the process dies. Where the file system cannot lock, runs go unguarded."""
    try:
        handle = open_lock(run.lock)  # closed below, after the run; a folder or a pipe there is named as such
    except OSError as exc:
        raise RunError(write_failure(exc, run)) from None
    busy = f"{run.root} is in use by {{holder}}: a run directory takes one process at a time; wait for that one to "
    with handle, exclusive(handle, busy + "finish (or stop it), then --resume.", f"pid {os.getpid()}"):
        yield run


def write_failure(exc: OSError, run: RunDir) -> str:
    """The one line for a write that failed (a full disk, a read-only or vanished folder)."""
    what, fix = write_fault(exc)  # the true cause: full, read-only, not ours, a folder in the way
    where = f" {exc.filename}" if exc.filename else f" in {run.root}"
    again = (
        f"then continue with --resume {run.root}"
        if run.manifest.exists() and run.config.exists()
        else f"then delete {run.root} and start the run again"
    )
    return f"Could not write{where} ({what}): {fix}, {again}."


def execute(
    notebook: str, folder: Path | RunDir, params: dict, kernel: str, notebook_dir: Path, output: Path | None = None
) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    folder = folder.root if isinstance(folder, RunDir) else folder
    output = output or folder / notebook
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
    """Notebooks run inside the run directory, so relative data and weights paths are made absolute, once,
    here: ``--data``, else ``$CIFAR100_DATA`` (resolved against the current folder and recorded in
    config.json). Data from the Keras cache or the download stays None: a resume on a fresh machine (Colab)
    finds or downloads it again."""

    def absolute(path: str) -> str:
        return os.path.abspath(Path(path).expanduser())  # symbolic links kept: a loop is named, not raised

    given = None if cfg.generated else cfg.data or os.environ.get(data.ENV_VAR)
    changes = {"data": absolute(given)} if given else {}
    if cfg.weights not in (None, "imagenet"):
        changes["weights"] = absolute(cfg.weights)
    return dataclasses.replace(cfg, **changes)


def choose_size(cfg: RunConfig, source: Path | None) -> tuple[RunConfig, dict | None]:
    """Size ``auto``: time the network's sizes on this machine in a child process (pace.py; this one stays free of
    TensorFlow) and return the config with the largest that fits ``cfg.minutes``, and the probe's record."""
    if cfg.size != "auto":
        return cfg, None
    command = [sys.executable, "-m", "cifar100_helpers.pace", json.dumps(cfg.to_dict()), str(source or "")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    print(f"timing the sizes of {cfg.recipe} on this machine for its {cfg.minutes:g}-minute budget ...", flush=True)
    parent = os.getpid()  # a run killed in any way takes the timing with it (as its notebook kernels)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env,
                          preexec_fn=lambda: jupyter_kernel.die_with_parent(signal.SIGKILL, parent))  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RunError(f"timing the sizes of {cfg.recipe} failed (exit {done.returncode}, its output above): choose "
                       "a size with --size XXS, XS, S or M to skip the timing.")  # fmt: skip
    print("\n".join(lines[:-1]), flush=True)
    record = json.loads(lines[-1])
    return dataclasses.replace(cfg, size=record["size"], widths=SIZES[record["size"]]), record


def run(cfg: RunConfig, output: Path, notebook_dir: Path = NOTEBOOK_DIR) -> RunDir:
    """Run 01-04 into ``output`` (which must not exist), then write report.html and run.json."""
    cfg, source = check_inputs(cfg, notebook_dir)
    cfg, budget = choose_size(cfg, source)
    run_dir = prepare_run_dir(output)
    with locked(run_dir):
        try:
            write_atomic(run_dir.config, json.dumps(cfg.to_dict(), indent=2) + "\n")
            manifest.write(
                run_dir.manifest,
                config=cfg.to_dict(),
                budget=budget,
                epoch_budget=EPOCH_BUDGET,
                over_budget=cfg.over_budget,
                deterministic=cfg.deterministic,
                notebooks=list(NOTEBOOKS),
                completed_notebooks=[],
                attempts=[],
            )
        except OSError as exc:
            raise RunError(write_failure(exc, run_dir)) from None
        return execute_remaining(cfg, run_dir, notebook_dir, source)


def resume(path: Path, notebook_dir: Path = NOTEBOOK_DIR) -> RunDir:
    """Continue an interrupted run: completed notebooks are kept, training goes on from its last
    finished epoch (the epoch budget counts across all attempts)."""
    run_dir = RunDir(path)
    if not run_dir.config.exists() or not run_dir.manifest.exists():
        raise RunError(f"{run_dir.root} is not a run directory (no config.json and run.json): check the --resume path.")
    check_notebooks(notebook_dir)
    with locked(run_dir):
        record = read_json(run_dir.manifest, "the run cannot be resumed: start a new run with --output NAME")
        if record.get("status") == "completed":
            if not run_dir.report.exists():  # the process stopped while writing it: only the report is missing
                write_report(run_dir)
                print(f"{run_dir.root} was already completed; its missing report.html is written again.", flush=True)
                return run_dir
            raise RunError(f"{run_dir.root} already completed; start a new run with --output NAME.")
        if "config" not in record and "notebooks" not in record:  # written by training alone: tune, or by hand
            raise RunError(f"{run_dir.root} is not a run directory made by `run` but a `tune` folder (or notebooks "
                           "run by hand): continue a tune with its own command, `python -m cifar100_helpers tune "
                           f"--output {run_dir.root}` and the same --recipe and --set values.")  # fmt: skip
        saved, recorded = read_json(run_dir.config, RESTORE), record.get("config") or {}
        if saved != recorded:
            changed = sorted(k for k in {*saved, *recorded} if saved.get(k) != recorded.get(k))
            raise RunError(
                f"{run_dir.config} no longer matches the config recorded in {run_dir.manifest} (changed: "
                f"{', '.join(changed)}): a run keeps its config; restore config.json, or start a new run with "
                "--output NAME."
            )
        cfg, source = check_inputs(config_from_dict(saved, run_dir.config), notebook_dir)
        return execute_remaining(cfg, run_dir, notebook_dir, source)


RESTORE = "restore it, or start a new run with --output NAME"


def config_from_file(path: Path) -> RunConfig:
    return config_from_dict(read_json(path, RESTORE), path)


def config_from_dict(saved: dict, path: Path) -> RunConfig:
    """The RunConfig saved in ``path``, validated; a config that no longer validates names the file."""
    try:
        saved = without_retired(saved)
        return make_config(saved.pop("recipe", None) or "", **saved)
    except ConfigError as exc:
        raise RunError(f"{path}: {exc} The file is the run's saved config: {RESTORE}.") from None


def execute_remaining(cfg: RunConfig, run_dir: RunDir, notebook_dir: Path, source: Path | None = None) -> RunDir:
    """Execute the notebooks not yet completed, recording this attempt, then write the report. A failure
    (a notebook, a full disk) marks the run failed, Ctrl-C marks it interrupted; both can be resumed."""
    record = read_json(run_dir.manifest, "the run cannot be resumed: start a new run with --output NAME")
    done, attempts = record.get("completed_notebooks", []), record.get("attempts", [])
    attempts.append({"started": manifest.now(), "skipped": list(done)})
    params = notebook_parameters(cfg, run_dir)
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        manifest.write(
            run_dir.manifest,
            status="running",
            attempts=attempts,
            data_source=str(source) if source else None,  # the archive or folder this attempt reads
            versions=manifest.package_versions(),
            hardware=machine.describe(),
            git=manifest.git_state(REPO),
        )
        with current_interpreter_kernel() as kernel, progress.following(run_dir.progress):
            for notebook in (n for n in NOTEBOOKS if n not in done):
                print(f"[{manifest.now()}] running {notebook}", flush=True)
                execute(notebook, run_dir, params, kernel, notebook_dir)
                done.append(notebook)
                manifest.write(run_dir.manifest, completed_notebooks=done)
        write_report(run_dir)  # before "completed": a completed run always has its report
        wall = round(time.perf_counter() - started, 1)
        attempts[-1].update(ended=manifest.now(), status="completed", wall_seconds=wall)
        manifest.write(run_dir.manifest, status="completed", attempts=attempts, error=None)
    except KeyboardInterrupt:
        end_attempt(run_dir, attempts, "interrupted")
        raise
    except (RunError, OSError) as exc:
        error = exc if isinstance(exc, RunError) else RunError(write_failure(exc, run_dir))
        end_attempt(run_dir, attempts, "failed", str(error))
        raise error from None
    try:
        leaderboard.write_index(run_dir.root.parent, leaderboard.collect(run_dir.root.parent))
    except OSError as exc:
        print(f"warning: could not refresh {run_dir.root.parent / 'index.html'} ({exc.strerror})", file=sys.stderr)
    return run_dir


def end_attempt(run_dir: RunDir, attempts: list[dict], status: str, error: str | None = None) -> None:
    """Record how this attempt ended; a failure also gets a report that opens with its cause. On a full
    disk even this may not be written: the error line still says what happened."""
    attempts[-1].update(ended=manifest.now(), status=status, **({"error": error} if error else {}))
    with contextlib.suppress(OSError, ValueError):  # ValueError: a notebook the full disk left empty (nbformat)
        manifest.write(run_dir.manifest, status=status, error=error, attempts=attempts)
        if status == "failed":
            write_report(run_dir, failure=error)


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
        minutes = sum(row["seconds"] for row in epochs) / 60
        rows.append(("Training", f"{minutes:.1f} min for {len(epochs)} epoch(s)"))
    if record.get("budget"):
        budget = record["budget"]
        rows.append(("Time budget", f"{budget['minutes']:g} min of training: {escape(budget_summary(budget))}"))
    return rows


def budget_summary(budget: dict) -> str:
    """What the probe before training measured and chose, in words (run.json's ``budget``)."""
    probe = ", ".join(f"{size} {m['images_per_second']:.0f} images/s" for size, m in budget["probe"].items())
    chosen = f"chose size {budget['size']}, projected {budget['projected_minutes']:.1f} min"
    return f"timed {probe} ({budget['precision']}); {chosen}"


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


def compare(outputs: Path, include_unranked: bool = False, notebook_dir: Path = NOTEBOOK_DIR) -> Path:
    """Run notebook 05 over every run in ``outputs``: leaderboard, charts, ``outputs/index.html``;
    the executed notebook and its HTML go to ``outputs/compare/``."""
    outputs = resolve_path(outputs, "pass the outputs folder itself, or repair the link")
    check_notebooks(notebook_dir, (COMPARE_NOTEBOOK,))
    rows, skipped = leaderboard.scan(outputs)
    if not rows:
        damaged = f" (skipped as damaged: {'; '.join(skipped)})" if skipped else ""
        fix = "repair or move those files, " if skipped else ""
        raise RunError(f"No completed runs under {outputs}{damaged}: {fix}run one first, or pass --outputs DIR.")
    leaderboard.warn_skipped(skipped, outputs)
    folder = outputs / "compare"
    folder.mkdir(exist_ok=True)
    params = {"outputs_dir": str(outputs), "include_unranked": include_unranked}
    partial = folder / f"partial-{COMPARE_NOTEBOOK}"  # renamed on success: a failure keeps the last good one
    with current_interpreter_kernel() as kernel:
        execute(COMPARE_NOTEBOOK, folder, params, kernel, notebook_dir, output=partial)
    os.replace(partial, folder / COMPARE_NOTEBOOK)
    return export_html(
        [folder / COMPARE_NOTEBOOK], "# CIFAR-100 runs compared", folder / "report.html", "CIFAR-100 runs"
    )
