"""Sweeps on Ray: a 2 x 2 smoke grid on a local Ray (which listens on 127.0.0.1 only), a sweep killed and resumed,
a sweep killed with SIGKILL that leaves no process behind, a sweep on a Ray head started with ``ray start``, and the
one-line errors (Ray missing, a bad grid, an --address that is no Ray head, a failed join, a run that fails)."""

import contextlib
import fcntl
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar100_helpers.commands import cli, sweep
from cifar100_helpers.errors import ConfigError
from cifar100_helpers.running import leaderboard
from cifar100_helpers.running.run_dir import SweepDir

from .conftest import REPO

SWEEP = [sys.executable, "-m", "cifar100_helpers", "sweep"]
GRID = ["--recipes", "smoke", "--seeds", "0", "1", "--set", "learning_rate=0.05,0.1", "--epochs", "1", "--slots", "2"]
NAMES = [f"smoke-learning_rate={rate}-seed{seed}" for rate in ("0.05", "0.1") for seed in (0, 1)]


def needs_ray():
    return pytest.importorskip("ray", reason="sweeps need Ray: pip install -e .[sweep]")


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def assert_four_completed(out: Path) -> None:
    record = json.loads((out / "sweep.json").read_text())
    assert record["status"] == "completed" and [r["name"] for r in record["runs"]] == NAMES
    assert all(r["status"] == "completed" and r["exit_code"] == 0 and r["wall_seconds"] > 0 for r in record["runs"])
    assert all(run_json(out / name)["status"] == "completed" for name in NAMES)
    groups = leaderboard.group_runs(leaderboard.collect(out))
    assert sorted((g["group"], g["n"]) for g in groups) == [
        ("smoke learning_rate=0.05", 2), ("smoke learning_rate=0.1", 2),
    ]  # fmt: skip
    assert all(g["seeds"] == [0, 1] for g in groups) and "Across seeds" in (out / "index.html").read_text()


