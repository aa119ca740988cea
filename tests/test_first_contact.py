"""First contact, rehearsed where users start: a Linux box whose NVIDIA GPU TensorFlow cannot use (plain
`pip install tensorflow` has no CUDA libraries) and a CPU without bfloat16. Each runs the user's own command
unchanged; only the outside world is faked: `nvidia-smi` on PATH, the CPU's flags (/proc/cpuinfo, bind-mounted in
a private mount namespace) and oneDNN's ISA cap."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from cifar100_helpers.running import manifest

from .conftest import REPO

FAKE_GPU = "NVIDIA A100-SXM4-40GB"


@pytest.fixture
def fake_nvidia_smi(tmp_path):
    """An `nvidia-smi` that lists a GPU, first on PATH: the driver is there, TensorFlow's CUDA libraries are not."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "nvidia-smi").write_text(f'#!/bin/sh\necho "{FAKE_GPU}"\n')
    (folder / "nvidia-smi").chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_a_gpu_tensorflow_cannot_use_stops_auto_at_once(fake_nvidia_smi, tmp_path):
    started = time.perf_counter()
    command = [sys.executable, "-m", "cifar100_helpers", "run", "--recipe", "auto", "--output", str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, env=fake_nvidia_smi, timeout=300)
    assert done.returncode == 2 and not (tmp_path / "run").exists()
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: nvidia-smi lists {FAKE_GPU} but TensorFlow finds no GPU")
    assert "pip install 'tensorflow[and-cuda]'" in line and "--recipe cpu" in line
    assert time.perf_counter() - started < 120  # one TensorFlow start in a child process, no training


def test_make_setup_installs_the_cuda_build_where_nvidia_smi_lists_a_gpu(fake_nvidia_smi):
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    dry = ["make", "-n", "-B", "setup"]  # what it would run, forced as on a fresh machine
    with_gpu = subprocess.run(dry, capture_output=True, text=True, cwd=REPO, env=fake_nvidia_smi).stdout
    assert '-e ".[test,sweep,export,gpu]"' in with_gpu
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (p and os.path.exists(
        os.path.join(p, "nvidia-smi"))))  # fmt: skip
    without = subprocess.run(dry, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PATH": path}).stdout
    assert '-e ".[test,sweep,export]"' in without


def test_the_gpu_extra_is_tensorflow_with_cuda_in_the_supported_range():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    tensorflow = next(d for d in project["dependencies"] if d.startswith("tensorflow>="))
    assert project["optional-dependencies"]["gpu"] == [tensorflow.replace("tensorflow", "tensorflow[and-cuda]", 1)]


def can_fake_cpuinfo() -> bool:
    probe = ["unshare", "-m", "sh", "-c", "mount --bind /dev/null /proc/cpuinfo"]
    return bool(shutil.which("unshare")) and subprocess.run(probe, capture_output=True).returncode == 0


def with_cpu(flags: str, command: list[str], env: dict, folder) -> subprocess.CompletedProcess:
    """Run ``command`` on a CPU whose /proc/cpuinfo lists ``flags`` (in a private mount namespace)."""
    cpuinfo = folder / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Rehearsed CPU\nflags\t\t: {flags}\n\n")
    script = f'mount --bind "{cpuinfo}" /proc/cpuinfo && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *command], capture_output=True, text=True,
                          env=env, cwd=folder, timeout=900)  # fmt: skip


@pytest.mark.slow  # a smoke run through the pipeline per case
@pytest.mark.parametrize(
    "flags, env",
    [
        ("fpu sse2 avx2 avx512f avx512_bf16", {"ONEDNN_MAX_CPU_ISA": "AVX2"}),  # bf16 listed, oneDNN capped
        ("fpu sse2 avx2 avx512f avx512_bf16 amx_bf16", {"TF_ENABLE_ONEDNN_OPTS": "0"}),  # oneDNN off
        ("fpu sse2 avx2", {}),  # a laptop-class CPU
    ],
    ids=["onednn-capped-at-avx2", "onednn-off", "avx2-only"],
)
def test_a_cpu_without_native_bfloat16_trains_in_float32(flags, env, tmp_path):
    if not can_fake_cpuinfo():
        pytest.skip("cannot bind-mount /proc/cpuinfo here (needs root and unshare)")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "cifar100_helpers", "run", "--recipe", "smoke", "--output", str(run)]
    switches = ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")  # only the case's own, whatever this shell sets
    outside = {name: value for name, value in os.environ.items() if name not in switches}
    done = with_cpu(flags, command, {**outside, **env}, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((run / "run.json").read_text())
    assert record["training"]["precision"] == "float32" and record["hardware"]["cpu_bfloat16"] is False
    assert record["hardware"]["cpu"] == "Rehearsed CPU"
    assert record["hardware"]["onednn_settings"] == env  # the cap or switch that forced float32 is on record
    assert all(f"{name}={value}" in manifest.describe_placement(run / "run.json") for name, value in env.items())
