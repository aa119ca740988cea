"""Sweeps on Ray: a grid of ordinary runs, the product of recipes x each ``--set``'s values x seeds.

Each grid point is one ``python -m cifar100_helpers run`` in its own process, so it is exactly an ordinary run
(its own kernel, run.json and report) in a directory under the sweep folder. Plain Ray tasks only decide where
and when each starts: a local Ray with ``--slots`` CPUs, listening on 127.0.0.1 only, by default, or the cluster
at ``--address``; one GPU per run where Ray sees GPUs. ``sweep.json`` holds the grid, the command line and each
run's status, exit code, one-line error and wall time, rewritten as runs finish. ``sweep --resume`` keeps the
completed runs, resumes the partial ones (``run --resume``) and starts the rest. Ray is optional:
``pip install -e .[sweep]``."""

from __future__ import annotations

import ast
import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import Cifar100Error, ConfigError, Interrupted, RunError
from ..files import exclusive, open_lock, read_json, stderr_into, write_atomic, writing
from ..running import leaderboard, manifest, reaper
from ..running.jupyter_kernel import END_WITH_PARENT, terminate_as_interrupt
from ..running.run_dir import SweepDir

RAY_MISSING = "sweep needs Ray: pip install -e .[sweep]"
LOCAL_OBJECT_STORE = 100 * 2**20  # tasks return small dicts only; Ray's default would take 30% of the memory
STOP_GRACE_SECONDS = 120  # after Ctrl-C, how long running runs get to record "interrupted" and end their kernels
CHOSEN_ELSEWHERE = {"recipe": "--recipes", "seed": "--seeds"}  # fields a --set may not sweep
PRIVATE = (None, "", "local")  # --address values that mean the sweep's own Ray (ray.init's "local")
LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode, a node's address is 127.0.0.1
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and an empty SETTINGS frame
GRPC_REPLY_SECONDS = 5  # a gRPC server answers HTTP/2's preface at once; a busy head within this


def require_ray(address: str | None):
    """The ``ray`` module, or the one-line error that says how to install it."""
    ray_environment(address)  # before the import: Ray reads it as it loads
    try:
        import ray
    except ImportError:
        raise Cifar100Error(RAY_MISSING) from None
    return ray


def ray_environment(address: str | None) -> None:
    """What Ray reads from the environment: token authentication as ``ray start`` uses it (use_cluster_token), and
    for the private local Ray (no ``address``, or ``local``) the mode Ray keeps for macOS and Windows, where a
    node's address is 127.0.0.1. Its GCS server, raylet, agents and workers then listen on the loopback interface
    only, where on Linux they would listen on every interface, open to anyone on the network. Processes Ray starts
    inherit both."""
    use_cluster_token()
    if private(address):
        os.environ[LOCAL_ONLY] = "0"


def private(address: str | None) -> bool:
    """Whether ``--address`` asks for the sweep's own local Ray: none given, or Ray's word ``local`` (ray.init's
    "start a new local instance"). That Ray listens on 127.0.0.1 only and dies with the sweep (reaped)."""
    return address in PRIVATE


def cluster(address: str | None) -> str | None:
    """The address of the cluster a ``--address`` joins, None for the sweep's own local Ray. ``auto`` keeps Ray's
    meaning, a cluster already running (the one RAY_ADDRESS names, else the one ``ray start`` last started on this
    machine); with none running it is refused here, in one line, before anything is created."""
    if private(address) or address != "auto":
        return None if private(address) else address
    from ray._private.services import find_bootstrap_address  # reads Ray's ray_current_cluster, as ray.init does

    found = os.environ.get("RAY_ADDRESS") or find_bootstrap_address(None)
    if not found or found in ("auto", *PRIVATE):
        raise RunError("--address auto joins a running Ray cluster and found none (no RAY_ADDRESS, no `ray start "
                       "--head` on this machine): start one with `ray start --head`, give its HOST:PORT, or use "
                       "--address local (or none) for a private local Ray.")  # fmt: skip
    return found


