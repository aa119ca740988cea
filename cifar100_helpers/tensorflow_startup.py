"""TensorFlow's start-up, kept out of notebooks and reports: the package imports no TensorFlow itself (the
processes that only orchestrate must not: on a TPU machine the first process to load it holds the TPU), but when
a notebook kernel or a command first imports it, its C++ start-up lines (oneDNN notes, "failed call to cuInit"
on machines without a GPU) are held back. On a machine with a TPU, what those lines say about the TPU is not
hidden: it is printed as one line, and :data:`tpu_lines` keeps it for the error that names a TPU that did not
start. Python errors surface as usual."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from .files import stderr_into

tpu_lines: list[str] = []  # TensorFlow's start-up lines about the TPU, where one is present


class QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader with file descriptor 2 sent to a temporary file, then probes the GPUs (where
    the CUDA lines come from) the same way."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with tempfile.TemporaryDirectory() as folder:
            log = Path(folder) / "tensorflow-startup.log"
            with stderr_into(log):
                self.loader.exec_module(module)
                module.config.list_physical_devices("GPU")
            report_tpu(log.read_text(errors="replace"))


def report_tpu(text: str) -> None:
    """On a TPU machine, the start-up lines that mention the TPU (libtpu in use by another process, a failed
    initialisation), as one line on stderr."""
    from .machine import tpu_address

    if not tpu_address():
        return
    lines = [" ".join(line.split()) for line in text.splitlines() if "tpu" in line.lower()]
    tpu_lines[:] = lines
    if lines:
        print(f"TensorFlow's TPU start-up: {lines[-1][:400]}", file=sys.stderr, flush=True)


class QuietFinder(importlib.abc.MetaPathFinder):
    """Hands the first import of ``tensorflow`` to :class:`QuietLoader`, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Quiet the first import of TensorFlow in this process (nothing to do once it is loaded)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietFinder())
