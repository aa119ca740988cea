"""What this machine has (CPU, GPUs, a TPU), found without TensorFlow: the processes that only orchestrate (the
command line, the papermill runner, a sweep's driver, notebook 00) must never load it, since on a TPU machine the
first process to load TensorFlow holds the TPU until it exits, and the notebook kernels need it."""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys
from pathlib import Path

from .errors import ConfigError


def tpu_address() -> str | None:
    """Where a TPU is: "local" on a TPU VM (Colab's TPU runtimes since 2024, Cloud TPU VMs), the
    address of an older remote TPU node, or None when there is no TPU."""
    named = (os.environ.get("TPU_NAME") or "").strip() or (os.environ.get("COLAB_TPU_ADDR") or "").strip()
    if named:
        return named if "://" in named or named == "local" else f"grpc://{named}"
    if os.environ.get("TPU_ACCELERATOR_TYPE") or glob.glob("/dev/accel[0-9]*") or vfio_tpu():
        return "local"
    return None


GOOGLE_PCI_VENDOR = "0x1ae0"  # TPUs are Google PCI devices; /dev/vfio alone is any passed-through device


PCI_DEVICES = Path("/sys/bus/pci/devices")


def vfio_tpu() -> bool:
    """A TPU behind VFIO (TPU v5e and later): a /dev/vfio group and a Google PCI device. GPU-passthrough and DPDK
    hosts have /dev/vfio too, with no Google device."""
    if not glob.glob("/dev/vfio/[0-9]*"):
        return False
    for vendor in PCI_DEVICES.glob("*/vendor"):
        try:
            if vendor.read_text().strip().lower() == GOOGLE_PCI_VENDOR:
                return True
        except OSError:
            continue
    return False


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


def tensorflow_sees_gpus() -> bool:
    """Whether TensorFlow finds a GPU, asked in a child process (this one must stay free of TensorFlow): plain
    ``pip install tensorflow`` on Linux has no CUDA libraries, and then it trains on the CPU without a word."""
    probe = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    lines = done.stdout.split()
    return done.returncode == 0 and bool(lines) and lines[-1].isdigit() and int(lines[-1]) > 0


def unusable_gpus_line(gpus: list[str]) -> str:
    """The one line for a machine whose GPUs TensorFlow cannot use."""
    return (
        f"nvidia-smi lists {', '.join(gpus)} but TensorFlow finds no GPU (its CUDA libraries are missing), so this "
        "run would train on the CPU for hours: install TensorFlow's GPU build (`pip install 'tensorflow[and-cuda]'` "
        "on Linux; `make setup` does it when nvidia-smi lists a GPU), or train on the CPU with --recipe cpu."
    )


def accelerator_present() -> bool:
    """A TPU, or a GPU that TensorFlow can use; a GPU it cannot use stops with :func:`unusable_gpus_line`."""
    if tpu_address():
        return True
    gpus = gpu_names()
    if gpus and not tensorflow_sees_gpus():
        raise ConfigError(unusable_gpus_line(gpus))
    return bool(gpus)


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


ONEDNN_ISAS = (  # oneDNN's ONEDNN_MAX_CPU_ISA values, in order; from AVX512_CORE_BF16 on it computes bfloat16
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16",
    "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "DEFAULT", "ALL",
)  # fmt: skip


def bfloat16_off_reason() -> str | None:
    """Why oneDNN will not compute bfloat16 natively on this CPU, None when it will: TensorFlow's oneDNN kernels
    need x86-64 Linux, AVX512_BF16 or AMX in the CPU's flags, oneDNN on (TF_ENABLE_ONEDNN_OPTS) and its ISA not
    capped below AVX512_CORE_BF16 (ONEDNN_MAX_CPU_ISA, which TensorFlow honours: under a lower cap its bfloat16
    convolutions fail). Elsewhere bfloat16 is emulated and slower than float32."""
    if platform.machine() not in ("x86_64", "AMD64") or platform.system() != "Linux":
        return f"{platform.system()} on {platform.machine()}"
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false"):  # TensorFlow's false values
        return "TF_ENABLE_ONEDNN_OPTS turns oneDNN off"
    if not cpu_flags() & set(BFLOAT16_FLAGS):
        return "the CPU has neither AVX512_BF16 nor AMX"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap and cap not in ONEDNN_ISAS:
        return f"ONEDNN_MAX_CPU_ISA={cap} is not a value oneDNN knows (float32 is the safe choice)"
    if cap and ONEDNN_ISAS.index(cap) < ONEDNN_ISAS.index("AVX512_CORE_BF16"):
        return f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below AVX512_CORE_BF16"
    return None