# --- the grid ---------------------------------------------------------------------------------------------------


def split_values(text: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2`` as (KEY, [V1, V2]). Commas inside brackets or quotes belong to one value, so
    ``widths=[8,16],[16,32]`` sweeps two widths."""
    key, sep, values = text.partition("=")
    key = key.strip()
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(values):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(values[start:i].strip())
            start = i + 1
    parts.append(values[start:].strip())
    if not sep or not key or not all(parts):
        empty = " (its KEY is empty)" if sep and not key else ""
        raise ConfigError(
            f"--set expects KEY=VALUE[,VALUE...], got '{text}'{empty} (e.g. --set learning_rate=0.1,0.2)."
        )
    if key in CHOSEN_ELSEWHERE:
        raise ConfigError(f"choose the {key}s of a sweep with {CHOSEN_ELSEWHERE[key]}, not --set {key}=...")
    return key, parts


def literal(value: str):
    """A --set value as the command line's ``run --set`` reads it: a Python literal, else the text."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def run_name(recipe: str, settings: dict[str, str], seed: int) -> str:
    """``cpu-learning_rate=0.1-seed0``: recipe, settings and seed in characters every file system and URL takes."""
    safe = [re.sub(r"[^A-Za-z0-9._+-]+", "_", v).strip("_") or "_" for v in settings.values()]
    return "-".join([recipe, *(f"{k}={v}" for k, v in zip(settings, safe, strict=True)), f"seed{seed}"])


def grid(recipes: list[str], settings: list[tuple[str, list[str]]], seeds: list[int]) -> list[dict]:
    """Every grid point (recipe, one value of each setting, seed), seeds innermost, each with a unique name."""
    keys = [k for k, _ in settings]
    if len(set(keys)) < len(keys):
        raise ConfigError(f"--set names {', '.join(sorted({k for k in keys if keys.count(k) > 1}))} twice: give "
                          "each key once, with all its values (--set KEY=V1,V2).")  # fmt: skip
    points, names = [], set()
    for recipe in dict.fromkeys(recipes):
        for values in itertools.product(*(v for _, v in settings)):
            for seed in dict.fromkeys(seeds):
                chosen = dict(zip(keys, values, strict=True))
                name = base = run_name(recipe, chosen, seed)
                for n in itertools.count(2):
                    if name not in names:
                        break
                    name = f"{base}-{n}"
                names.add(name)
                points.append({"name": name, "recipe": recipe, "settings": chosen, "seed": seed})
    return points


def check_point(point: dict, options: dict) -> None:
    """Refuse, before anything starts, a grid point whose config ``run`` would refuse (unknown keys, values
    out of range, the epoch budget). The data is checked by each run, on the machine that runs it."""
    from ..config import from_parameters

    overrides = {k: literal(v) for k, v in point["settings"].items()}
    verify = False if options["no_verify"] else None
    try:
        from_parameters(point["recipe"], data=options["data"], verify=verify, epochs=options["epochs"],
                        seed=point["seed"], overrides=overrides)  # fmt: skip
    except ConfigError as exc:
        raise type(exc)(f"{point['name']}: {exc}") from None


def run_arguments(point: dict, sweep: SweepDir, options: dict) -> list[str]:
    """The ``run`` command line of one grid point (after ``python -m cifar100_helpers run``)."""
    args = ["--recipe", point["recipe"], "--seed", str(point["seed"]), "--output", str(sweep.run(point["name"]))]
    args += [a for k, v in point["settings"].items() for a in ("--set", f"{k}={v}")]
    args += ["--data", options["data"]] if options["data"] else []
    args += ["--no-verify"] if options["no_verify"] else []
    return args + (["--epochs", str(options["epochs"])] if options["epochs"] else [])


def command_line(recipes, settings, seeds, options, output, slots, address) -> str:
    """The sweep's own command line, in full (defaults written out), for sweep.json."""
    args = ["python", "-m", "cifar100_helpers", "sweep", "--recipes", *recipes, "--seeds", *map(str, seeds)]
    args += [a for k, v in settings for a in ("--set", f"{k}={','.join(v)}")]
    args += ["--data", options["data"]] if options["data"] else []
    args += ["--no-verify"] if options["no_verify"] else []
    args += ["--epochs", str(options["epochs"])] if options["epochs"] else []
    args += ["--output", str(output), "--slots", str(slots)] + (["--address", address] if address else [])
    return shlex.join(args)


# --- sweep.json -------------------------------------------------------------------------------------------------


def save(sweep: SweepDir, record: dict) -> None:
    write_atomic(sweep.manifest, json.dumps(record, indent=2) + "\n")


def read_record(sweep: SweepDir) -> dict:
    fix = "restore it, or start a new sweep with --output NAME"
    record = read_json(sweep.manifest, fix)  # a named pipe, deep nesting: one line (files.read_json)
    if not isinstance(record.get("runs"), list) or not all(isinstance(r, dict) for r in record["runs"]):
        raise RunError(f"{sweep.manifest} is damaged (ValueError: no list of runs): {fix}.")
    return record


def run_manifest(run_dir: str | Path) -> dict:
    """A run's own run.json ({} if it has none yet, or an unreadable one)."""
    try:
        record = json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def reconcile(run: dict) -> None:
    """Bring a run's entry in sweep.json in line with its run directory, which wins over what a killed sweep
    last wrote: a run that completed after its sweep died is completed; one the sweep saw running is
    interrupted (or pending, if it never wrote its run.json)."""
    record = run_manifest(run["directory"])
    if record.get("status") == "completed" and run["status"] != "completed":
        wall = sum(a.get("wall_seconds") or 0 for a in record.get("attempts") or [] if isinstance(a, dict))
        run.update(status="completed", exit_code=0, error=None, wall_seconds=round(max(run["wall_seconds"], wall), 1))
    elif record.get("status") != "completed" and run["status"] in ("running", "completed"):
        run["status"] = "interrupted" if record else "pending"


@contextlib.contextmanager
def locked(sweep: SweepDir):
    """One ``sweep`` process per sweep folder (an exclusive lock, released by the system if it dies)."""
    busy = f"{sweep.root} is in use by {{holder}}: wait for that sweep to finish (or stop it), then sweep --resume."
    with open_lock(sweep.lock) as handle, exclusive(handle, busy, f"sweep pid {os.getpid()}"):
        yield sweep


def unstarted(sweep: SweepDir) -> bool:
    """Whether the folder holds nothing but the lock of a sweep that stopped before its first sweep.json (a full
    disk, a kill): a new sweep may take it, as nothing of the old one is in it."""
    return sweep.root.is_dir() and {p.name for p in sweep.root.iterdir()} <= {sweep.lock.name}


def discard_unstarted(sweep: SweepDir) -> None:
    """Remove the folder a sweep made if it still holds nothing but its lock (its first sweep.json failed)."""
    with contextlib.suppress(OSError):
        if unstarted(sweep):
            shutil.rmtree(sweep.root)


# --- the two commands -------------------------------------------------------------------------------------------


def start(output: Path, recipes: list[str], settings: list[tuple[str, list[str]]], seeds: list[int],
          data: str | None = None, no_verify: bool = False, epochs: int | None = None, slots: int = 1,
          address: str | None = None) -> SweepDir:  # fmt: skip
    """Run the grid into the new folder ``output``: sweep.json, one run directory per grid point, index.html."""
    ray = require_ray(address)
    recipes, seeds = list(dict.fromkeys(recipes)), list(dict.fromkeys(seeds))
    options = {"data": os.path.abspath(Path(data).expanduser()) if data else None, "no_verify": no_verify,
               "epochs": epochs}  # fmt: skip
    points = grid(recipes, settings, seeds)
    for point in points:
        check_point(point, options)
    address = cluster(address)
    check_address(address)
    sweep = SweepDir(output)
    if sweep.root.exists() and not unstarted(sweep):
        raise RunError(f"{sweep.root} already exists and is never overwritten: choose a new --output name, or "
                       f"continue it with sweep --resume {output}.")  # fmt: skip
    try:
        sweep.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"Cannot create {sweep.root} ({exc.strerror}): choose an --output under a writable "
                       "folder.") from None  # fmt: skip
    command = command_line(recipes, settings, seeds, options, sweep.root, slots, address)
    runs = [{**p, "directory": str(sweep.run(p["name"])), "arguments": run_arguments(p, sweep, options),
             "log": str(sweep.log(p["name"])), "status": "pending", "exit_code": None, "error": None,
             "wall_seconds": 0.0, "node": None} for p in points]  # fmt: skip
    grid_record = {"recipes": recipes, "settings": dict(settings), "seeds": seeds}
    record = {"command": command, "grid": grid_record, "options": options, "status": "pending",
              "created": manifest.now(), "attempts": [], "runs": runs}  # fmt: skip
    with locked(sweep):
        try:
            with writing("then run the same command again", sweep.manifest):
                save(sweep, record)
        except RunError:
            discard_unstarted(sweep)
            raise
        return execute(ray, sweep, record, command, slots, address)


