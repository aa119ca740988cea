"""Execute the numbered notebooks with papermill into one run directory, then write the
HTML report and the run manifest. It only orchestrates: the work happens in the notebooks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import data, machine
from ..config import EPOCH_BUDGET, RECIPES, SIZES, RunConfig, make_config, without_retired
from ..errors import ConfigError, RunError
from ..files import exclusive, open_lock, read_json, resolve_path, writable_folder, write_atomic, write_fault
from . import jupyter_kernel, leaderboard, manifest, progress
from .report import export_html, write_report
from .run_dir import NOTEBOOKS, RESTORE, RunDir

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parent  # the repository in a checkout or an editable install (site-packages in a plain install)


def shipped_notebooks(package: Path = PACKAGE) -> Path:
    """The numbered notebooks: the copy a plain install (``pip install .``, a wheel) puts inside the package
    (pyproject.toml ships notebooks/ as ``cifar100_helpers/notebooks``), else the repository's notebooks/."""
    installed = package / "notebooks"
    return installed if installed.is_dir() else package.parent / "notebooks"


NOTEBOOK_DIR = shipped_notebooks()
COMPARE_NOTEBOOK = "05_compare.ipynb"
KERNEL_NAME = "cifar100-helpers-current"
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
                       f"a size with --size {'/'.join(SIZES)} to skip the timing.")  # fmt: skip
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
