"""Where every file of a run lives. The one place that names them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import RunError


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
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last_epoch.keras"

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
        for folder in (self.root, self.figures, self.checkpoint.parent):
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


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


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
