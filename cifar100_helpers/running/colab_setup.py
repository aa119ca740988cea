"""Google Colab set-up, run by every notebook's first code cell with ``%run``: install this repository's package
(the TPU build of TensorFlow on a TPU runtime), make it importable in the running kernel and mount Google Drive.
Standard library and IPython only: it runs before the package is installed."""

from __future__ import annotations

import glob
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TPU_WHEELS = "https://storage.googleapis.com/libtpu-tf-releases/index.html"
TPU_TENSORFLOW = "tensorflow-tpu>=2.19,<2.21"  # the newest TPU build on PyPI is 2.20.0


def distribution(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def plan(tpu: bool, builds: dict[str, str | None], tensorflow_loaded: bool) -> tuple[list[str], str | None]:
    """The ``%pip`` commands for this runtime, and a line to show when the runtime must restart. ``builds`` maps
    "tensorflow" and "tensorflow-tpu" to their installed versions (None: absent). A TPU runtime needs the TPU
    build of TensorFlow, whether its image ships no TensorFlow or the CPU build (removed first: both install the
    same ``tensorflow`` folder); the package then goes in without its dependencies, which would bring the plain
    tensorflow wheel back."""
    if not tpu:
        return [f"install -q -e {REPO}"], None
    package = [f"install -q --no-deps -e {REPO}"]
    if builds.get("tensorflow-tpu"):
        return [*package, "install -q papermill tensorboard"], None
    cpu_build = ["uninstall -q -y tensorflow"] if builds.get("tensorflow") else []
    tpu_build = f'install -q "{TPU_TENSORFLOW}" papermill tensorboard -f {TPU_WHEELS}'
    restart = None
    if tensorflow_loaded:
        restart = (
            "TensorFlow's TPU build is installed, but this runtime had already loaded the CPU build: restart the "
            "session (Runtime > Restart session), then run this notebook again."
        )
    return [*cpu_build, tpu_build, *package], restart


def main() -> None:
    from IPython import get_ipython

    tpu = bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))
    builds = {name: distribution(name) for name in ("tensorflow", "tensorflow-tpu")}
    commands, restart = plan(tpu, builds, "tensorflow" in sys.modules)
    for command in commands:
        get_ipython().run_line_magic("pip", command)
    if restart:
        print(restart)
        return
    sys.path.insert(0, str(REPO))  # this kernel started before the install
    from cifar100_helpers import colab

    colab.mount_drive()  # runs go to Google Drive; if declined, to this runtime's disk (one line says so)


if __name__ == "__main__":
    main()
