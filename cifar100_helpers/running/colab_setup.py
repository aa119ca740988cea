"""Google Colab set-up, run by every notebook's first code cell with ``%run``: install this repository's package
(the TPU build of TensorFlow on a TPU runtime), make it importable in the running kernel and mount Google Drive.
Standard library and IPython only until the package is installed (machine.py, which it reads, is too)."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TPU_WHEELS = "https://storage.googleapis.com/libtpu-tf-releases/index.html"
TPU_TENSORFLOW = "tensorflow-tpu>=2.19,<2.21"  # the newest TPU build on PyPI is 2.20.0
TPU_MINIMUM, TPU_BELOW = (2, 19), (2, 21)  # a preinstalled tensorflow-tpu outside TPU_TENSORFLOW is replaced
KERAS = "keras>=3.10,<3.16"  # pyproject.toml's range (a test keeps them equal): --no-deps installs skip it
TPU_EXTRAS = f'"{KERAS}" papermill tensorboard'
CPU_BUILDS = ("tensorflow", "tensorflow-cpu")  # both install the `tensorflow` folder the TPU build needs
RESTART = (
    "TensorFlow's TPU build is installed, but this runtime had already loaded another build: restart the session "
    "(Runtime > Restart session), then run this notebook again."
)


class RestartNeeded(RuntimeError):
    """Stops "Run all" after an install that only a restarted runtime can load."""


def distribution(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def release(version: str | None) -> tuple[int, ...]:
    """(major, minor) of a version string, () when absent or unreadable."""
    try:
        return tuple(int(part) for part in (version or "").split(".")[:2])
    except ValueError:
        return ()


def plan(tpu: bool, builds: dict[str, str | None], tensorflow_loaded: bool) -> tuple[list[str], str | None]:
    """The ``%pip`` commands for this runtime, and the reason to restart it (None: no restart). ``builds`` maps
    "tensorflow", "tensorflow-cpu" and "tensorflow-tpu" to their installed versions (None: absent). A TPU runtime
    needs the TPU build of TensorFlow in TPU_TENSORFLOW's range, alone: whether its image ships none, another
    version, or a CPU build beside or instead of it, every build is removed first (they all install the same
    ``tensorflow`` folder) and the TPU build installed; the package then goes in without its
    dependencies, which would bring the plain tensorflow wheel back, so Keras and the rest are named."""
    if not tpu:
        return [f"install -q -e {REPO}"], None
    package = [f"install -q --no-deps -e {REPO}"]
    others = any(builds.get(name) for name in CPU_BUILDS)  # beside a TPU build, they overwrite its files
    if TPU_MINIMUM <= release(builds.get("tensorflow-tpu")) < TPU_BELOW and not others:
        return [f"install -q {TPU_EXTRAS}", *package], None
    remove = [name for name in (*CPU_BUILDS, "tensorflow-tpu") if builds.get(name)]
    uninstall = [f"uninstall -q -y {' '.join(remove)}"] if remove else []
    tpu_build = f'install -q "{TPU_TENSORFLOW}" {TPU_EXTRAS} -f {TPU_WHEELS}'
    return [*uninstall, tpu_build, *package], RESTART if tensorflow_loaded else None


def one_line(shell, etype, value, tb, tb_offset=None):
    shell._showtraceback(etype, value, [f"{etype.__name__}: {value}"])


def main() -> None:
    from IPython import get_ipython

    sys.path.insert(0, str(REPO))  # this kernel started before the install
    from cifar100_helpers.machine import tpu_address

    names = (*CPU_BUILDS, "tensorflow-tpu")
    commands, restart = plan(bool(tpu_address()), {n: distribution(n) for n in names}, "tensorflow" in sys.modules)
    shell = get_ipython()
    for command in commands:
        shell.run_line_magic("pip", command)
    if restart:
        shell.set_custom_exc((RestartNeeded,), one_line)
        raise RestartNeeded(restart)
    from cifar100_helpers.running import colab

    colab.mount_drive()  # runs go to Google Drive; if declined, to this runtime's disk (one line says so)


if __name__ == "__main__":
    main()
