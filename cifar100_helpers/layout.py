"""Where every file of a run lives. The one place that names them."""

from __future__ import annotations

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


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
