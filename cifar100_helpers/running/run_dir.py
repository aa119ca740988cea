"""Where every file of a run lives. The one place that names them."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputError, RunError
from ..files import kind, resolve_path

LINKED = "pass the folder itself, or repair the link"


NOTEBOOKS = ("01_data.ipynb", "02_model.ipynb", "03_train.ipynb", "04_results.ipynb")  # what a run executes, in order
RESTORE = "restore it, or start a new run with --output NAME"  # the fix for a run's damaged file


@dataclass(frozen=True)
class RunDir:
    """The layout of ``outputs/<run>/``."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", resolve_path(self.root, LINKED))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

    @property
    def untrained_model(self) -> Path:
        return self.root / "model_untrained.keras"

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def resume_state(self) -> Path:
        """Names the last finished epoch's saved state in ``backup`` (epoch_files.Backup: one save an epoch)."""
        return self.backup / "state.json"

    @property
    def backup(self) -> Path:
        return self.root / "checkpoints" / "backup"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def progress(self) -> Path:
        return self.root / "progress.log"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one process running the run; see notebook_runner.locked."""
        return self.root / "run.lock"

    @property
    def generated_data(self) -> Path:
        return self.root / "generated-data" / "cifar-100-python.tar.gz"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"

    def export(self, fmt: str) -> Path:
        """Where ``python -m cifar100_helpers export`` writes format ``fmt`` (savedmodel, tflite, onnx) by default."""
        return self.root / "export" / {"savedmodel": "savedmodel", "tflite": "model.tflite"}.get(fmt, f"model.{fmt}")

    def notebook(self, name: str) -> Path:
        return self.root / name

    def require(self, path: Path, producer: str) -> Path:
        """``path``, which notebook ``producer`` writes; if it is missing, one line saying to run that first."""
        if not Path(path).exists():
            raise RunError(
                f"{Path(path).name} is not in {self.root}: run {producer} first, with the same run_dir and recipe "
                "(in Colab: with Google Drive mounted there too, or run everything with 00_colab.ipynb)."
            )
        return Path(path)

    def create(self) -> RunDir:
        for folder in (self.root, self.figures):
            folder.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class SweepDir:
    """The layout of a sweep folder (``outputs/sweep-<name>/``): one ordinary run directory per grid point."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", resolve_path(self.root, LINKED))

    @property
    def manifest(self) -> Path:
        """sweep.json: the grid, the command line, and each run's status, exit code, error and wall time."""
        return self.root / "sweep.json"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one ``sweep`` process driving the folder."""
        return self.root / "sweep.lock"

    @property
    def index(self) -> Path:
        return self.root / "index.html"

    @property
    def ray_log(self) -> Path:
        """What Ray printed while it started or joined a cluster (its C++ retries, its warnings), every attempt."""
        return self.root / "ray.log"

    def run(self, name: str) -> Path:
        return self.root / name

    def log(self, name: str) -> Path:
        """Everything the run's process printed, every attempt appended (on the machine that ran it)."""
        return self.root / "logs" / f"{name}.log"


def check_output(path: str | Path, folder: bool, flag: str = "--output") -> Path:
    """``path`` made absolute, once it is known that a command can write it: each name within the file system's
    limit, no file where a folder goes (``folder``) nor a folder where a file goes, and the folder it goes in
    writable (a file is created there and removed). Otherwise an OutputError naming ``flag``; nothing is left."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    broken = (p for p in (path, *path.parents) if os.path.islink(p) and not os.path.exists(p))
    linked = next((f"{p} is {kind(p)}" for p in broken), "")
    if linked:  # a symlink loop or a dangling link: say so, not "a file"
        raise OutputError(f"{flag} {path}: {linked}: choose another {flag}, or repair the link.")
    base = next(p for p in (path, *path.parents) if os.path.lexists(p))  # the nearest part that exists
    longest = max(path.relative_to(base).parts, key=lambda name: len(os.fsencode(name)), default="")
    limit = os.pathconf(base if base.is_dir() else base.parent, "PC_NAME_MAX")
    if len(os.fsencode(longest)) > limit:
        raise OutputError(f"{flag}: the name {longest[:24]}... is {len(os.fsencode(longest))} bytes, more than the "
                          f"{limit} this file system allows: choose a shorter name.")  # fmt: skip
    if base == path and path.is_dir() != folder:
        found, fix = ("a file", "a new folder name") if folder else ("a folder", "a file name inside it")
        raise OutputError(f"{flag} {path} is {found}: pass {fix}.")
    into = base if base != path else path if folder else path.parent  # where the command creates or replaces
    if not into.is_dir():
        raise OutputError(f"{flag} {path}: {into} is a file, not a folder: choose an {flag} under a folder.")
    try:
        tempfile.TemporaryFile(dir=into).close()
    except OSError as exc:
        raise OutputError(
            f"{flag} {path}: cannot write in {into} ({exc.strerror}): choose an {flag} under a writable folder."
        ) from None
    return path