def resume(path: Path, slots: int = 1, address: str | None = None) -> SweepDir:
    """Continue a sweep: completed runs are kept, partial ones resumed with ``run --resume``, the rest started."""
    ray = require_ray(address)
    sweep = SweepDir(path)
    if unstarted(sweep):
        raise RunError(f"{sweep.root} holds no sweep.json, only the lock of a sweep that stopped before writing it: "
                       "start that sweep again with the same --output (it takes this folder).")  # fmt: skip
    if not sweep.manifest.exists():
        raise RunError(f"{sweep.root} is not a sweep folder (no sweep.json): check the --resume path.")
    address = cluster(address)
    check_address(address)
    command = shlex.join(["python", "-m", "cifar100_helpers", "sweep", "--resume", str(sweep.root), "--slots",
                          str(slots)] + (["--address", address] if address else []))  # fmt: skip
    with locked(sweep):
        return execute(ray, sweep, read_record(sweep), command, slots, address)


def execute(ray, sweep: SweepDir, record: dict, command: str, slots: int, address: str | None) -> SweepDir:
    """Run every grid point not yet completed on Ray, keeping sweep.json current; then refresh index.html.
    Failed runs raise RunError at the end (the others still ran); Ctrl-C or SIGTERM raise Interrupted; a disk that
    fills or turns read-only under sweep.json, one line that says to resume once it is fixed."""
    with writing(f"then continue with sweep --resume {sweep.root}", sweep.manifest):
        return execute_grid(ray, sweep, record, command, slots, address)


