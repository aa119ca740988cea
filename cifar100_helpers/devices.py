"""What this machine has (CPU, GPUs, a TPU), found without TensorFlow: the processes that only orchestrate (the
command line, the papermill runner, a sweep's driver, notebook 00) must never load it, since on a TPU machine the
first process to load TensorFlow holds the TPU until it exits, and the notebook kernels need it."""

from __future__ import annotations

import glob
import os
import platform
import subprocess
from pathlib import Path


def tpu_address() -> str | None:
    """Where a TPU is: "local" on a TPU VM (Colab's TPU runtimes since 2024, Cloud TPU VMs), the
    address of an older remote TPU node, or None when there is no TPU."""
    named = os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
    if named:
        return named if "://" in named or named == "local" else f"grpc://{named}"
    if os.environ.get("TPU_ACCELERATOR_TYPE") or glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"):
        return "local"
    return None


def gpu_names() -> list[str]:
    """The NVIDIA GPUs this process may use, by name (``nvidia-smi``), none when CUDA_VISIBLE_DEVICES hides them
    all or there is no driver."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return []
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def accelerator_present() -> bool:
    return bool(gpu_names() or tpu_address())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo: oneDNN computes bfloat16 natively with either


def cpu_flags() -> set[str]:
    """The instruction-set flags /proc/cpuinfo lists for the first CPU (empty where there is no such file)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bfloat16() -> bool:
    """Whether TensorFlow's oneDNN kernels compute bfloat16 natively on this CPU: AVX512_BF16 or AMX in the CPU's
    flags, on x86-64 Linux, with oneDNN not turned off (TF_ENABLE_ONEDNN_OPTS=0). Elsewhere bfloat16 is emulated
    and slower than float32."""
    if platform.machine() not in ("x86_64", "AMD64") or os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip() == "0":
        return False
    return bool(cpu_flags() & set(BFLOAT16_FLAGS))


def describe() -> dict:
    """The machine, for run.json: platform, CPU and its cores, memory, GPUs by name, the TPU's address."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_bfloat16": cpu_bfloat16(),
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "gpus": gpu_names(),
        "tpu": tpu_address(),
    }
