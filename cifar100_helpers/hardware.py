"""Which accelerator is present, and what follows from it: the tf.distribute strategy, the mixed-
precision policy, XLA, and the batch size and learning rate scaled to the number of replicas."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import keras
import tensorflow as tf


@dataclass(frozen=True)
class Placement:
    """What a run ran on; recorded in run.json."""

    kind: str  # "tpu", "multi_worker", "multi_gpu", "gpu", "cpu"
    replicas: int
    precision: str  # Keras dtype policy
    jit_compile: bool | str
    deterministic: bool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def connect_tpu():
    """A TPUStrategy when a TPU runtime (Colab, Cloud) is reachable, else None."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    except (ValueError, RuntimeError):
        return None
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def multi_worker() -> bool:
    """True when TF_CONFIG describes a cluster of more than one worker."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError:
        return False
    return len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1


def pick_strategy() -> tuple[tf.distribute.Strategy, str]:
    """TPU, several machines (TF_CONFIG), several GPUs, or the default strategy, in that order."""
    tpu = connect_tpu() if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME") else None
    if tpu is not None:
        return tpu, "tpu"
    if multi_worker():
        return tf.distribute.MultiWorkerMirroredStrategy(), "multi_worker"
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), "multi_gpu"
    return tf.distribute.get_strategy(), "gpu" if gpus else "cpu"


def precision_for(kind: str) -> str:
    """bfloat16 on TPU, float16 on GPUs with tensor cores (compute capability 7.0+), else float32."""
    if kind == "tpu":
        return "mixed_bfloat16"
    if kind in ("gpu", "multi_gpu", "multi_worker"):
        gpus = tf.config.list_physical_devices("GPU")
        capability = (
            tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)) if gpus else (0, 0)
        )
        return "mixed_float16" if capability >= (7, 0) else "float32"
    return "float32"


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
    precision = precision_for(kind) if cfg.mixed_precision else "float32"
    keras.mixed_precision.set_global_policy(precision)
    jit = False if cfg.deterministic else True if kind in ("gpu", "multi_gpu", "tpu") else "auto"
    return strategy, Placement(kind, strategy.num_replicas_in_sync, precision, jit, cfg.deterministic)


def scaled(batch_size: int, learning_rate: float, replicas: int) -> tuple[int, float]:
    """Global batch = per-replica batch x replicas; learning rate scaled linearly with it."""
    return batch_size * replicas, learning_rate * replicas