def execute_grid(ray, sweep: SweepDir, record: dict, command: str, slots: int, address: str | None) -> SweepDir:
    runs = record["runs"]
    for run in runs:  # what the run directories say wins over what a killed sweep last wrote
        reconcile(run)
    todo = [r for r in runs if r["status"] != "completed"]
    attempt = {"started": manifest.now(), "command": command, "slots": slots, "address": address,
               "kept": len(runs) - len(todo)}  # fmt: skip
    record["attempts"].append(attempt)
    record["status"] = "running"
    save(sweep, record)
    kept = f"; {attempt['kept']} completed run(s) kept" if attempt["kept"] else ""
    say(f"sweep {sweep.root}: {len(todo)} of {len(runs)} run(s) to do, at most {slots} at a time{kept}")
    try:
        if todo:
            with ray_session(ray, slots, address, sweep) as gpus:
                run_all(ray, sweep, record, todo, slots, gpus)
    except KeyboardInterrupt:
        end_attempt(sweep, record, attempt, "interrupted")
        raise Interrupted(f"completed runs are kept; continue with sweep --resume {sweep.root}") from None
    except RunError as exc:  # Ray could not start, or the cluster could not be joined
        end_attempt(sweep, record, attempt, "failed", str(exc))
        raise
    failed = [r for r in runs if r["status"] != "completed"]
    end_attempt(sweep, record, attempt, "failed" if failed else "completed")
    if failed:
        raise RunError(f"{len(failed)} of {len(runs)} runs failed (each named above and in {sweep.manifest}): fix "
                       f"the cause, then sweep --resume {sweep.root} runs them again.")  # fmt: skip
    return sweep


