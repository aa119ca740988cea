"""Where the notebooks run, and Google Colab in particular: Google Drive as the home of run directories
(so notebooks opened one at a time in separate Colab runtimes share their files, and a run survives a
disconnect), the default run directory, one-line errors in notebooks, and the run-all entry point of
00_colab.ipynb."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..config import RunConfig
from ..errors import Cifar100Error, RunError
from . import notebook_runner, report
from .run_dir import RunDir

DRIVE_MOUNT = Path("/content/drive")  # where Colab mounts Google Drive; "My Drive" is MyDrive/ below it
DRIVE_FOLDER = "cifar100-10-epochs"  # the study's folder in My Drive
LOCAL_OUTPUTS = Path("outputs")
NOTEBOOK_RUN = "notebook-run"  # the run directory of notebooks opened by hand (run_dir = None)


def in_colab() -> bool:
    """True in a Colab kernel (which imports google.colab at start), False elsewhere, papermill included."""
    return "google.colab" in sys.modules


def drive_root(mountpoint: Path | None = None) -> Path | None:
    """My Drive when Google Drive is mounted at ``mountpoint`` (default DRIVE_MOUNT), else None."""
    root = Path(mountpoint or DRIVE_MOUNT) / "MyDrive"
    return root if root.is_dir() else None


def mount_drive(mountpoint: Path | None = None) -> Path | None:
    """In Colab, mount Google Drive (Colab asks for permission) and return My Drive. If it is declined or
    fails, say in one line where files go instead and return None. Outside Colab: None, nothing asked."""
    if not in_colab():
        return None
    from google.colab import drive

    mountpoint = Path(mountpoint or DRIVE_MOUNT)
    try:
        drive.mount(str(mountpoint))
        root = drive_root(mountpoint)
        if root is None:
            raise OSError(f"no MyDrive folder under {mountpoint}")
    except Exception as exc:  # declined, timed out, or Drive unavailable: Colab raises several types
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(
            f"Google Drive is not mounted ({reason}): files go to this runtime's local "
            f"disk ({LOCAL_OUTPUTS.resolve()}) and are lost with the runtime, so run 01-04 in this one runtime "
            "(00_colab.ipynb runs them all)."
        )
        return None
    print(f"Google Drive mounted: runs go to {outputs_folder(True, root)}")
    return root


def outputs_folder(colab: bool, drive: Path | None) -> Path:
    """The folder of run directories: My Drive's cifar100-10-epochs/ in Colab with Drive mounted, else outputs/."""
    return drive / DRIVE_FOLDER if colab and drive is not None else LOCAL_OUTPUTS


def default_run_dir(colab: bool, drive: Path | None) -> Path:
    """What ``run_dir = None`` means in a notebook: ``notebook-run`` in :func:`outputs_folder`."""
    return outputs_folder(colab, drive) / NOTEBOOK_RUN


def outputs_dir(value: str | None = None) -> Path:
    """A notebook's ``outputs_dir`` parameter: the value given, or the default for where this kernel runs."""
    return Path(value) if value is not None else outputs_folder(in_colab(), drive_root())


def run_dir(value: str | None) -> RunDir:
    """A notebook's ``run_dir`` parameter as a created RunDir: the value given (the pipeline always gives
    one), or the default for where this kernel runs, said in one line."""
    if value is not None:
        return RunDir(value).create()
    run = RunDir(default_run_dir(in_colab(), drive_root())).create()
    print(f"run_dir: {run.root}")
    return run


def start(recipe, data_path, verify, epochs, seed, overrides, run_dir_value) -> tuple[RunConfig, RunDir]:
    """What every numbered notebook does after its parameters cell: one-line errors, the run's config (checked)
    and its run directory, said in one line."""
    from ..config import from_parameters

    one_line_errors()
    cfg = from_parameters(recipe, data=data_path, verify=verify, epochs=epochs, seed=seed, overrides=overrides)
    run = run_dir(run_dir_value)
    print(f"recipe {cfg.recipe}: {cfg.epochs} epochs, batch {cfg.batch_size}, model {cfg.model}")
    return cfg, run


def one_line_errors(shell=None) -> bool:
    """In a notebook, show a Cifar100Error (whose message carries the fix) as one line instead of a traceback.
    The cell still fails: Jupyter, Colab and papermill see an error output with the exception's name and
    message, so a papermill run still stops there. Returns False outside IPython."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return False

    def show(shell, etype, value, tb, tb_offset=None):
        shell._showtraceback(etype, value, [f"{etype.__name__}: {value}"])

    shell.set_custom_exc((Cifar100Error,), show)
    return True


def default_run_name(cfg: RunConfig) -> str:
    """The run directory name 00_colab.ipynb uses when ``run_name`` is None: the same for the same recipe and
    seed, so running the notebook again after a disconnect finds the run and continues it."""
    return f"{cfg.recipe}-seed{cfg.seed}"


def run_or_resume(cfg: RunConfig, output: Path) -> RunDir:
    """Run 01-04 through the pipeline into ``output``; if it already holds this config's run, continue it when
    interrupted and only return it when completed. A different config there is refused."""
    run = RunDir(output)
    if not run.manifest.exists():
        return notebook_runner.run(cfg, output)
    saved = notebook_runner.config_from_file(run.config)
    wanted = notebook_runner.with_absolute_paths(cfg)
    changed = [f.name for f in dataclasses.fields(RunConfig) if getattr(saved, f.name) != getattr(wanted, f.name)]
    if changed:
        raise RunError(
            f"{run.root} holds a run with a different {', '.join(changed)}: set run_name to a new name, "
            "or the parameters back to that run's."
        )
    if json.loads(run.manifest.read_text()).get("status") == "completed":
        print(f"{run.root} is already completed: showing it (set a new run_name to train again).")
        if not run.report.exists():  # the runtime stopped while the report was being written
            report.write_report(run)
        return run
    print(f"{run.root} was interrupted: continuing it (finished notebooks and epochs are kept).")
    return notebook_runner.resume(output)


def show_report(run: RunDir) -> None:
    """The headline of a run, then its report.html: in Colab a link that opens it in a browser tab and the
    report inline, both served from this runtime; elsewhere its path."""
    from IPython.display import Markdown, display

    display(Markdown(report.banner(run)))
    print(f"report: {run.report}")
    if in_colab():
        from google.colab import output

        port = serve(run.root)
        output.serve_kernel_port_as_window(port, path="/report.html", anchor_text="open report.html in a new tab")
        output.serve_kernel_port_as_iframe(port, path="/report.html", height=800)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # no log line per request in the notebook
        pass


def serve(folder: Path) -> int:
    """Serve ``folder`` over HTTP on localhost from a background thread (Colab proxies such a port to the
    browser); returns the port."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("localhost", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]
