"""Which accelerator is present, and what follows from it: the tf.distribute strategy, the mixed-
precision policy, XLA, and the batch size and learning rate scaled to the number of replicas."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from .errors import ConfigError
from .machine import cpu_bfloat16, gpu_names, tpu_address, unusable_gpus_line

ADAPTIVE_OPTIMIZERS = ("adamw", "rmsprop")  # learning rate scaled with the square root of the batch


@dataclass(frozen=True)
class Placement:
    """What a run ran on; recorded in run.json."""

    kind: str  # "tpu", "multi_gpu", "gpu", "cpu"
    replicas: int
    precision: str  # Keras dtype policy
    jit_compile: bool  # XLA for the whole train step: only where it compiles (one GPU)
    deterministic: bool
    steps_per_execution: int = 1  # train steps per call from the host (STEPS_PER_EXECUTION)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Scaling:
    """Batch and learning rate for a number of replicas; recorded in run.json."""

    per_replica_batch: int
    global_batch: int
    peak_learning_rate: float
    rule: str  # how the learning rate followed the batch: "linear" or "sqrt"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def connect_tpu(address: str) -> tf.distribute.TPUStrategy:
    """A TPUStrategy on the TPU at ``address``. A TPU that is present but does not start stops the
    run with one line, rather than letting it train the CPU recipe for hours unnoticed."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except Exception as exc:  # the TPU runtime fails in many ways; the fix is the same
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"A TPU was found ({address}) but TensorFlow could not start it ({reason}). Restart the runtime "
            "(Colab: Runtime > Restart session) and check that the installed TensorFlow supports this TPU; "
            "to train without it, switch to a GPU or CPU runtime."
        ) from None


def cluster_size() -> int:
    """How many machines (workers and chief) TF_CONFIG describes; 0 without a readable TF_CONFIG."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    except (json.JSONDecodeError, AttributeError):
        return 0
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def refuse_multi_worker() -> None:
    """One run is never trained across machines: under Keras 3, MultiWorkerMirroredStrategy fails inside
    ``fit`` (keras-team/keras#20585, then a per-replica reduction error), every worker writes the same
    files, and a worker whose peer never comes waits forever. Say so at once, with what works instead."""
    workers = cluster_size()
    if workers > 1:
        raise ConfigError(
            f"TF_CONFIG describes a cluster of {workers} machines, and one run is not trained across machines "
            "(Keras 3 cannot do it reliably): unset TF_CONFIG, use the GPUs of one machine (MirroredStrategy, "
            "automatic), or spread many runs over machines with `python -m cifar100_helpers sweep --address ...`."
        )


def logical_gpus() -> list:
    return tf.config.list_logical_devices("GPU")


def gpu_capability() -> tuple[int, int]:
    """Compute capability of the first GPU, (0, 0) without one."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return (0, 0)
    return tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)))


def pick_strategy() -> tuple[tf.distribute.Strategy, str]:
    """TPU, several GPUs, or the default strategy, in that order (a TF_CONFIG cluster is refused)."""
    address = tpu_address()
    if address:
        return connect_tpu(address), "tpu"
    refuse_multi_worker()
    gpus = logical_gpus()
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus]), "multi_gpu"
    return tf.distribute.get_strategy(), "gpu" if gpus else "cpu"


def precision_for(kind: str) -> str:
    """bfloat16 on TPU and on CPUs that compute it natively (AVX512_BF16 or AMX, machine.cpu_bfloat16: the `cpu`
    recipe trains 1.37x faster than in float32 on an AVX512_BF16 EPYC), float16 on GPUs with tensor cores
    (compute capability 7.0+), else float32."""
    if kind == "tpu":
        return "mixed_bfloat16"
    if kind in ("gpu", "multi_gpu"):
        return "mixed_float16" if gpu_capability() >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_bfloat16() else "float32"


def jit_for(kind: str, deterministic: bool) -> bool:
    """XLA-compile the whole train step only on one GPU. Under a tf.distribute strategy Keras
    compiles ``strategy.run`` as one XLA function, which cannot reach the other replicas' variables
    (InvalidArgumentError on the first step), so several GPUs and clusters run without it; a TPU
    compiles with XLA anyway; on a CPU it rarely pays and deterministic runs need it off."""
    return kind == "gpu" and not deterministic


STEPS_PER_EXECUTION = {  # train steps per call from the host, by kind
    "tpu": 32,  # Keras's TPU guidance: enough steps a call that the host's round trip disappears
    "gpu": 8,  # not yet measured on a GPU (none has run this code): a GPU step of the cpu/scratch nets takes a
    # few ms, the host's round trip and log copy about as long; 8 makes them a small share
    "multi_gpu": 1,  # 8 fails under MirroredStrategy in Keras 3.15's multi-step loop (InvalidArgumentError: "You must
    # feed a value for placeholder tensor ... while/cond", mixed_float16 on two logical devices, tests/test_hardware)
    "cpu": 1,  # a CPU step takes about a second: nothing to win, and measured runs used 1
}
CPU_RECIPES = ("cpu", "smoke")  # recipes meant for the CPU: trained there even beside a GPU TensorFlow cannot use


def place(cfg) -> tuple[tf.distribute.Strategy, Placement]:
    """Seed everything, pick the strategy and set the global dtype policy for a run config.
    Build models and optimizers inside the returned strategy's scope.

    With ``cfg.deterministic`` TensorFlow's op determinism is on too (and XLA off), so a CPU run
    repeats bit for bit; without it, runs are as fast as possible and not bit-for-bit repeatable.
    """
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy, kind = pick_strategy()
    if kind == "cpu" and cfg.recipe not in CPU_RECIPES and not tpu_address() and gpu_names():
        raise ConfigError(unusable_gpus_line(gpu_names()))
    precision = precision_for(kind) if cfg.mixed_precision else "float32"
    keras.mixed_precision.set_global_policy(precision)
    jit = jit_for(kind, cfg.deterministic)
    per_call = STEPS_PER_EXECUTION[kind]
    return strategy, Placement(kind, strategy.num_replicas_in_sync, precision, jit, cfg.deterministic, per_call)


def scale(cfg, replicas: int) -> Scaling:
    """The batch and peak learning rate for ``replicas``. ``cfg.batch_size`` is the per-replica batch
    the recipe was tuned with on one device; the global batch grows with the replicas up to
    ``cfg.max_global_batch`` (the per-replica batch shrinks beyond it), so the step count stays sane;
    one replica always trains with ``cfg.batch_size``.
    The learning rate follows the global batch: linearly for SGD, with the square root for the
    adaptive optimizers (AdamW, RMSprop)."""
    per_replica = max(1, min(cfg.batch_size, max(cfg.max_global_batch, cfg.batch_size) // replicas))
    global_batch = per_replica * replicas
    ratio = global_batch / cfg.batch_size
    rule = "sqrt" if cfg.optimizer in ADAPTIVE_OPTIMIZERS else "linear"
    peak = cfg.learning_rate * (math.sqrt(ratio) if rule == "sqrt" else ratio)
    return Scaling(per_replica, global_batch, peak, rule)