def end_attempt(sweep: SweepDir, record: dict, attempt: dict, status: str, error: str | None = None) -> None:
    """Record how this attempt, and so the sweep, ended (with the one-line error that ended it), then refresh
    index.html."""
    attempt.update(ended=manifest.now(), status=status, **({"error": error} if error else {}))
    record["status"] = status
    save(sweep, record)
    refresh_index(sweep)


def check_address(address: str | None) -> None:
    """Fail in seconds, not after Ray's many minutes of retries, when ``--address`` HOST:PORT (a head's GCS) or
    ray://HOST:PORT (its Ray Client server) is not a Ray server: nothing listens there, or what answers there does
    not speak gRPC, as every Ray server does."""
    scheme, _, rest = (address or "").rpartition("://")
    host, sep, port = rest.rpartition(":")
    if scheme not in ("", "ray") or not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as connection:
            grpc = speaks_grpc(connection)
    except OSError as exc:
        flag = "--ray-client-server-port" if scheme else "--port"
        fix = f"start the head there with `ray start --head {flag}={port}`, or leave --address out for a local Ray"
        raise RunError(f"Nothing answers at --address {address} ({exc.strerror or exc}): {fix}.") from None
    if not grpc:
        raise RunError(f"What answers at --address {address} is not a Ray head (it does not speak gRPC): give the "
                       "GCS port that `ray start --head` printed (6379 by default), or ray://HOST:10001 for its Ray "
                       "Client server.")  # fmt: skip


def speaks_grpc(connection: socket.socket) -> bool:
    """Whether the server at the other end answers HTTP/2's connection preface with a SETTINGS frame, as every gRPC
    server does at once. A cluster with TLS (RAY_USE_TLS=1) wants a TLS handshake first: it is taken on trust."""
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return True
    connection.settimeout(GRPC_REPLY_SECONDS)
    try:
        connection.sendall(HTTP2_PREFACE)
        frame = connection.recv(9)  # a frame header: length (3 bytes), type (SETTINGS is 4), flags, stream
    except OSError:  # no reply in time, or the connection reset
        return False
    return len(frame) > 3 and frame[3] == 4


@contextlib.contextmanager
def ray_session(ray, slots: int, address: str | None, sweep: SweepDir):
    """Ray for the sweep's lifetime: a private local instance with ``slots`` CPUs (never someone else's
    cluster by accident), which ends with this process however it ends (reaped), or the running cluster at
    ``address``. Yields whether the cluster has GPUs. What Ray prints while it starts or joins (its C++ retries
    above all) goes to ray.log in the sweep folder."""
    with reaped(sweep.ray_log) if private(address) else contextlib.nullcontext():
        try:
            with stderr_into(str(sweep.ray_log)):
                if not private(address):
                    ray.init(address=address, log_to_driver=False, logging_level="WARNING")
                else:
                    ray.init(address="local", num_cpus=slots, include_dashboard=False, log_to_driver=False,
                             logging_level="WARNING", object_store_memory=LOCAL_OBJECT_STORE)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError, TimeoutError, ray.exceptions.RayError) as exc:
            where = "start a local Ray" if private(address) else f"join the Ray cluster at {address}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"Could not {where} ({first}; Ray's messages are in {sweep.ray_log}): check the cluster "
                           f"(same Ray version, its token in ~/.ray/auth_token), then continue with sweep --resume "
                           f"{sweep.root}.") from None  # fmt: skip
        terminate_as_interrupt()  # ray.init installs its own SIGTERM handler; SIGTERM must stop the sweep like Ctrl-C
        try:
            yield ray.cluster_resources().get("GPU", 0) > 0
        finally:
            ray.shutdown()