def test_sweep_without_ray_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sweep, "ray_environment", lambda address: None)  # leave this process's environment alone
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert cli.main(["sweep", "--recipes", "smoke", "--output", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip() == "error: sweep needs Ray: pip install -e .[sweep]"
    assert not (tmp_path / "s").exists()


def test_grid_names_and_values():
    assert sweep.split_values("widths=[8,16],[16, 32]") == ("widths", ["[8,16]", "[16, 32]"])
    assert sweep.split_values("backbone='a,b',EfficientNetV2B0") == ("backbone", ["'a,b'", "EfficientNetV2B0"])
    points = sweep.grid(["cpu", "scratch"], [("learning_rate", ["0.1", "0.2"]), ("widths", ["[8,16]"])], [0, 1, 2])
    assert len(points) == 12 and points[0]["name"] == "cpu-learning_rate=0.1-widths=8_16-seed0"
    assert [p["seed"] for p in points[:3]] == [0, 1, 2] and points[-1]["recipe"] == "scratch"
    twins = sweep.grid(["cpu"], [("widths", ["[8,16]", "(8,16)"])], [0])
    assert [p["name"] for p in twins] == ["cpu-widths=8_16-seed0", "cpu-widths=8_16-seed0-2"]
    for bad, match in [("learning_rate", "KEY=VALUE"), ("lr=0.1,", "KEY=VALUE"), ("seed=1,2", "--seeds")]:
        with pytest.raises(ConfigError, match=match):
            sweep.split_values(bad)


def test_bad_grid_is_refused_before_anything_starts(capsys, tmp_path, monkeypatch):
    needs_ray()
    monkeypatch.setattr(sweep, "ray_environment", lambda address: None)  # leave this process's environment alone
    out = tmp_path / "s"
    cases = [
        (["--recipes", "smoke", "--set", "learning_rat=0.1,0.2"], "smoke-learning_rat=0.1-seed0: Unknown parameter"),
        (["--recipes", "smoke", "--epochs", "12"], "smoke-seed0: epochs=12 breaks the study's 10-epoch budget"),
        (["--recipes", "smoke", "--set", "lr=1", "--set", "lr=2"], "--set names lr twice"),
        (["--seeds", "1"], "sweep needs --recipes"),
        (["--resume", str(out), "--seeds", "1"], "so --seeds would be ignored"),
        (["--resume", str(out)], "is not a sweep folder (no sweep.json)"),
        (["--recipes", "smoke", "--address", f"127.0.0.1:{free_port()}"], "Nothing answers at --address 127.0.0.1:"),
    ]
    for args, message in cases:
        assert cli.main(["sweep", *args, *(["--output", str(out)] if "--resume" not in args else [])]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


LISTENING = """
import json, sys
import psutil
from cifar100_helpers.commands import sweep
from cifar100_helpers.running.run_dir import SweepDir

ray = sweep.require_ray(None)
with sweep.ray_session(ray, 1, None, SweepDir(sys.argv[1])):
    ray.get(ray.remote(lambda: 0).remote())  # a worker too
    sockets = []
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        for socket in process.net_connections("inet"):
            if socket.status == psutil.CONN_LISTEN:
                sockets.append((process.name(), socket.laddr.ip, socket.laddr.port))
print(json.dumps(sockets))
"""


def loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def test_a_local_ray_listens_on_the_loopback_interface_only(tmp_path):
    """The local Ray of a sweep, started as the sweep starts it: its GCS server, raylet, agents, the driver and a
    worker listen on 127.0.0.1 only, never on every interface (0.0.0.0, ::) or the machine's network address."""
    needs_ray()
    pytest.importorskip("psutil")
    done = subprocess.run([sys.executable, "-c", LISTENING, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    sockets = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"gcs_server", "raylet"} <= {name for name, _, _ in sockets}, sockets
    assert [s for s in sockets if not loopback(s[1])] == [], sockets


def test_an_address_that_is_no_ray_head_fails_in_seconds_with_one_line(capfd, tmp_path, monkeypatch):
    """Ray would retry for minutes (a port that takes TCP but is no GCS: 20 tries of 40 s each; ray://: 30 s),
    printing its C++ retries; the sweep checks the address first and says what to give instead."""
    needs_ray()
    monkeypatch.setattr(sweep, "ray_environment", lambda address: None)  # leave this process's environment alone
    out = tmp_path / "s"
    with socket.socket() as silent:  # takes TCP connections and never answers, as many a non-Ray service does
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        not_ray, nobody = f"127.0.0.1:{silent.getsockname()[1]}", f"ray://127.0.0.1:{free_port()}"
        for address, message in [
            (not_ray, f"What answers at --address {not_ray} is not a Ray head (it does not speak gRPC): give the GCS "
             "port that `ray start --head` printed (6379 by default), or ray://HOST:10001 for its Ray Client server."),
            (nobody, f"Nothing answers at --address {nobody} (Connection refused): start the head there with `ray "
             f"start --head --ray-client-server-port={nobody.rpartition(':')[2]}`, or leave --address out for a "
             "local Ray."),
        ]:  # fmt: skip
            started = time.monotonic()
            assert cli.main(["sweep", "--recipes", "smoke", "--address", address, "--output", str(out)]) == 2
            assert time.monotonic() - started < sweep.GRPC_REPLY_SECONDS + 5
            assert capfd.readouterr().err == f"error: {message}\n"
    assert not out.exists()


def test_a_failed_join_is_recorded_and_ray_s_own_lines_stay_in_ray_log(capfd, tmp_path, monkeypatch):
    """When ray.init fails after all (a head of another Ray version, a wrong token), the terminal gets one line that
    names ray.log, where Ray's C++ lines went, and sweep.json says failed, with the error, for --resume to go on."""
    ray = needs_ray()
    monkeypatch.setattr(sweep, "ray_environment", lambda address: None)  # leave this process's environment alone
    monkeypatch.setattr(sweep, "check_address", lambda address: None)  # it answers as a GCS would

    def init(**options):
        os.write(2, b"[2026-01-01 00:00:00,000 W 1 1] gcs_client.cc:210: Failed to get cluster ID from GCS server\n")
        raise ConnectionError("Failed to connect to GCS\nmore detail")

    monkeypatch.setattr(ray, "init", init)
    layout = SweepDir(tmp_path / "s")
    assert cli.main(["sweep", "--recipes", "smoke", "--address", "10.0.0.1:6379", "--output", str(layout.root)]) == 2
    error = (f"Could not join the Ray cluster at 10.0.0.1:6379 (Failed to connect to GCS; Ray's messages are in "
             f"{layout.ray_log}): check the cluster (same Ray version, its token in ~/.ray/auth_token), then continue "
             f"with sweep --resume {layout.root}.")  # fmt: skip
    assert capfd.readouterr().err == f"error: {error}\n"
    assert "gcs_client.cc:210: Failed to get cluster ID" in layout.ray_log.read_text()
    record = json.loads(layout.manifest.read_text())
    assert record["status"] == "failed" and [r["status"] for r in record["runs"]] == ["pending"]
    assert record["attempts"][-1]["status"] == "failed" and record["attempts"][-1]["error"] == error


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    needs_ray()
    out = tmp_path_factory.mktemp("sweep") / "grid"
    done = subprocess.run([*SWEEP, *GRID, "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


@pytest.mark.slow  # make test-slow: heavy
def test_two_by_two_sweep_on_a_local_ray(two_by_two):
    out, stdout = two_by_two
    assert_four_completed(out)
    record = json.loads((out / "sweep.json").read_text())
    assert record["grid"] == {"recipes": ["smoke"], "settings": {"learning_rate": ["0.05", "0.1"]}, "seeds": [0, 1]}
    assert record["command"].startswith("python -m cifar100_helpers sweep --recipes smoke --seeds 0 1 --set ")
    first = record["runs"][0]
    assert first["arguments"][:4] == ["--recipe", "smoke", "--seed", "0"] and "learning_rate=0.05" in first["arguments"]
    config = run_json(out / NAMES[1])["config"]
    assert config["learning_rate"] == 0.05 and config["seed"] == 1
    assert Path(first["log"]).read_text().count("Report: ") == 1
    assert "smoke learning_rate=0.05: n=2" in stdout and f"Index: {out / 'index.html'}" in stdout


def lock_free(run: Path) -> bool:
    """Whether no process holds the run's lock any more (a killed sweep's runs end within seconds)."""
    if not (run / "run.lock").exists():
        return True
    with open(run / "run.lock") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def attempted(run: Path) -> bool:
    """Whether the run has recorded its first attempt. Its run.json (written atomically) holds ``attempts: []`` from
    the moment the run is created; a run killed before its attempt is recorded resumes as its first attempt."""
    return (run / "run.json").exists() and bool(run_json(run)["attempts"])


@pytest.mark.slow
def test_killed_sweep_resumes_without_rerunning_finished_runs(tmp_path):
    needs_ray()
    out = tmp_path / "grid"
    process = subprocess.Popen([*SWEEP, *GRID, "--output", str(out)], cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 600
    try:
        while True:  # until the sweep has recorded its first completed run and the next run has begun
            assert process.poll() is None and time.time() < deadline
            runs = json.loads((out / "sweep.json").read_text())["runs"] if (out / "sweep.json").exists() else []
            finished = [r["name"] for r in runs if r["status"] == "completed"]
            partial = [r["name"] for r in runs[2:] if attempted(Path(r["directory"]))]
            if finished and partial:
                break
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the sweep, its Ray head and everything else in its group
        process.wait()
    attempts = run_json(out / finished[0])["attempts"]
    deadline = time.time() + 120
    while not all(lock_free(out / name) for name in NAMES):  # the runs in flight end as their worker died
        assert time.time() < deadline
        time.sleep(0.5)
    resumed = subprocess.run([*SWEEP, "--resume", str(out), "--slots", "2"], cwd=REPO, capture_output=True, text=True,
                             timeout=900)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_four_completed(out)
    assert run_json(out / finished[0])["attempts"] == attempts  # kept, not run again
    assert len(run_json(out / partial[0])["attempts"]) == 2  # resumed with run --resume
    record = json.loads((out / "sweep.json").read_text())
    assert record["attempts"][-1]["kept"] >= 1 and record["attempts"][-1]["command"].endswith("--slots 2")


def survivors(processes: list, seconds: float = 20) -> list[str]:
    """Wait up to ``seconds`` for ``processes`` (psutil) to end, as a killed process takes a moment to; then the pid and
    command line of each still running. The reaper ends them within a second or two even on a loaded 2-core machine;
    without it Ray's agents linger about a minute, so 20 s tells the two apart."""
    import psutil

    deadline = time.monotonic() + seconds
    while running(processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    named = []
    for process in running(processes):
        with contextlib.suppress(psutil.NoSuchProcess, FileNotFoundError):
            named.append(f"{process.pid}: {' '.join(process.cmdline())}")
    return named


def running(processes: list) -> list:
    """Those of ``processes`` (psutil) still running: not ended, not a zombie waiting for its parent to reap it."""
    import psutil

    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def names(processes: list) -> set[str]:
    """The names of those of ``processes`` still running; one that ends while being read is left out (psutil can
    raise FileNotFoundError for /proc/PID/stat then, not only NoSuchProcess)."""
    import psutil

    found = set()
    for process in running(processes):
        with contextlib.suppress(psutil.NoSuchProcess, FileNotFoundError):
            found.add(process.name())
    return found


def test_nothing_outlives_a_sweep_killed_with_sigkill(tmp_path):
    """SIGKILL gives the sweep no chance to shut Ray down: its Ray processes (GCS server, raylet, dashboard and
    runtime-env agents, workers), its runs and their kernels must all end within seconds anyway."""
    needs_ray()
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "grid"
    args = ["--recipes", "smoke", "--seeds", "0", "1", "--epochs", "1", "--slots", "2", "--output", str(out)]
    process = subprocess.Popen([*SWEEP, *args], cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    descendants = []
    try:
        deadline = time.time() + 300
        while not all((out / f"smoke-seed{n}" / "run.json").exists() for n in (0, 1)):  # both runs have begun
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.2)
        descendants = psutil.Process(process.pid).children(recursive=True)
        assert {"gcs_server", "raylet", "ray::DashboardAgent"} <= names(descendants)
        process.kill()
        process.wait()
        assert survivors(descendants) == []
    finally:
        for leftover in running(descendants):
            leftover.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ray_start(*args: str) -> subprocess.Popen:
    """A Ray node in the foreground (--block) as its own process group, stopped by :func:`ray_stop` (not
    `ray stop`, which would stop every Ray on the machine). Token authentication as a cluster of Ray 2.59+ has."""
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    return subprocess.Popen([ray, "start", *args, "--num-cpus=1", "--block"], start_new_session=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def ray_stop(node: subprocess.Popen) -> None:
    os.killpg(node.pid, signal.SIGTERM)
    try:
        node.wait(timeout=20)
    except subprocess.TimeoutExpired:  # its clean shutdown can take a minute; nothing here needs it
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


@pytest.mark.slow
def test_sweep_spreads_over_a_two_node_cluster_started_with_ray_start(tmp_path):
    """Two Ray nodes on this machine stand in for two machines: a head (`ray start --head`) and a node that
    joins it (`ray start --address`), one CPU each. The sweep joins with --address and each run lands on its
    own node."""
    needs_ray()
    port = free_port()
    nodes = [ray_start("--head", f"--port={port}", "--include-dashboard=false")]
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not listening(port):
            time.sleep(1)
        nodes.append(ray_start(f"--address={address}"))
        time.sleep(10)  # the second node registers with the head
        out = tmp_path / "joined"
        args = ["--recipes", "smoke", "--seeds", "0", "1", "--epochs", "1", "--address", address, "--slots", "2",
                "--output", str(out)]  # fmt: skip
        done = subprocess.run([*SWEEP, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        record = json.loads((out / "sweep.json").read_text())
        assert record["attempts"][0]["address"] == address
        assert [r["status"] for r in record["runs"]] == ["completed", "completed"]
        assert len({r["node"] for r in record["runs"]}) == 2, record["runs"]  # one run on each node
        assert all(run_json(out / f"smoke-seed{n}")["status"] == "completed" for n in (0, 1))
    finally:
        for node in reversed(nodes):
            ray_stop(node)


def test_sweep_folder_layout(tmp_path):
    layout = SweepDir(tmp_path / "s")
    assert layout.manifest.name == "sweep.json" and layout.log("a").parent.name == "logs"


def test_a_failed_run_is_recorded_with_its_one_line_error_and_the_rest_go_on(tmp_path):
    needs_ray()
    out = tmp_path / "nodata"
    args = ["--recipes", "cpu", "--seeds", "0", "1", "--data", str(tmp_path / "missing.tar.gz"), "--output", str(out)]
    done = subprocess.run([*SWEEP, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: 2 of 2 runs failed (each named above and in {out / 'sweep.json'}): fix the cause, then sweep "
        f"--resume {out} runs them again."
    )
    record = json.loads((out / "sweep.json").read_text())
    assert record["status"] == "failed" and [r["status"] for r in record["runs"]] == ["failed", "failed"]
    for run in record["runs"]:  # one slot: the second ran after the first had failed
        assert run["exit_code"] == 2 and run["error"].startswith(f"CIFAR-100 data not found at {tmp_path}")
        assert f"failed {run['name']} (" in done.stdout
