"""The prepared accelerator check (``make gpu-check``): on a machine with a GPU, every recipe's
``bench`` and a short real-data ``transfer`` run, gathered into one JSON with the hardware, so the
first GPU that becomes available yields measured numbers in minutes.

Each part runs in its own process, the GPU probe too: this process never loads TensorFlow, which keeps the GPU
memory it took until its process ends (a TPU, the whole chip), so a bench here would starve the run's kernel."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .. import machine
from ..errors import ConfigError
from ..files import write_atomic
from ..running import manifest

RUN_EPOCHS = 2  # enough to see the epoch time and that accuracy climbs, short enough for minutes


GPU_PROBE = "import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices('GPU') else 3)"


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU, asked in a child process: this one only orchestrates and never loads
    TensorFlow (the first process to load it can hold the accelerator, a TPU until it exits)."""
    done = subprocess.run([sys.executable, "-c", GPU_PROBE], capture_output=True, text=True)
    if done.returncode not in (0, 3):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"TensorFlow failed to start ({last}): check it with python -c 'import tensorflow'.")
    return done.returncode == 0


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cifar100_helpers", *args]


def step(args: list[str], log: Path) -> dict:
    """Run one CLI command, its output to ``log``; return its exit code and wall time."""
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT).returncode
    return {"command": " ".join(args[2:]), "exit_code": code, "wall_seconds": round(time.perf_counter() - started, 1)}


def run(
    output: Path,
    data_args: list[str],
    run_args: list[str] = (),
    recipes: list[str] | None = None,
    run_recipe: str = "transfer",
    epochs: int = RUN_EPOCHS,
    require_gpu: bool = True,
) -> dict:
    """Bench every recipe (or ``recipes``), then run ``run_recipe`` for ``epochs`` through the
    pipeline; write everything to ``output`` (a JSON file; logs and the run directory beside it)."""
    if require_gpu and not has_gpu():
        raise ConfigError("gpu-check measures a GPU and TensorFlow sees none here: run it where nvidia-smi lists one.")
    output = Path(output).resolve()
    folder = output.with_suffix("")
    if folder.exists() or output.exists():
        raise ConfigError(f"{output} or {folder} already exists: choose another --output.")
    folder.mkdir(parents=True)
    result = {"started": manifest.now(), "hardware": machine.describe(), "versions": manifest.package_versions()}

    bench_json = folder / "bench.json"
    bench_args = ["bench", *data_args, "--output", str(bench_json), *(["--recipes", *recipes] if recipes else [])]
    result["bench_step"] = step(command(*bench_args), folder / "bench.log")
    result["bench"] = json.loads(bench_json.read_text())["recipes"] if bench_json.exists() else None
    write_atomic(output, json.dumps(result, indent=2) + "\n")  # the bench survives a failing run

    run_dir = folder / f"{run_recipe}-run"
    args = ["run", "--recipe", run_recipe, "--epochs", str(epochs), "--output", str(run_dir), *data_args, *run_args]
    result["run_step"] = step(command(*args), folder / "run.log")
    for name in ("metrics", "manifest"):
        path = run_dir / ("metrics.json" if name == "metrics" else "run.json")
        result[f"run_{name}"] = json.loads(path.read_text()) if path.exists() else None
    history = run_dir / "history.csv"
    result["run_history"] = history.read_text() if history.exists() else None
    result["ended"] = manifest.now()
    write_atomic(output, json.dumps(result, indent=2) + "\n")
    return result