@contextlib.contextmanager
def reaped(log: Path):
    """Whatever this process starts from now on (the local Ray, its workers, their runs) dies with it, even when it
    is killed with SIGKILL: reaper.py watches, in a session of its own so that Ctrl-C leaves it be, and writes any
    trouble of its own to ``log`` (Linux only)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    command = [sys.executable, "-I", reaper.__file__, str(os.getpid())]  # by path: no TensorFlow to import
    with open(log, "ab") as errors:
        watcher = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                                   start_new_session=True)  # fmt: skip
    try:
        yield
    finally:
        watcher.stdin.close()  # as the system does if this process is killed: the watcher ends what is left
        watcher.wait()


def use_cluster_token() -> None:
    """Use token authentication as ``ray start`` does, so that ``--address`` joins a cluster that has it: since
    Ray 2.59 ``ray start`` turns it on when a token exists (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH``) and RAY_AUTH_MODE is unset, while ``ray.init(address=...)`` never does by itself. A
    cluster without authentication accepts a token too, and a local Ray uses the token anyway."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if "RAY_AUTH_MODE" not in os.environ and (token or (Path.home() / ".ray" / "auth_token").exists()):
        os.environ["RAY_AUTH_MODE"] = "token"


def run_all(ray, sweep: SweepDir, record: dict, todo: list[dict], slots: int, gpus: bool) -> None:
    """At most ``slots`` runs at a time (Ray's pattern of limiting pending tasks with ``ray.wait``), each
    recorded in sweep.json as it starts and ends. On Ctrl-C the running ones are cancelled: each ends its run
    as Ctrl-C would (marked interrupted, kernel shut down) before Ray shuts down."""
    task = remote_runner(ray, gpus)
    queue, flying = list(todo), {}
    omp = os.environ.get("OMP_NUM_THREADS")
    try:
        while queue or flying:
            while queue and len(flying) < slots:
                run = queue.pop(0)
                flying[task.remote(run["directory"], run["arguments"], run["log"], omp)] = run
                run.update(status="running", exit_code=None, error=None)
                save(sweep, record)
                say(f"started {run['name']}")
            ready, _ = ray.wait(list(flying), num_returns=1, timeout=1.0)  # returns to Python: Ctrl-C is seen
            for ref in ready:
                finish(ray, ref, flying.pop(ref))
                save(sweep, record)
    except KeyboardInterrupt:
        say(f"stopping: {len(flying)} running run(s) end as after Ctrl-C", file=sys.stderr)
        for ref in flying:
            ray.cancel(ref)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
            while flying and time.monotonic() < deadline:
                ready, _ = ray.wait(list(flying), num_returns=len(flying), timeout=1.0)
                for ref in ready:
                    finish(ray, ref, flying.pop(ref), quiet=True)
        for run in flying.values():
            run["status"] = "interrupted"
        save(sweep, record)
        raise


def finish(ray, ref, run: dict, quiet: bool = False) -> None:
    """Record how one run's task ended: completed, failed (with the run's one-line error) or interrupted."""
    try:
        result = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        run["status"] = "interrupted"
        return
    except ray.exceptions.RayError as exc:  # the worker or its node was lost
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        result = {"exit_code": None, "error": f"Ray lost the run ({type(exc).__name__}: {first})",
                  "wall_seconds": 0.0, "node": None}  # fmt: skip
    code = result["exit_code"]
    run["status"] = "completed" if code == 0 else "interrupted" if code == 130 else "failed"
    run.update(exit_code=code, error=result["error"], node=result["node"])
    run["wall_seconds"] = round(run.get("wall_seconds", 0.0) + result["wall_seconds"], 1)
    if not quiet:
        where = f" on {result['node']}" if result["node"] else ""
        error = f": {result['error']}" if result["error"] else ""
        say(f"{run['status']} {run['name']} ({result['wall_seconds']:.0f} s{where}){error}")