def cpu_bfloat16() -> bool:
    """Whether TensorFlow's oneDNN kernels compute bfloat16 natively here (:func:`bfloat16_off_reason`)."""
    return bfloat16_off_reason() is None


FLOPS_PER_CYCLE = {  # per core, a fused multiply-add counted as 2: published microarchitecture figures, not measured
    ("float32", "AVX2"): 32,  # two 256-bit FMA units x 8 float32 lanes x 2 (Intel since Haswell, AMD since Zen 2)
    ("float32", "AVX512_CORE"): 64,  # Intel Xeon with two 512-bit FMA units (AMD Zen 4 splits 512-bit: as AVX2)
    ("bfloat16", "AVX512_CORE_BF16"): 64,  # VDPBF16PS, a pair of bfloat16 products per float32 lane: twice float32
    ("bfloat16", "AVX512_CORE_AMX"): 1024,  # AMX tile multiply, bfloat16 (Intel Sapphire Rapids)
}


def clock_ghz() -> float | None:
    """The first CPU's clock as /proc/cpuinfo states it (on a VM the nominal one; turbo not counted)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000
    except (OSError, ValueError):
        pass
    return None


def compute_isa(precision: str) -> str:
    """The widest instruction set oneDNN computes ``precision`` ("float32" or "bfloat16") with here, as a key of
    :data:`FLOPS_PER_CYCLE` (its ONEDNN_MAX_CPU_ISA cap honoured)."""
    flags, cap = cpu_flags(), os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    allowed = ONEDNN_ISAS.index(cap) if cap in ONEDNN_ISAS else len(ONEDNN_ISAS)
    if "bfloat16" in precision:
        amx = "amx_bf16" in flags and allowed >= ONEDNN_ISAS.index("AVX512_CORE_AMX")
        return "AVX512_CORE_AMX" if amx else "AVX512_CORE_BF16"
    avx512 = "avx512f" in flags and allowed >= ONEDNN_ISAS.index("AVX512_CORE")
    amd = "AMD" in cpu_model()  # Zen 4 executes 512-bit FMAs on its 256-bit units: no more FLOPs per cycle
    return "AVX512_CORE" if avx512 and not amd else "AVX2"


def peak_gflops(precision: str) -> dict:
    """This CPU's peak for ``precision``: cores x clock x FLOPs per cycle of :func:`compute_isa`, with how it was
    computed; None where the clock is unknown."""
    isa, cores, ghz = compute_isa(precision), os.cpu_count() or 1, clock_ghz()
    per_cycle = FLOPS_PER_CYCLE[("bfloat16" if "bfloat16" in precision else "float32", isa)]
    how = f"{cores} logical CPUs x {f'{ghz:.2f}' if ghz else '?'} GHz x {per_cycle} FLOP/cycle ({isa}, {precision})"
    return {"gflops": round(cores * ghz * per_cycle, 1) if ghz else None, "how": how}


def onednn_settings() -> dict:
    """The environment's switches that change what oneDNN runs here (a cap such as ONEDNN_MAX_CPU_ISA=AVX2 makes a
    bfloat16 CPU train in float32), as set; empty when none is."""
    names = ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")
    return {name: os.environ[name] for name in names if os.environ.get(name, "").strip()}


def describe() -> dict:
    """The machine, for run.json: platform, CPU and its cores, memory, GPUs by name, the TPU's address."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_bfloat16": cpu_bfloat16(),
        "onednn_settings": onednn_settings(),
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "gpus": gpu_names(),
        "tpu": tpu_address(),
    }
