"""The Ray of ``sweep --address local`` is the sweep's private one, like a sweep without ``--address``: every Ray
process listens on 127.0.0.1 only and none outlives a SIGKILL of the sweep. ``--address auto`` joins a running
cluster only (Ray's meaning) and, with none running, is refused in one line before anything is created."""

import contextlib
import os
import subprocess
import time

import pytest

from cifar100_helpers.commands import sweep

from .conftest import REPO
from .test_sweep import SWEEP, free_port, loopback, needs_ray, running, survivors


def ray_processes(processes: list) -> list[str]:
    """The names of those of ``processes`` (psutil) still running that are Ray's: its GCS server and raylet, its
    agents and workers (ray::DashboardAgent, ray::IDLE ...) and the Python processes of its own modules."""
    import psutil

    found = []
    for process in running(processes):
        with contextlib.suppress(psutil.NoSuchProcess, FileNotFoundError):
            name, command = process.name(), " ".join(process.cmdline())
            if name in ("gcs_server", "raylet") or name.startswith("ray::") or "/site-packages/ray/" in command:
                found.append(name)
    return found


def listening_sockets(processes: list) -> list[tuple[str, str, int]]:
    """(name, address, port) of every listening socket of ``processes`` (those that end meanwhile are skipped)."""
    import psutil

    sockets = []
    for process in running(processes):
        try:
            name = process.name()
            sockets += [(name, s.laddr.ip, s.laddr.port) for s in process.net_connections("inet")
                        if s.status == psutil.CONN_LISTEN]  # fmt: skip
        except (psutil.NoSuchProcess, FileNotFoundError):  # it ended meanwhile
            continue
    return sockets


@pytest.mark.slow  # a real Ray instance, killed and reaped: make test-slow
def test_sweep_address_local_is_private_listens_on_loopback_and_is_reaped(tmp_path):
    """`--address local` (Ray's own word for "start a new local instance") used to skip both protections: its Ray
    listened on every interface without a token, and its agents lived on about a minute after a SIGKILL."""
    needs_ray()
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "grid"
    args = ["--recipes", "smoke", "--seeds", "0", "--epochs", "1", "--address", "local", "--output", str(out)]
    process = subprocess.Popen([*SWEEP, *args], cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    descendants = []
    try:
        deadline = time.time() + 300
        while not (out / "smoke-seed0" / "run.json").exists():  # Ray is up and its worker has begun the run
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.2)
        time.sleep(2)  # the agents open their ports within a second or two of the raylet
        descendants = psutil.Process(process.pid).children(recursive=True)
        sockets = listening_sockets([psutil.Process(process.pid), *descendants])
        assert {"gcs_server", "raylet"} <= {name for name, _, _ in sockets}, sockets
        assert [s for s in sockets if not loopback(s[1])] == [], sockets
        assert {"gcs_server", "raylet"} <= set(ray_processes(descendants))
        process.kill()
        process.wait()
        assert survivors(descendants) == []  # Ray's processes, the run, its kernel and the reaper
    finally:
        for leftover in running(descendants):
            leftover.kill()
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("address", [None, "", "local"])
def test_no_address_empty_and_local_all_mean_the_private_ray(address, monkeypatch):
    monkeypatch.delenv(sweep.LOCAL_ONLY, raising=False)
    monkeypatch.setattr(sweep, "use_cluster_token", lambda: None)
    sweep.ray_environment(address)
    assert os.environ[sweep.LOCAL_ONLY] == "0"
    assert sweep.private(address) and sweep.cluster(address) is None


def test_an_address_to_join_gets_no_local_only_mode(monkeypatch):
    monkeypatch.delenv(sweep.LOCAL_ONLY, raising=False)
    monkeypatch.setattr(sweep, "use_cluster_token", lambda: None)
    sweep.ray_environment("10.0.0.1:6379")
    assert sweep.LOCAL_ONLY not in os.environ and sweep.cluster("10.0.0.1:6379") == "10.0.0.1:6379"


def auto_sweep(tmp_path, **env) -> subprocess.CompletedProcess:
    """``sweep --address auto`` with Ray's temp folder (where `ray start` records its cluster) empty."""
    clean = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    clean.update(RAY_TMPDIR=str(tmp_path / "ray-tmp"), **env)
    args = ["--recipes", "smoke", "--address", "auto", "--output", str(tmp_path / "s")]
    return subprocess.run([*SWEEP, *args], cwd=REPO, capture_output=True, text=True, timeout=120, env=clean)


def test_address_auto_with_no_cluster_running_is_refused_and_starts_nothing(tmp_path):
    needs_ray()
    done = auto_sweep(tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "error: --address auto joins a running Ray cluster and found none (no RAY_ADDRESS, no `ray start --head` on "
        "this machine): start one with `ray start --head`, give its HOST:PORT, or use --address local (or none) for "
        "a private local Ray.\n"
    )
    assert not (tmp_path / "s").exists()


def test_address_auto_joins_the_cluster_ray_address_names(tmp_path):
    needs_ray()
    address = f"127.0.0.1:{free_port()}"
    done = auto_sweep(tmp_path, RAY_ADDRESS=address)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: Nothing answers at --address {address} (Connection refused)"), done.stderr
    assert not (tmp_path / "s").exists()