def remote_runner(ray, gpus: bool):
    """The Ray task that runs one grid point on the node Ray picks (one CPU, one GPU where the cluster has GPUs;
    ``--slots`` caps how many run at once). Its body uses only the standard library and Ray, so Ray ships it by
    value and a worker never imports this package or TensorFlow: the run's own process does."""

    def execute_point(run_dir: str, arguments: list[str], log: str, omp_threads: str | None) -> dict:
        import json
        import os
        import shlex
        import shutil
        import signal
        import socket
        import subprocess
        import sys
        import time
        from pathlib import Path

        import ray

        node = f"{socket.gethostname()} (Ray node {ray.get_runtime_context().get_node_id()[:8]})"
        root, started = Path(run_dir), time.perf_counter()
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # inherited from a sweep started in the background
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Ray's cancel needs it (interrupt_main)
        try:
            status = json.loads((root / "run.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            status = None
        if status == "completed":  # a retried task whose run had finished
            return {"exit_code": 0, "error": None, "wall_seconds": 0.0, "node": node}
        if (root / "config.json").exists() and (root / "run.json").exists():
            arguments = ["--resume", run_dir]
        elif root.is_dir() and not any(p.is_file() for p in root.rglob("*")):
            shutil.rmtree(root)  # created, then stopped before its first file: start it afresh
        env = {**os.environ, END_WITH_PARENT: str(os.getpid())}  # the run ends if this worker dies
        env.pop("OMP_NUM_THREADS", None)  # Ray sets 1 in its workers; the run sizes its own thread pools
        env.update({"OMP_NUM_THREADS": omp_threads} if omp_threads else {})
        command = [sys.executable, "-m", "cifar100_helpers", "run", *arguments]
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            offset = out.tell()
            out.write(f"[{time.strftime('%Y-%m-%dT%H:%M:%S')}] on {node}: {shlex.join(command)}\n".encode())
            out.flush()
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                while child.poll() is None:  # polled, not waited: Ray's cancel arrives as KeyboardInterrupt here
                    time.sleep(0.5)
            except KeyboardInterrupt:
                child.send_signal(signal.SIGTERM)  # the run ends as after Ctrl-C, taking its kernel with it
                try:
                    child.wait(timeout=110)
                except subprocess.TimeoutExpired:
                    child.kill()
                raise
        with open(log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        code = child.returncode
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        error = errors[-1] if errors else None
        if code and not error:
            how = f"ended by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            error = f"the run {how}; its output is in {log}"
        wall = round(time.perf_counter() - started, 1)
        return {"exit_code": code, "error": error if code else None, "wall_seconds": wall, "node": node}

    # SPREAD: on a cluster, runs go to different machines before any machine takes a second one
    options = {"num_cpus": 1, "num_gpus": 1 if gpus else 0, "max_retries": 0, "scheduling_strategy": "SPREAD"}
    return ray.remote(**options)(execute_point)


def refresh_index(sweep: SweepDir) -> None:
    """The sweep folder's index.html (runs, and each setting's mean ± std over seeds), as ``run`` refreshes
    ``outputs/index.html``."""
    try:
        leaderboard.write_index(sweep.root, leaderboard.collect(sweep.root))
    except OSError as exc:
        print(f"warning: could not refresh {sweep.index} ({exc.strerror})", file=sys.stderr)


def summary(sweep: SweepDir) -> str:
    """One line per setting: n, mean ± std of top-1 (with TTA) and of training time; then where to look."""
    groups = leaderboard.group_runs(leaderboard.collect(sweep.root))
    mean_std = leaderboard.mean_std
    lines = [f"{g['group']}: n={g['n']}, top-1 {mean_std(g['top1'])}, best with TTA {mean_std(g['best_top1'])}, "
             f"{mean_std(g['training_minutes'], percent=False)} training min{'' if g['ranked'] else ' (not ranked)'}"
             for g in groups]  # fmt: skip
    lines += [f"- {n}" for n in leaderboard.spread_notes(groups)]
    return "\n".join(lines + [f"Sweep: {sweep.manifest}", f"Index: {sweep.index}",
                              f"Leaderboard: python -m cifar100_helpers compare --outputs {sweep.root}"])  # fmt: skip


def say(line: str, file=None) -> None:
    print(f"[{manifest.now()}] {line}", file=file or sys.stdout, flush=True)
