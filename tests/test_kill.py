"""A killed `run` takes its notebook kernel with it, whatever the signal, and a resume still works."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cifar100_helpers.running.history import read_history

from .conftest import REPO


def kernel_of(pid: int) -> int | None:
    found = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "cifar100_helpers.running.jupyter_kernel"], capture_output=True, text=True
    )
    return int(found.stdout.split()[0]) if found.stdout.strip() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return not state.startswith("Z")


@pytest.mark.slow  # a smoke run through the pipeline per signal: make test-slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killing_run_alone_takes_its_kernel_with_it(signum, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "cifar100_helpers", "run", "--recipe", "smoke", "--epochs", "3"]
    process = subprocess.Popen([*command, "--output", str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not read_history(out / "history.csv"):  # training has begun in the kernel
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.1)
    kernel = kernel_of(process.pid)
    assert kernel is not None
    os.kill(process.pid, signum)  # the pipeline process only, as `timeout` or a scheduler does
    code = process.wait(timeout=60)
    deadline = time.time() + 20
    while alive(kernel) and time.time() < deadline:
        time.sleep(0.2)
    assert not alive(kernel)
    if signum == signal.SIGTERM:  # ended like Ctrl-C: one line with the real path, run marked interrupted
        assert code == 130
        assert process.stderr.read().strip().splitlines()[-1].endswith(f"--resume {out}.")
        assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
        resumed = subprocess.run(
            [*command[:3], "run", "--resume", str(out)], cwd=REPO, capture_output=True, timeout=600
        )
        assert resumed.returncode == 0
        assert [r["epoch"] for r in read_history(out / "history.csv")] == [1, 2, 3]
