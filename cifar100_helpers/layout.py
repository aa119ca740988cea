"""Where every file of a run lives. The one place that names them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import OutputError, RunError


@dataclass(frozen=True)
class RunDir:
    """The layout of ``outputs/<run>/``."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

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
        """Names the last finished epoch's saved state in ``backup`` (training.Backup: one save an epoch)."""
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
        """Held (flock) by the one process running the run; see pipeline.locked."""
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
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

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
    base = next(p for p in (path, *path.parents) if os.path.lexists(p))  # the nearest part that exists
    longest = max(path.relative_to(base).parts, key=lambda name: len(os.fsencode(name)), default="")
    limit = os.pathconf(base if base.is_dir() else base.parent, "PC_NAME_MAX")
    if len(os.fsencode(longest)) > limit:
        raise OutputError(f"{flag}: the name {longest[:24]}... is {len(os.fsencode(longest))} bytes, more than the "
                          f"{limit} this file system allows: choose a shorter name.")  # fmt: skip
    if base == path and path.is_dir() != folder:
        kind, fix = ("a file", "a new folder name") if folder else ("a folder", "a file name inside it")
        raise OutputError(f"{flag} {path} is {kind}: pass {fix}.")
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


@contextlib.contextmanager
def replacing(path: Path):
    """A temporary path beside ``path`` (same folder, same ending, so Keras and numpy accept it) to write to;
    when the block ends it replaces ``path`` in one rename, and if the block fails it is removed. A crash or a
    full disk never leaves a half-written ``path`` that a later step would read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{secrets.token_hex(4)}-{path.name}")
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(partial) if partial.is_dir() else partial.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` via a temporary file and rename, so a crash never leaves a half-written file."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")
        os.chmod(partial, 0o644)


@contextlib.contextmanager
def stderr_into(path: str | Path):
    """File descriptor 2 appends to ``path`` for the duration, so that what C++ libraries write there (TensorFlow's
    start-up notes, Ray's connection retries), which Python's ``sys.stderr`` never sees, stays off the terminal."""
    sys.stderr.flush()
    saved, target = os.dup(2), os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


@contextlib.contextmanager
def exclusive(handle, busy: str, holder: str):
    """Hold an exclusive lock on the open file ``handle`` for the block (the system releases it if the
    process dies) and write ``holder`` into it; if another process holds it, a RunError
    ``busy`` (its "{holder}" replaced) names that process. Where the file system cannot lock, go unguarded."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise RunError(busy.replace("{holder}", handle.read().strip() or "another process")) from None
    except OSError:  # no locks on this file system (some network mounts)
        pass
    with contextlib.suppress(OSError):
        handle.truncate(0)
        handle.write(f"{holder}\n")
        handle.flush()
    yield
