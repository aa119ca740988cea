"""The notebook kernel the pipeline starts (``python -m cifar100_helpers.running.jupyter_kernel -f CONNECTION_FILE``):
ipykernel, made to die with the process that started it, so that a ``run`` killed in any way (Ctrl-C,
SIGTERM from ``timeout`` or a scheduler, even SIGKILL) never leaves a kernel behind holding memory,
a GPU or a cluster port. On Linux the kernel asks for SIGKILL when its parent dies (prctl
PR_SET_PDEATHSIG); elsewhere the pipeline's own shutdown of the kernel is all there is."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
END_WITH_PARENT = "CIFAR100_END_WITH_PARENT"  # set by a sweep's Ray task (sweep.py) to its own pid


def die_with_parent(signum: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Receive ``signum`` when the parent process (pid ``parent``, default the current one) dies."""
    if not sys.platform.startswith("linux"):
        return
    parent = parent or os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def end_with_parent_if_asked() -> None:
    """A ``run`` started by a sweep's Ray task ends as after Ctrl-C (marked interrupted, its kernel shut down)
    when the worker running that task dies: a sweep killed with SIGKILL, Ray shut down, a node lost."""
    parent = os.environ.pop(END_WITH_PARENT, None)
    if parent and parent.isdigit():
        die_with_parent(signal.SIGTERM, int(parent))


def terminate_as_interrupt() -> None:
    """SIGTERM ends a command the way Ctrl-C does (its clean-up runs, the kernel is shut down),
    instead of ending the process on the spot."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


if __name__ == "__main__":
    die_with_parent()
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
